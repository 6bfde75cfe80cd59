"""Masked-LM + next-sentence pretraining with BertPretrainer: the model side of run_pretraining.py.

Losses and metrics are google-research's: the masked-LM loss is the masked_lm_weights-weighted
mean of the token cross-entropies (sum / (sum of weights + 1e-5)) over each replica's batch, as
each TPU core computed it, plus the mean next-sentence cross-entropy.
"""

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional

import tensorflow as tf
import tf_keras
from absl import logging
from google.protobuf import message

from bert_tf import checkpoints, convert_checkpoint, io_utils, modeling
from bert_tf.data import pipeline as input_pipeline
from bert_tf.training import trainer
from bert_tf.configs import BertConfig

METRICS = ("masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
           "next_sentence_loss")


def feature_spec(max_seq_length: int, max_predictions_per_seq: int
                 ) -> Dict[str, tf.io.FixedLenFeature]:
  """create_pretraining_data's features (masked_lm_weights is float)."""
  spec = input_pipeline.int_features({
      "input_ids": max_seq_length, "input_mask": max_seq_length, "segment_ids": max_seq_length,
      "masked_lm_positions": max_predictions_per_seq, "masked_lm_ids": max_predictions_per_seq,
      "next_sentence_labels": 1})
  spec["masked_lm_weights"] = tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32)
  return spec


def _first_features(path: str):
  """The features of the first tf.train.Example in `path`, or None when it holds no record."""
  try:
    record = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    return None if record is None else tf.train.Example.FromString(
        record.numpy()).features.feature
  except (tf.errors.OpError, message.DecodeError) as e:
    raise ValueError(f"{path} is not a TFRecord file of tf.train.Examples ({e}); check "
                     "--input_file, or make the data with python -m "
                     "bert_tf.create_pretraining_data.") from None


def check_data_shapes(file_pattern: str, max_seq_length: int,
                      max_predictions_per_seq: int) -> None:
  """Fails early, naming the file and flags, when data was made with other lengths. Reads one
  record of every file, so shards made with different flags are found too."""
  empty = True
  for path in input_pipeline.list_files(file_pattern):
    feature = _first_features(path)
    if feature is None:
      continue  # An empty shard adds nothing to training.
    empty = False
    missing = sorted(set(feature_spec(1, 1)) - set(feature))
    if missing:
      raise ValueError(f"{path} is not pretraining data: it lacks {', '.join(missing)}. Make "
                       "it with python -m bert_tf.create_pretraining_data.")
    found = (len(feature["input_ids"].int64_list.value),
             len(feature["masked_lm_positions"].int64_list.value))
    if found != (max_seq_length, max_predictions_per_seq):
      raise ValueError(
          f"{path} was made with max_seq_length={found[0]}, max_predictions_per_seq={found[1]} "
          f"but the flags say --max_seq_length={max_seq_length} "
          f"--max_predictions_per_seq={max_predictions_per_seq}. Pass the data's values, or "
          "recreate the data with the flags' values (every file of the pattern must match).")
  if empty:
    raise ValueError(f"{file_pattern} holds no record; check --input_file.")


def _mlm_token_losses(features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor]):
  log_probs = tf.nn.log_softmax(outputs["mlm_logits"], axis=-1)
  labels = features["masked_lm_ids"]
  token_losses = -tf.gather(log_probs, labels, batch_dims=2)
  return token_losses, log_probs


def pretraining_loss(features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
  """Per-example losses whose batch mean is google-research's total loss (MLM + NSP)."""
  token_losses, _ = _mlm_token_losses(features, outputs)
  weights = features["masked_lm_weights"]
  batch = tf.cast(tf.shape(weights)[0], tf.float32)
  # Each example's share of the batch-normalised MLM loss, scaled so the trainer's mean over
  # the batch gives sum(loss * weight) / (sum(weight) + 1e-5).
  mlm = tf.reduce_sum(token_losses * weights, axis=1) * batch / (tf.reduce_sum(weights) + 1e-5)
  nsp = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.reshape(features["next_sentence_labels"], [-1]), logits=outputs["nsp_logits"])
  return mlm + nsp


