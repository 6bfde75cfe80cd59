"""SavedModel export for serving (TF Serving, Vertex AI, `tf.saved_model.load`).

The "serving_default" signature takes int32 `input_ids`, `input_mask` and `segment_ids` of shape
[batch, seq_length] (any batch, a fixed length, as the features of squad.py and
classifier_data.py) and returns the model's float32 outputs by name: `start_logits` and
`end_logits` for a span labeler, `logits` for a classifier.
"""

import logging

import tensorflow as tf
import tf_keras

from bert_tf import io_utils

INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")


def serving_function(model: tf_keras.Model, seq_length: int
                     ) -> tf.types.experimental.ConcreteFunction:
  """The model's inference call on int32 [batch, seq_length] inputs, as a concrete function."""
  specs = [tf.TensorSpec([None, seq_length], tf.int32, name=name) for name in INPUT_NAMES]

  @tf.function(input_signature=specs)
  def serve(input_ids, input_mask, segment_ids):
    return model(dict(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids),
                 training=False)
  return serve.get_concrete_function()


def export_saved_model(model: tf_keras.Model, export_dir: str, seq_length: int) -> str:
  """Writes `model` with a serving signature to the new directory `export_dir`; returns it.

  The SavedModel is written beside `export_dir` under a temporary name and renamed when complete,
  so a failed export leaves nothing at `export_dir`.
  """
  if tf.io.gfile.exists(export_dir):
    raise ValueError(f"{export_dir} already exists: export into a new directory (a SavedModel "
                     "is not overwritten in place).")
  signature = serving_function(model, seq_length)
  temporary = io_utils.temporary_path(export_dir.rstrip("/"))
  # tf.saved_model.save round-trips absl's verbosity through set_verbosity, which leaves the
  # "absl" logger at WARNING: the caller's INFO logs would vanish for the rest of the process.
  absl_logger = logging.getLogger("absl")
  absl_level = absl_logger.level
  try:
    tf.saved_model.save(model, temporary, signatures={"serving_default": signature})
    tf.io.gfile.rename(temporary, export_dir)
  finally:
    absl_logger.setLevel(absl_level)
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.rmtree(temporary)
  return export_dir
