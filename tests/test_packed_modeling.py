"""Packed rows through the same model: each example's outputs equal its unpacked outputs, and the
packed forward pass adds no variable (checkpoints, exports and init checkpoints are shared)."""

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import modeling
from bert_tf.data import packing
from bert_tf.tasks import squad as squad_task
from tests.packed_data import TINY, packed_rows, real_slots, unpacked_examples


@pytest.mark.parametrize("model_class", ["classifier", "span"])
def test_each_packed_example_equals_its_unpacked_outputs(tmp_path, model_class):
  features = unpacked_examples()
  rows, _ = packed_rows(tmp_path, features)
  model = (modeling.BertClassifier(TINY, num_labels=3) if model_class == "classifier"
           else modeling.BertSpanLabeler(TINY))
  modeling.build_model(model)
  variables = [v.name for v in model.variables]
  unpacked = model({key: tf.constant(features[key])
                    for key in ("input_ids", "input_mask", "segment_ids")}, training=False)
  packed = model(rows, training=False)
  assert [v.name for v in model.variables] == variables  # no variable of its own
  lengths = features["input_mask"].sum(axis=1)
  for r, s, index in real_slots(rows):
    if model_class == "classifier":
      np.testing.assert_allclose(packed["logits"][r, s], unpacked["logits"][index], atol=1e-5)
      continue
    start, length = int(rows[packing.EXAMPLE_STARTS][r, s]), int(lengths[index])
    for key in ("start_logits", "end_logits"):
      np.testing.assert_allclose(packed[key][r, start:start + length],
                                 unpacked[key][index, :length], atol=1e-5)


def test_packed_span_loss_is_each_windows_softmax_over_its_own_positions(tmp_path):
  features = unpacked_examples()
  rows, _ = packed_rows(tmp_path, features)
  model = modeling.build_model(modeling.BertSpanLabeler(TINY))
  unpacked = model({key: tf.constant(features[key])
                    for key in ("input_ids", "input_mask", "segment_ids")}, training=False)
  losses = squad_task.span_loss(rows, model(rows, training=False)).numpy()
  lengths = features["input_mask"].sum(axis=1)
  for r, s, index in real_slots(rows):
    length = int(lengths[index])
    expected = 0.5 * sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=features[f"{side}_positions"][index],
        logits=unpacked[f"{side}_logits"][index, :length]).numpy() for side in ("start", "end"))
    np.testing.assert_allclose(losses[r, s], expected, rtol=1e-5)
