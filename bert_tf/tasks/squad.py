"""SQuAD fine-tuning and prediction with BertSpanLabeler: the model side of run_squad.py.

Data preparation and answer post-processing live in squad.py; this module trains on the
cached feature files, runs the model over the evaluation features and hands the logits back.
"""

import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
import tf_keras
from absl import logging

from bert_tf import checkpoints, modeling
from bert_tf.data import pipeline as input_pipeline
from bert_tf.data import squad
from bert_tf.training import trainer
from bert_tf.configs import BertConfig


def span_loss(features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
  """google-research's loss: mean of the start and end cross-entropies, per example."""
  def cross_entropy(logits, positions):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positions, logits=logits)
  return 0.5 * (cross_entropy(outputs["start_logits"], features["start_positions"]) +
                cross_entropy(outputs["end_logits"], features["end_positions"]))


def num_train_steps(num_features: int, train_batch_size: int, num_train_epochs: float) -> int:
  """Steps over the training *features* (windows); google-research counted examples."""
  steps = int(num_features / train_batch_size * num_train_epochs)
  if steps < 1:
    raise ValueError(f"{num_features} training features at train_batch_size={train_batch_size} "
                     f"and num_train_epochs={num_train_epochs} give no training step; lower "
                     "--train_batch_size or raise --num_train_epochs.")
  return steps


def train(strategy: tf.distribute.Strategy, config: BertConfig, metadata: Dict[str, Any],
          train_config: trainer.TrainConfig, init_checkpoint: Optional[str],
          seed: int) -> modeling.BertSpanLabeler:
  """Fine-tunes a span labeler on the training features described by `metadata`."""
  seq_length = metadata["max_seq_length"]

  def model_fn():
    tf_keras.utils.set_random_seed(seed)
    return modeling.build_model(modeling.BertSpanLabeler(config))

  def dataset_fn(context: tf.distribute.InputContext, start_batch: int) -> tf.data.Dataset:
    return squad.make_dataset(metadata["file_pattern"], seq_length, is_training=True,
                              batch_size=train_config.train_batch_size, drop_remainder=True,
                              input_context=context, seed=seed, start_batch=start_batch)

  def init_fn(model):
    if init_checkpoint:
      checkpoints.load_init_checkpoint(model, init_checkpoint)
    else:
      logging.warning("No --init_checkpoint: training from randomly initialised weights.")

  run = trainer.Trainer(strategy, train_config, model_fn, span_loss, dataset_fn, init_fn)
  return run.train()


def restore_for_prediction(strategy: tf.distribute.Strategy, config: BertConfig,
                           output_dir: str, init_checkpoint: Optional[str]
                           ) -> modeling.BertSpanLabeler:
  """The fine-tuned model: the latest checkpoint in output_dir, else --init_checkpoint."""
  source = tf.train.latest_checkpoint(output_dir) or init_checkpoint
  if not source:
    raise ValueError(f"Nothing to predict with: {output_dir} holds no checkpoint and "
                     "--init_checkpoint is not set. Train first (--do_train=True) or point "
                     "--init_checkpoint at a fine-tuned checkpoint.")
  with strategy.scope():
    model = modeling.build_model(modeling.BertSpanLabeler(config))
  checkpoints.load_init_checkpoint(model, source)
  logging.info("Predicting with %s.", source)
  return model


def predict(strategy: tf.distribute.Strategy, model: modeling.BertSpanLabeler,
            metadata: Dict[str, Any], predict_batch_size: int) -> List[squad.RawResult]:
  """Start/end logits for every evaluation feature, as google-research's RawResults."""
  dataset = squad.make_dataset(metadata["file_pattern"], metadata["max_seq_length"],
                               is_training=False, batch_size=predict_batch_size,
                               drop_remainder=False)
  # Full batches keep shapes static (TPUs need it); the padding has unique_id 0 and is dropped.
  dataset = input_pipeline.pad_to_full_batches(dataset, predict_batch_size)
  outputs = trainer.predict(strategy, model, dataset, ["start_logits", "end_logits"],
                            passthrough_keys=["unique_ids"])
  return [squad.RawResult(int(unique_id), start, end)
          for unique_id, start, end in zip(outputs["unique_ids"], outputs["start_logits"],
                                           outputs["end_logits"]) if unique_id]


def output_files(output_dir: str) -> Dict[str, str]:
  """google-research's prediction file names inside output_dir."""
  return {name: os.path.join(output_dir, f"{name}.json")
          for name in ("predictions", "nbest_predictions", "null_odds")}