def _metric_sums(features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor]
                 ) -> Dict[str, tf.Tensor]:
  """Sums from which the eval metrics are ratios (so they add up over batches and replicas)."""
  token_losses, log_probs = _mlm_token_losses(features, outputs)
  weights = features["masked_lm_weights"]
  correct = tf.cast(tf.equal(tf.argmax(log_probs, -1, output_type=tf.int32),
                             features["masked_lm_ids"]), tf.float32)
  labels = tf.reshape(features["next_sentence_labels"], [-1])
  nsp_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                              logits=outputs["nsp_logits"])
  nsp_correct = tf.cast(tf.equal(tf.argmax(outputs["nsp_logits"], -1, output_type=tf.int32),
                                 labels), tf.float32)
  return dict(mlm_loss=tf.reduce_sum(token_losses * weights),
              mlm_correct=tf.reduce_sum(correct * weights), mlm_weight=tf.reduce_sum(weights),
              nsp_loss=tf.reduce_sum(nsp_losses), nsp_correct=tf.reduce_sum(nsp_correct),
              examples=tf.cast(tf.size(labels), tf.float32))


def evaluate(strategy: tf.distribute.Strategy, model: modeling.BertPretrainer, file_pattern: str,
             max_seq_length: int, max_predictions_per_seq: int, eval_batch_size: int,
             max_eval_steps: int) -> Dict[str, float]:
  """google-research's eval metrics over up to max_eval_steps full batches of the input."""
  parser = input_pipeline.example_parser(feature_spec(max_seq_length, max_predictions_per_seq))
  dataset = input_pipeline.evaluation_dataset(file_pattern, parser, eval_batch_size,
                                              drop_remainder=True).take(max_eval_steps)

  @tf.function
  def step(features):
    return _metric_sums(features, model(features, training=False))

  totals: Dict[str, float] = {}
  for features in strategy.experimental_distribute_dataset(dataset):
    sums = strategy.run(step, args=(features,))
    for key, value in sums.items():
      totals[key] = totals.get(key, 0.0) + float(
          strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None))
  if not totals:
    raise ValueError(f"{file_pattern} has fewer than eval_batch_size={eval_batch_size} records; "
                     "lower --eval_batch_size.")
  metrics = dict(
      masked_lm_accuracy=totals["mlm_correct"] / totals["mlm_weight"],
      masked_lm_loss=totals["mlm_loss"] / totals["mlm_weight"],
      next_sentence_accuracy=totals["nsp_correct"] / totals["examples"],
      next_sentence_loss=totals["nsp_loss"] / totals["examples"])
  metrics["loss"] = metrics["masked_lm_loss"] + metrics["next_sentence_loss"]
  return metrics


def write_eval_results(path: str, metrics: Dict[str, float], global_step: int) -> None:
  """google-research's eval_results.txt: 'key = value' lines, sorted."""
  values = {**metrics, "global_step": global_step}
  io_utils.write_text_atomic(path, "".join(f"{k} = {values[k]}\n" for k in sorted(values)))


@dataclasses.dataclass
class PretrainingData:
  """Where the records are and the lengths they were made with."""
  input_file: str
  max_seq_length: int
  max_predictions_per_seq: int


def make_trainer(strategy: tf.distribute.Strategy, config: BertConfig, data: PretrainingData,
                 train_config: trainer.TrainConfig, init_checkpoint: Optional[str],
                 seed: int) -> trainer.Trainer:
  """A Trainer for BertPretrainer on `data` (resumes from output_dir when it has a checkpoint)."""
  parser = input_pipeline.example_parser(feature_spec(data.max_seq_length,
                                                      data.max_predictions_per_seq))

  def model_fn():
    tf_keras.utils.set_random_seed(seed)
    return modeling.build_model(modeling.BertPretrainer(config))

  def dataset_fn(context: tf.distribute.InputContext, start_batch: int) -> tf.data.Dataset:
    batch = context.get_per_replica_batch_size(train_config.train_batch_size)
    return input_pipeline.training_dataset(data.input_file, parser, batch, seed=seed,
                                           start_batch=start_batch, input_context=context)

  def init_fn(model):
    if init_checkpoint:
      checkpoints.load_init_checkpoint(model, init_checkpoint)
    else:
      logging.info("No --init_checkpoint: pretraining from randomly initialised weights.")

  return trainer.Trainer(strategy, train_config, model_fn, pretraining_loss, dataset_fn, init_fn)


BEST_DIR = "best"
BEST_FILE = "best.json"
SCORES_FILE = "scores.json"
EXPORT_DIR = "export"
EXPORT_FORMATS = (checkpoints.TF1, checkpoints.TF2, checkpoints.HF)
EXPORT_SOURCE = "exported_from.json"


def read_best(output_dir: str) -> Optional[Dict[str, Any]]:
  """The best-so-far record (step, loss, checkpoint) in OUTPUT_DIR/best/, or None."""
  path = os.path.join(output_dir, BEST_DIR, BEST_FILE)
  return io_utils.read_json(path) if tf.io.gfile.exists(path) else None


