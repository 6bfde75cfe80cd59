"""Masked-LM + next-sentence pretraining with BertPretrainer: the task behind run_pretraining.py.

Losses and metrics are google-research's: the masked-LM loss is the masked_lm_weights-weighted
mean of the token cross-entropies (sum / (sum of weights + 1e-5)) over each replica's batch, as
each TPU core computed it, plus the mean next-sentence cross-entropy.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
import tf_keras
from absl import logging
from google.protobuf import message

from bert_tf import checkpoints, convert_checkpoint, create_pretraining_data, io_utils, modeling
from bert_tf.data import pipeline
from bert_tf.tasks import task
from bert_tf.training import best_checkpoint, trainer

METRICS = ("masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
           "next_sentence_loss")


def feature_spec(max_seq_length: int, max_predictions_per_seq: int
                 ) -> Dict[str, tf.io.FixedLenFeature]:
  """create_pretraining_data's features (masked_lm_weights is float)."""
  spec = pipeline.int_features({
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
  for path in pipeline.list_files(file_pattern):
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
  parser = pipeline.example_parser(feature_spec(max_seq_length, max_predictions_per_seq))
  dataset = pipeline.evaluation_dataset(file_pattern, parser, eval_batch_size,
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


@dataclasses.dataclass(kw_only=True)
class PretrainingConfig(task.TaskConfig):
  """Pretraining's own settings; `training` holds num_train_steps and num_warmup_steps."""
  input_file: str
  eval_input_file: Optional[str] = None  # default: input_file, as google-research does
  max_predictions_per_seq: int = 20
  max_eval_steps: int = 100
  eval_every_epoch: bool = False


class PretrainingTask(task.Task):
  """Pretrains BertPretrainer; with --keep_best_by_loss keeps the lowest-loss model (KcBERT)."""
  metrics = ("loss", *METRICS)
  selectable_metrics = ("loss",)
  scores_training_loss = True
  eval_data_hint = "add --do_eval=true"

  @property
  def eval_input(self) -> str:
    return self.config.eval_input_file or self.config.input_file

  def check_task(self) -> None:
    """The records were made with the flags' lengths (and vocab): one record of every file."""
    config = self.config
    for pattern in {config.input_file, self.eval_input}:
      check_data_shapes(pattern, config.max_seq_length, config.max_predictions_per_seq)
      if self.files.vocab_file:
        create_pretraining_data.check_data_vocab(pipeline.list_files(pattern)[0],
                                                 self.files.vocab_file)

  def prepare_data(self) -> None:
    """Nothing to convert: create_pretraining_data made the records."""

  def build_model(self) -> tf_keras.Model:
    return modeling.build_model(modeling.BertPretrainer(self.files.config))

  def loss(self, features: trainer.Features, outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    return pretraining_loss(features, outputs)

  def num_train_records(self) -> Optional[int]:
    """The instances of the input, when its create_pretraining_data metadata covers it."""
    return create_pretraining_data.count_instances(self.config.input_file)

  def train_dataset(self, context: tf.distribute.InputContext,
                    start_batch: int) -> tf.data.Dataset:
    config = self.config
    parser = pipeline.example_parser(feature_spec(config.max_seq_length,
                                                  config.max_predictions_per_seq))
    return pipeline.training_dataset(
        config.input_file, parser,
        context.get_per_replica_batch_size(config.training.train_batch_size), seed=config.seed,
        start_batch=start_batch, files_in_parallel=config.training.input_files_in_parallel,
        input_context=context, counts_cache_dir=config.output_dir)

  def evaluate(self, model: tf_keras.Model) -> Dict[str, Any]:
    config = self.config
    return evaluate(self.strategy, model, self.eval_input, config.max_seq_length,
                    config.max_predictions_per_seq, config.eval_batch_size, config.max_eval_steps)

  def write_evaluation(self, metrics: Dict[str, Any], step: int) -> List[str]:
    """google-research's eval_results.txt: 'key = value' lines, sorted."""
    io_utils.write_key_values(os.path.join(self.config.output_dir, "eval_results.txt"),
                              {**metrics, "global_step": step})
    return ["eval_results.txt"]

  def finish(self, results: Dict[str, Any]) -> None:
    """Exports the best (or last) model for fine-tuning and Hugging Face, with the vocab."""
    if not self.config.do_train:
      return
    if not self.files.vocab_file:
      logging.warning("No --vocab_file: the model is not exported (the exports carry vocab.txt).")
      return
    if not self.chief:
      return
    best = best_checkpoint.read_best(self.config.output_dir) if self.config.keep_best_by else None
    source = best["checkpoint"] if best else tf.train.latest_checkpoint(self.config.output_dir)
    results["exported_from"] = source
    results["exports"] = export_model(self.config.output_dir, source, self.files.config_file,
                                      self.files.vocab_file, self.files.do_lower_case)


EXPORT_FORMATS = (checkpoints.TF1, checkpoints.TF2, checkpoints.HF)
EXPORT_SOURCE = "exported_from.json"


def export_model(output_dir: str, source: str, bert_config_file: str, vocab_file: str,
                 do_lower_case: Optional[bool] = None) -> Dict[str, str]:
  """Writes checkpoint `source` to OUTPUT_DIR/export/{tf1,tf2,hf}; returns format -> directory.

  `do_lower_case` is the lowercasing the model was trained with, for the Hugging Face
  tokenizer files (None: inferred from the vocab).

  Each directory appears complete or not at all (written under a temporary name, then renamed),
  and records its source: an export of an older checkpoint is replaced, a current one is kept.
  """
  written = {}
  for fmt in EXPORT_FORMATS:
    target = os.path.join(output_dir, task.EXPORT_DIR, fmt)
    record = os.path.join(target, EXPORT_SOURCE)
    written[fmt] = target
    if tf.io.gfile.exists(record) and io_utils.read_json(record)["checkpoint"] == source:
      logging.info("%s already holds %s; not exported again.", target, source)
      continue
    tmp = io_utils.temporary_path(target)
    try:
      convert_checkpoint.convert_checkpoint(source, tmp, fmt, bert_config_file, vocab_file,
                                            do_lower_case)
      io_utils.write_json_atomic(os.path.join(tmp, EXPORT_SOURCE), {"checkpoint": source})
      if tf.io.gfile.exists(target):
        tf.io.gfile.rmtree(target)
      tf.io.gfile.rename(tmp, target)
    finally:
      if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    logging.info("Exported %s as %s to %s.", source, checkpoints.FORMAT_NAMES[fmt], target)
  return written
