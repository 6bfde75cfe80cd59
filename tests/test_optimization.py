"""Learning-rate schedule (google-research semantics) and AdamW weight-decay exclusions."""

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.training import optimization


def test_google_schedule_warms_up_then_drops_and_decays_from_step_zero():
  schedule = optimization.WarmupLinearDecay(1.0, num_train_steps=100, num_warmup_steps=10)
  values = [float(schedule(step)) for step in (0, 5, 9, 10, 55, 100, 120)]
  np.testing.assert_allclose(values, [0.0, 0.5, 0.9, 0.9, 0.45, 0.0, 0.0], atol=1e-7)


def test_fixed_schedule_decays_from_the_end_of_warmup():
  schedule = optimization.WarmupLinearDecay(1.0, 100, 10, decay_from_warmup_end=True)
  values = [float(schedule(step)) for step in (5, 10, 55, 100)]
  np.testing.assert_allclose(values, [0.5, 1.0, 0.5, 0.0], atol=1e-7)


def test_adamw_does_not_decay_layer_norm_or_bias():
  kernel = tf.Variable(np.ones((2, 2), np.float32), name="layer/kernel")
  bias = tf.Variable(np.ones(2, np.float32), name="layer/bias")
  gamma = tf.Variable(np.ones(2, np.float32), name="encoder/embeddings/layer_norm/gamma")
  google_gamma = tf.Variable(np.ones(2, np.float32), name="cls/transform/LayerNorm/gamma")
  optimizer = optimization.create_optimizer(0.1, num_train_steps=10, num_warmup_steps=0,
                                            weight_decay_rate=0.5)
  variables = [kernel, bias, gamma, google_gamma]
  optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables])
  np.testing.assert_allclose(kernel.numpy(), 1.0 - 0.1 * 0.5)  # decayed
  for variable in (bias, gamma, google_gamma):
    np.testing.assert_allclose(variable.numpy(), 1.0)


def test_lamb_and_unknown_optimizer():
  assert "LAMB" in type(optimization.create_optimizer(1e-3, 10, 1, optimizer="lamb")).__name__
  with pytest.raises(ValueError, match="--optimizer='sgd'"):
    optimization.create_optimizer(1e-3, 10, 1, optimizer="sgd")


@pytest.mark.parametrize("name", optimization.OPTIMIZERS)
def test_dense_embedding_gradient_updates_like_the_sparse_one(name):
  # The trainer sums the sparse word-embedding gradient into a dense tensor for speed.
  rng = np.random.default_rng(0)
  table = rng.normal(size=(6, 3)).astype(np.float32)
  sparse_table = tf.Variable(table, name="sparse/embeddings")
  dense_table = tf.Variable(table, name="dense/embeddings")
  sparse_optimizer = optimization.create_optimizer(0.1, 10, 2, optimizer=name)
  dense_optimizer = optimization.create_optimizer(0.1, 10, 2, optimizer=name)
  for _ in range(3):
    gradient = tf.IndexedSlices(tf.constant(rng.normal(size=(4, 3)), tf.float32),
                                indices=tf.constant([1, 4, 1, 0]), dense_shape=[6, 3])
    sparse_optimizer.apply_gradients([(gradient, sparse_table)])
    dense_optimizer.apply_gradients([(tf.convert_to_tensor(gradient), dense_table)])
  np.testing.assert_allclose(dense_table.numpy(), sparse_table.numpy(), rtol=1e-5, atol=1e-6)
  assert not np.allclose(dense_table.numpy(), table)