def _remove_checkpoints_but(best_dir: str, keep: Optional[str]) -> None:
  """Deletes checkpoint files in best/ other than `keep`'s (older bests, a crashed write)."""
  for path in tf.io.gfile.glob(os.path.join(best_dir, "ckpt-*")):
    if keep is None or not os.path.basename(path).startswith(os.path.basename(keep) + "."):
      tf.io.gfile.remove(path)


def _save_best(run: trainer.Trainer, score: float) -> Dict[str, Any]:
  """Writes the model under a new prefix, then the record naming it (the commit point).

  A crash at any moment leaves best.json naming a complete checkpoint; stale files go after.
  """
  best_dir = os.path.join(run.config.output_dir, BEST_DIR)
  prefix = os.path.join(best_dir, f"ckpt-{run.step}")
  tf.train.Checkpoint(model=run.model).write(prefix)
  best = {"step": run.step, "loss": score, "checkpoint": prefix}
  io_utils.write_json_atomic(os.path.join(best_dir, BEST_FILE), best)
  _remove_checkpoints_but(best_dir, prefix)
  return best


def train_keeping_best(run: trainer.Trainer, score_fn: Callable[[], Optional[float]]
                       ) -> List[Dict]:
  """Trains in save_checkpoints_steps chunks; after each, scores the model (lower is better) and
  keeps it in output_dir/best/ when it is the best so far. Returns the history of scores.

  The best score and the steps scored survive a restart (best/best.json, best/scores.json): a
  checkpoint saved but not scored before a crash is scored on resume, as it would have been.
  Only the chief writes best/; under multi-worker training every worker scores the model.
  """
  config = run.config
  chief = trainer.is_chief(run.strategy)
  best = read_best(config.output_dir)
  scores_path = os.path.join(config.output_dir, BEST_DIR, SCORES_FILE)
  scored = io_utils.read_json(scores_path) if tf.io.gfile.exists(scores_path) else []
  if chief and tf.io.gfile.isdir(os.path.join(config.output_dir, BEST_DIR)):
    _remove_checkpoints_but(os.path.join(config.output_dir, BEST_DIR),
                            best["checkpoint"] if best else None)
  history = []

  def keep_if_best(score: float) -> None:
    nonlocal best
    history.append({"step": run.step, "loss": score})
    if (best is None or score < best["loss"]) and chief:
      best = _save_best(run, score)
      logging.info("New lowest loss %.4f at step %d: saved to %s.", score, run.step,
                   best["checkpoint"])
    if chief:  # after best/: a crash in between only means scoring this step again
      scored.append(run.step)
      io_utils.write_json_atomic(scores_path, scored)

  with trainer.sigterm_requests():  # one arriving while scoring stops the next chunk
    at_chunk_end = (run.step % config.save_checkpoints_steps == 0
                    or run.step == config.num_train_steps)
    if run.step and at_chunk_end and run.step not in scored:
      score = score_fn()
      if score is None:  # the training loss of the steps before the restart is gone
        logging.warning("Step %d was saved but not scored before the run stopped, and cannot "
                        "be scored without --do_eval.", run.step)
      else:
        logging.info("Step %d was saved but not scored before the run stopped: scoring it.",
                     run.step)
        keep_if_best(score)
    while run.step < config.num_train_steps:
      stop = min(run.step + config.save_checkpoints_steps
                 - run.step % config.save_checkpoints_steps, config.num_train_steps)
      run.train(stop_at_step=stop)
      keep_if_best(score_fn())
  return history


def export_model(output_dir: str, source: str, bert_config_file: str, vocab_file: str
                 ) -> Dict[str, str]:
  """Writes checkpoint `source` to OUTPUT_DIR/export/{tf1,tf2,hf}; returns format -> directory.

  Each directory appears complete or not at all (written under a temporary name, then renamed),
  and records its source: an export of an older checkpoint is replaced, a current one is kept.
  """
  written = {}
  for fmt in EXPORT_FORMATS:
    target = os.path.join(output_dir, EXPORT_DIR, fmt)
    record = os.path.join(target, EXPORT_SOURCE)
    written[fmt] = target
    if tf.io.gfile.exists(record) and io_utils.read_json(record)["checkpoint"] == source:
      logging.info("%s already holds %s; not exported again.", target, source)
      continue
    tmp = io_utils.temporary_path(target)
    try:
      convert_checkpoint.convert_checkpoint(source, tmp, fmt, bert_config_file, vocab_file)
      io_utils.write_json_atomic(os.path.join(tmp, EXPORT_SOURCE), {"checkpoint": source})
      if tf.io.gfile.exists(target):
        tf.io.gfile.rmtree(target)
      tf.io.gfile.rename(tmp, target)
    finally:
      if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    logging.info("Exported %s as %s to %s.", source, checkpoints.FORMAT_NAMES[fmt], target)
  return written
