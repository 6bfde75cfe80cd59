"""Learning-rate schedule (google-research semantics) and AdamW weight-decay exclusions."""

import logging

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


@pytest.mark.parametrize("name,bias_correction",
                         [("adamw", False), ("adamw", True), ("lamb", False)])
def test_dense_embedding_gradient_updates_like_the_sparse_one(name, bias_correction):
  # The trainer sums the sparse word-embedding gradient into a dense tensor for speed. Small
  # gradients: epsilon matters, so both paths must rescale it alike.
  rng = np.random.default_rng(0)
  table = rng.normal(size=(6, 3)).astype(np.float32)
  sparse_table = tf.Variable(table, name="sparse/embeddings")
  dense_table = tf.Variable(table, name="dense/embeddings")
  sparse_optimizer, dense_optimizer = (
      optimization.create_optimizer(0.1, 10, 2, optimizer=name,
                                    adam_bias_correction=bias_correction) for _ in range(2))
  for _ in range(3):
    gradient = tf.IndexedSlices(tf.constant(rng.normal(size=(4, 3)) * 1e-6, tf.float32),
                                indices=tf.constant([1, 4, 1, 0]), dense_shape=[6, 3])
    sparse_optimizer.apply_gradients([(gradient, sparse_table)])
    dense_optimizer.apply_gradients([(tf.convert_to_tensor(gradient), dense_table)])
  np.testing.assert_allclose(dense_table.numpy(), sparse_table.numpy(), rtol=1e-5, atol=1e-6)
  assert not np.allclose(dense_table.numpy(), table)


def _reference_adamw(values, gradients, learning_rates, decayed, bias_correction, beta_1=0.9,
                     beta_2=0.999, epsilon=1e-6, weight_decay_rate=0.01):
  """AdamW from its documented math, in float64 NumPy: google-research's AdamWeightDecayOptimizer,
  or with `bias_correction` the standard one (Loshchilov & Hutter; torch.optim.AdamW).

  m and v are exponential moving averages of g and g^2; the update is m / (sqrt(v) + eps), plus
  weight_decay_rate * w for decayed variables, times the learning rate. With `bias_correction`,
  m and v are first divided by 1 - beta_1^t and 1 - beta_2^t, so eps is added after correcting.
  The betas are taken as float32 holds them (0.999 is 0.99900001), as TF's variables do: 1 - beta_2
  is then 1.3e-5 smaller than in exact arithmetic, which would otherwise dominate the comparison.
  """
  beta_1, beta_2 = float(np.float32(beta_1)), float(np.float32(beta_2))
  values = [np.array(v, np.float64) for v in values]
  m = [np.zeros_like(v) for v in values]
  v2 = [np.zeros_like(v) for v in values]
  for t, (step_gradients, lr) in enumerate(zip(gradients, learning_rates), start=1):
    m_scale, v_scale = (1 - beta_1**t, 1 - beta_2**t) if bias_correction else (1.0, 1.0)
    for i, g in enumerate(step_gradients):
      m[i] = beta_1 * m[i] + (1 - beta_1) * g
      v2[i] = beta_2 * v2[i] + (1 - beta_2) * g * g
      decay = weight_decay_rate * values[i] if decayed[i] else 0.0
      adam = (m[i] / m_scale) / (np.sqrt(v2[i] / v_scale) + epsilon)
      values[i] = values[i] - lr * (adam + decay)
  return values


# Gradients of 0.1 make epsilon negligible; of 1e-6 (rare tokens' embeddings, say) they make it
# matter, which tells the standard bias correction from Keras' (epsilon before correcting).
@pytest.mark.parametrize("gradient_scale", [0.1, 1e-6])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_adamw_follows_its_reference_update_rule(bias_correction, gradient_scale):
  rng = np.random.default_rng(1)
  names = ["layer/kernel", "layer/bias", "encoder/layer_norm/gamma", "cls/LayerNorm/beta"]
  decayed = [True, False, False, False]
  initial = [rng.normal(size=(3, 2)), rng.normal(size=2), rng.normal(size=2), rng.normal(size=2)]
  variables = [tf.Variable(v.astype(np.float32), name=n) for v, n in zip(initial, names)]
  steps, warmup, total, peak = 6, 2, 10, 0.05
  gradients = [[rng.normal(size=v.shape) * gradient_scale for v in initial]
               for _ in range(steps)]
  optimizer = optimization.create_optimizer(peak, total, warmup, weight_decay_rate=0.01,
                                            adam_bias_correction=bias_correction)
  for step_gradients in gradients:
    optimizer.apply_gradients(
        [(tf.constant(g, tf.float32), v) for g, v in zip(step_gradients, variables)])
  # google-research's schedule: linear warmup to `peak`, then linear decay from step 0.
  learning_rates = [peak * s / warmup if s < warmup else peak * (1 - s / total)
                    for s in range(steps)]
  expected = _reference_adamw(initial, gradients, learning_rates, decayed, bias_correction)
  for variable, value in zip(variables, expected):
    np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-6)
  other = _reference_adamw(initial, gradients, learning_rates, decayed, not bias_correction)
  assert not np.allclose(variables[0].numpy(), other[0], rtol=1e-3)  # the switch matters


def test_the_optimizer_does_not_log_a_clip_norm_of_zero(caplog):
  """tf-models' AdamWeightDecay logs gradient_clip_norm=0.000000 though the trainer clips at
  1.0: that line is dropped (the trainer logs its own)."""
  caplog.set_level(logging.INFO)
  for bias_correction in (False, True):
    optimization.create_optimizer(1e-3, 10, 1, adam_bias_correction=bias_correction)
  assert not [r for r in caplog.records if "gradient_clip_norm" in r.getMessage()]
