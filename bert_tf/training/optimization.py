"""Learning-rate schedule and optimizers for BERT training (google-research semantics).

The optimizers are tf-models-official's AdamWeightDecay and LAMB. By default AdamW runs
google-research's update, which has no bias correction (Jacob Devlin: "mostly an oversight, but
doesn't really matter when using a reasonable learning rate warmup", google-research/bert#153),
so its published recipes run the schedule they were tuned with; Keras' Adam, and so tf-models'
AdamWeightDecay, always corrects (no argument turns it off; keras-team/keras#13577 proposed one
and was closed). The fused kernel they call takes the correction as arguments: ApplyAdam computes
lr_t = lr * sqrt(1 - beta2_power) / (1 - beta1_power) (tf.raw_ops.ResourceApplyAdam's
documentation), so powers of 0 give lr_t = lr, and var -= lr * m / (sqrt(v) + epsilon) is
google-research's rule, epsilon after the square root. `adam_bias_correction` gives the standard
bias-corrected AdamW instead (Loshchilov & Hutter's, torch.optim.AdamW's and Hugging Face's), with
epsilon added after bias-correcting sqrt(v); Keras' Adam adds it before, so its epsilon is in
effect eps / sqrt(1 - beta2^t) (32 times larger at step 1), which moved fine-tuning losses by up
to 1.5% against torch (issue 14). The schedule is our own:
tf-models' LinearWarmup and PolynomialWarmUp warm up to the *decayed* rate at the end of warmup
(and PolynomialWarmUp skips step 0), while Google's optimization.py warms up linearly from 0 to
the full learning rate and then follows a linear decay measured from step 0, so the rate drops
at the end of warmup. We reproduce that by default and offer the fix as an option.
"""

import logging
from typing import List

import tensorflow as tf
import tf_keras
from official.modeling.optimization import lamb
from official.modeling.optimization import legacy_adamw

# Google's BERT excludes these from weight decay; they match our LayerNorm and bias variables.
EXCLUDE_FROM_WEIGHT_DECAY: List[str] = ["LayerNorm", "layer_norm", "bias"]
OPTIMIZERS = ("adamw", "lamb")


class WarmupLinearDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup from 0 to `learning_rate`, then linear decay to 0 at `num_train_steps`.

  With `decay_from_warmup_end=False` (Google's behaviour) the decay is measured from step 0,
  so after warmup the rate is learning_rate * (1 - step / num_train_steps). With True it
  decays from the full rate at the end of warmup, with no drop.
  """

  def __init__(self, learning_rate: float, num_train_steps: int, num_warmup_steps: int,
               decay_from_warmup_end: bool = False):
    super().__init__()
    if num_train_steps <= 0:
      raise ValueError(f"num_train_steps must be positive, got {num_train_steps}.")
    self.learning_rate = learning_rate
    self.num_train_steps = num_train_steps
    self.num_warmup_steps = num_warmup_steps
    self.decay_from_warmup_end = decay_from_warmup_end

  def __call__(self, step: tf.Tensor) -> tf.Tensor:
    step = tf.cast(step, tf.float32)
    warmup = float(self.num_warmup_steps)
    total = float(self.num_train_steps)
    if self.decay_from_warmup_end:
      progress = (step - warmup) / max(total - warmup, 1.0)
    else:
      progress = step / total
    decayed = self.learning_rate * tf.maximum(1.0 - progress, 0.0)
    if self.num_warmup_steps <= 0:
      return decayed
    warming = self.learning_rate * step / warmup
    return tf.where(step < warmup, warming, decayed)

  def get_config(self):
    return dict(learning_rate=self.learning_rate, num_train_steps=self.num_train_steps,
                num_warmup_steps=self.num_warmup_steps,
                decay_from_warmup_end=self.decay_from_warmup_end)


class GoogleAdamWeightDecay(legacy_adamw.AdamWeightDecay):
  """google-research's AdamWeightDecayOptimizer: AdamW without bias correction.

  Per variable, with g the clipped gradient and lr the schedule's rate:
  m = beta_1 * m + (1 - beta_1) * g, v = beta_2 * v + (1 - beta_2) * g^2,
  var -= lr * (m / (sqrt(v) + epsilon) + weight_decay_rate * var), the decay term only for
  variables not excluded. tf-models' class already applies the decay (from the same var) and the
  exclusions; this one only zeroes the bias correction, on both the dense and the sparse path.
  """

  def _prepare_local(self, var_device, var_dtype, apply_state):
    super()._prepare_local(var_device, var_dtype, apply_state)
    coefficients = apply_state[(var_device, var_dtype)]
    no_correction = tf.zeros([], var_dtype)
    # Dense path: ApplyAdam's lr_t with powers 0 is lr. Sparse path: "lr" is the corrected rate.
    coefficients.update(beta_1_power=no_correction, beta_2_power=no_correction,
                        lr=coefficients["lr_t"])


class BiasCorrectedAdamWeightDecay(legacy_adamw.AdamWeightDecay):
  """The standard bias-corrected AdamW (Loshchilov & Hutter; torch.optim.AdamW, Hugging Face).

  Per variable at step t, with g the clipped gradient and lr the schedule's rate:
  m = beta_1 * m + (1 - beta_1) * g, v = beta_2 * v + (1 - beta_2) * g^2,
  var -= lr * (m_hat / (sqrt(v_hat) + epsilon) + weight_decay_rate * var) with
  m_hat = m / (1 - beta_1^t) and v_hat = v / (1 - beta_2^t), the decay term only for variables
  not excluded. tf-models' class (Keras' Adam) computes lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  * m / (sqrt(v) + epsilon), epsilon before the correction; that equals the rule above with
  epsilon * sqrt(1 - beta_2^t) in its place, so this class only rescales epsilon and keeps
  the fused ResourceApplyAdam kernel (dense path) and Keras' sparse path, which both read it.
  """

  def _prepare_local(self, var_device, var_dtype, apply_state):
    super()._prepare_local(var_device, var_dtype, apply_state)
    coefficients = apply_state[(var_device, var_dtype)]
    coefficients["epsilon"] = coefficients["epsilon"] * tf.sqrt(
        1 - coefficients["beta_2_power"])


class _DropOptimizerClipLog(logging.Filter):
  """Drops tf-models' "AdamWeightDecay gradient_clip_norm=0.000000" line: the optimizer does not
  clip because the trainer does (after the cross-replica sum), so the line misled users."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("AdamWeightDecay gradient_clip_norm=")


def create_optimizer(learning_rate: float, num_train_steps: int, num_warmup_steps: int,
                     optimizer: str = "adamw", weight_decay_rate: float = 0.01,
                     decay_from_warmup_end: bool = False,
                     adam_bias_correction: bool = False) -> tf_keras.optimizers.Optimizer:
  """AdamW (Google's: eps 1e-6, decay 0.01 except LayerNorm/bias) or LAMB over the schedule.

  AdamW is google-research's (no bias correction) unless `adam_bias_correction`, which gives
  the standard bias-corrected AdamW (torch.optim.AdamW's update) with the same decay. Gradients
  are clipped by global norm (1.0) in the trainer, after the cross-replica sum, so the
  optimizers here do not clip.
  """
  schedule = WarmupLinearDecay(learning_rate, num_train_steps, num_warmup_steps,
                               decay_from_warmup_end)
  if optimizer == "adamw":
    adam = BiasCorrectedAdamWeightDecay if adam_bias_correction else GoogleAdamWeightDecay
    quiet = _DropOptimizerClipLog()
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(quiet)
    try:
      return adam(
          learning_rate=schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
          weight_decay_rate=weight_decay_rate,
          exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY, gradient_clip_norm=0.0)
    finally:
      absl_logger.removeFilter(quiet)
  if optimizer == "lamb":
    return lamb.LAMB(
        learning_rate=schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
        weight_decay_rate=weight_decay_rate,
        exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
        exclude_from_layer_adaptation=EXCLUDE_FROM_WEIGHT_DECAY)
  raise ValueError(f"--optimizer={optimizer!r}: expected one of {', '.join(OPTIMIZERS)}.")
