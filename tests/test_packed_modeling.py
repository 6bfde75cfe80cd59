"""Packed rows through the same model: each example's outputs equal its unpacked outputs, and the
packed forward pass adds no variable (checkpoints, exports and init checkpoints are shared)."""

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import modeling
from bert_tf.data import packing
from bert_tf.tasks import pretraining as pretraining_task
from bert_tf.tasks import squad as squad_task
from tests import packed_pretraining_data
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


@pytest.mark.parametrize("next_sentence", [True, False])
def test_packed_pretraining_outputs_and_loss_equal_the_unpacked_models(tmp_path, next_sentence):
  """Each prediction's masked-LM logits and each instance's next-sentence logits (from its own
  [CLS]) equal the unpacked model's; the trainer's packed loss (sum over slots / instances) is
  google-research's loss over the same instances unpacked."""
  pattern = packed_pretraining_data.write_short_documents(tmp_path, next_sentence)
  instances = packed_pretraining_data.read_instances(pattern, next_sentence)
  rows, _ = packed_pretraining_data.packed_rows(tmp_path, pattern, next_sentence)
  model = modeling.build_model(modeling.BertPretrainer(packed_pretraining_data.TINY,
                                                       next_sentence))
  variables = [v.name for v in model.variables]
  unpacked = model({key: tf.constant(value) for key, value in instances.items()}, training=False)
  packed = model(rows, training=False)
  assert [v.name for v in model.variables] == variables  # no variable of its own
  for r, s, index in packed_pretraining_data.instance_of_each_slot(rows, instances):
    if next_sentence:
      np.testing.assert_allclose(packed["nsp_logits"][r, s], unpacked["nsp_logits"][index],
                                 atol=1e-5)
    start = int(rows[packing.EXAMPLE_STARTS][r, s])
    for p in np.nonzero(instances["masked_lm_weights"][index])[0]:
      column = list(rows["masked_lm_positions"][r].numpy()).index(
          instances["masked_lm_positions"][index, p] + start)
      np.testing.assert_allclose(packed["mlm_logits"][r, column], unpacked["mlm_logits"][index, p],
                                 atol=1e-5)
  weights = rows[packing.EXAMPLE_WEIGHTS]
  packed_loss = tf.reduce_sum(pretraining_task.pretraining_loss(rows, packed) * weights
                              ) / tf.reduce_sum(weights)
  unpacked_loss = tf.reduce_mean(pretraining_task.pretraining_loss(
      {key: tf.constant(value) for key, value in instances.items()}, unpacked))
  np.testing.assert_allclose(float(packed_loss), float(unpacked_loss), rtol=1e-5)
