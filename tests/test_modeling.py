"""Model structure: heads, tied MLM output, LayerNorm epsilon, mixed precision, XLA."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_tf import modeling
from bert_tf.checkpoints import configs

TINY = configs.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)


def _features(batch=2, length=6):
  rng = np.random.default_rng(0)
  mask = np.ones((batch, length), np.int32)
  mask[0, 4:] = 0
  return dict(input_ids=tf.constant(rng.integers(0, 30, (batch, length)), tf.int32),
              input_mask=tf.constant(mask), segment_ids=tf.zeros((batch, length), tf.int32),
              masked_lm_positions=tf.constant([[1, 2]] * batch, tf.int32))


def test_heads_output_shapes():
  features = _features()
  pretrainer = modeling.BertPretrainer(TINY)
  outputs = pretrainer(features)
  assert outputs["mlm_logits"].shape == (2, 2, 30)
  assert outputs["nsp_logits"].shape == (2, 2)
  span = modeling.BertSpanLabeler(TINY)(features)
  assert span["start_logits"].shape == span["end_logits"].shape == (2, 6)
  assert modeling.BertClassifier(TINY, num_labels=3)(features)["logits"].shape == (2, 3)
  bare = modeling.BertModel(TINY)(features)
  assert len(bare["all_layers"]) == 2 and bare["pooled_output"].shape == (2, 8)


def test_mlm_output_is_tied_to_word_embeddings():
  pretrainer = modeling.build_model(modeling.BertPretrainer(TINY))
  table = pretrainer.encoder.get_embedding_table()
  assert pretrainer.masked_lm.embedding_table is table
  names = [v.name for v in pretrainer.trainable_variables]
  assert len(names) == len(set(names))  # the table is not duplicated


def test_padding_does_not_change_unpadded_outputs():
  model = modeling.BertModel(TINY)
  features = _features(batch=1, length=4)
  padded = {k: tf.pad(v, [[0, 0], [0, 3]]) if k != "masked_lm_positions" else v
            for k, v in features.items()}
  short = model(features)["sequence_output"].numpy()
  long = model(padded)["sequence_output"].numpy()[:, :4]
  np.testing.assert_allclose(short, long, atol=1e-5)


def test_layer_norm_epsilon_comes_from_the_config():
  config = configs.BertConfig.from_dict(dict(vars(TINY), layer_norm_eps=1e-5))
  model = modeling.build_model(modeling.BertModel(config))
  epsilons = {layer.epsilon for layer in model.encoder.submodules
              if isinstance(layer, tf_keras.layers.LayerNormalization)}
  assert epsilons == {1e-5}


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_float32_logits(policy):
  modeling.set_mixed_precision(policy)
  try:
    model = modeling.BertSpanLabeler(TINY)
    outputs = model(_features())
    assert outputs["start_logits"].dtype == tf.float32
    assert model.encoder.get_embedding_table().dtype == tf.float32  # variables stay float32
  finally:
    modeling.set_mixed_precision(None)


def test_bad_policy_names_the_flag():
  with pytest.raises(ValueError, match="--mixed_precision"):
    modeling.set_mixed_precision("float16")


def test_forward_pass_compiles_with_xla():
  model = modeling.BertClassifier(TINY, num_labels=2)
  features = _features()
  eager = model(features)["logits"].numpy()
  compiled = tf.function(lambda f: model(f)["logits"], jit_compile=True)(features).numpy()
  np.testing.assert_allclose(eager, compiled, atol=1e-5)
