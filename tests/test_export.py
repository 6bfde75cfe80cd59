"""SavedModel export: the reloaded serving signature gives the Keras model's logits."""

import logging

import numpy as np
import pytest
import tensorflow as tf
from absl import logging as absl_logging

from bert_tf import configs, export, modeling

TINY = configs.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)
SEQ_LENGTH = 12


def _inputs(batch):
  rng = np.random.default_rng(batch)
  mask = np.ones((batch, SEQ_LENGTH), np.int32)
  mask[0, 7:] = 0
  return dict(input_ids=tf.constant(rng.integers(0, 30, (batch, SEQ_LENGTH)), tf.int32),
              input_mask=tf.constant(mask),
              segment_ids=tf.constant(rng.integers(0, 2, (batch, SEQ_LENGTH)), tf.int32))


@pytest.mark.parametrize("model_class,outputs", [
    (lambda: modeling.BertSpanLabeler(TINY), ["end_logits", "start_logits"]),
    (lambda: modeling.BertClassifier(TINY, num_labels=3), ["logits"]),
])
def test_reloaded_signature_gives_the_same_logits(tmp_path, model_class, outputs):
  model = modeling.build_model(model_class())
  export_dir = export.export_saved_model(model, str(tmp_path / "export"), SEQ_LENGTH)
  serve = tf.saved_model.load(export_dir).signatures["serving_default"]
  for batch in (1, 3):  # The batch dimension is dynamic.
    inputs = _inputs(batch)
    served = serve(**inputs)
    assert sorted(served) == outputs
    expected = model(inputs, training=False)
    for name in outputs:
      np.testing.assert_allclose(served[name].numpy(), expected[name].numpy(), rtol=1e-5,
                                 atol=1e-6)
  assert [p.name for p in tmp_path.iterdir()] == ["export"]  # No temporary directory left.


def test_refuses_an_existing_directory(tmp_path):
  model = modeling.build_model(modeling.BertSpanLabeler(TINY))
  (tmp_path / "export").mkdir()
  with pytest.raises(ValueError, match="already exists"):
    export.export_saved_model(model, str(tmp_path / "export"), SEQ_LENGTH)



def test_info_logs_still_reach_the_caller_after_an_export(tmp_path, caplog):
  model = modeling.build_model(modeling.BertSpanLabeler(TINY))
  export.export_saved_model(model, str(tmp_path / "export"), SEQ_LENGTH)
  with caplog.at_level(logging.INFO):
    absl_logging.info("after the export")
  assert "after the export" in caplog.text
