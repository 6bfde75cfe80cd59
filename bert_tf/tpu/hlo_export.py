"""The HLO of a task's real training and prediction steps, for the TPU compiler (tpu/plan.py).

The training step is the Trainer's own replica step (training/trainer.py: the task's model and
per-example loss, gradient accumulation, global-norm clipping, the optimizer update, the dtype
policy), built for one replica and exported with `experimental_get_compiler_ir(...)(stage=
"hlo_serialized")` after the optimizer has created its slots. The prediction step is what
trainer.predict runs: the model with training=False. TensorFlow cannot export a stateful step
for a TPU without one, so this HLO is TF's CPU lowering of the step; libtpu then compiles it
(tpu/compile.py, in its own environment). TF marks every updated variable as aliased with its
input, as the TPU runtime updates variables in place.
"""

import dataclasses
import tempfile
from typing import Callable, Dict

import tensorflow as tf
import tf_keras

from bert_tf import modeling
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.data import packing
from bert_tf.tasks import classifier, pretraining, squad
from bert_tf.training import trainer

TASKS = ("squad", "classifier", "pretraining")


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """One replica's step: the task, the model, and the shapes and settings the scripts take."""
  task: str
  config: BertConfig
  max_seq_length: int
  batch_size: int  # per replica, for one optimizer step (all micro-batches together)
  gradient_accumulation_steps: int = 1
  mixed_precision: str = "mixed_bfloat16"
  optimizer: str = "adamw"
  max_predictions_per_seq: int = 20  # pretraining; packed, the predictions a row holds
  num_labels: int = 2  # classifier
  next_sentence_prediction: bool = True  # pretraining
  # Packed training rows (data/packing.py, data/packed_pretraining.py) of at most this many
  # examples; 0: one example a row. Packed, batch_size counts rows.
  examples_per_row: int = 0


def _model_and_loss(spec: StepSpec) -> tuple:
  """The task's model builder and per-example loss, as its Task class builds them."""
  config = spec.config
  if spec.task == "squad":
    return lambda: modeling.build_model(modeling.BertSpanLabeler(config)), squad.span_loss
  if spec.task == "classifier":
    return (lambda: modeling.build_model(modeling.BertClassifier(config, spec.num_labels)),
            classifier.classification_loss)
  if spec.task == "pretraining":
    return (lambda: modeling.build_model(modeling.BertPretrainer(
        config, spec.next_sentence_prediction)), pretraining.pretraining_loss)
  raise ValueError(f"task {spec.task!r}: expected one of {', '.join(TASKS)}.")


def features(spec: StepSpec, batch_size: int) -> Dict[str, tf.Tensor]:
  """Zero features of the shapes and dtypes the task's training input pipeline yields."""
  shape = [batch_size, spec.max_seq_length]
  ints = lambda *dims: tf.zeros(dims, tf.int32)  # pylint: disable=unnecessary-lambda-assignment
  if spec.examples_per_row:
    return _packed_features(spec, batch_size, ints)
  result = dict(input_ids=ints(*shape), input_mask=ints(*shape), segment_ids=ints(*shape))
  if spec.task == "squad":
    result.update(start_positions=ints(batch_size), end_positions=ints(batch_size))
  elif spec.task == "classifier":
    result.update(label_ids=ints(batch_size))
  elif spec.task == "pretraining":
    predictions = [batch_size, spec.max_predictions_per_seq]
    result.update(masked_lm_positions=ints(*predictions), masked_lm_ids=ints(*predictions),
                  masked_lm_weights=tf.ones(predictions, tf.float32))
    if spec.next_sentence_prediction:
      result["next_sentence_labels"] = ints(batch_size, 1)
  return result


def _packed_features(spec: StepSpec, rows: int, ints: Callable[..., tf.Tensor]
                     ) -> Dict[str, tf.Tensor]:
  """Zero packed rows (data/packing.py's and data/packed_pretraining.py's layouts) as the task's
  packed training pipeline yields."""
  tokens = [rows, spec.max_seq_length]
  slots = [rows, spec.examples_per_row]
  result = {"input_ids": ints(*tokens), "segment_ids": ints(*tokens),
            packing.POSITION_IDS: ints(*tokens), packing.EXAMPLE_IDS: ints(*tokens),
            packing.EXAMPLE_STARTS: ints(*slots),
            packing.EXAMPLE_WEIGHTS: tf.ones(slots, tf.float32)}
  if spec.task == "pretraining":
    predictions = [rows, spec.max_predictions_per_seq]
    result.update(masked_lm_positions=ints(*predictions), masked_lm_ids=ints(*predictions),
                  masked_lm_weights=tf.ones(predictions, tf.float32))
    if spec.next_sentence_prediction:
      result["next_sentence_labels"] = ints(*slots)
    return result
  labels = ("start_positions", "end_positions") if spec.task == "squad" else ("label_ids",)
  result.update({name: ints(*slots) for name in labels})
  return result


def features_bytes(spec: StepSpec, batch_size: int) -> int:
  """Bytes of one batch of `features` (the step's arguments that are not variables)."""
  return sum(t.shape.num_elements() * t.dtype.size for t in features(spec, batch_size).values())


def _with_policy(spec: StepSpec, export: Callable[[], bytes]) -> bytes:
  """Runs `export` in a fresh Keras graph under the spec's dtype policy, then restores float32."""
  tf_keras.backend.clear_session()
  modeling.set_mixed_precision(spec.mixed_precision)
  try:
    return export()
  finally:
    modeling.set_mixed_precision(None)


def train_step_hlo(spec: StepSpec) -> bytes:
  """The serialized HloModuleProto of the Trainer's replica step for `spec`."""
  model_fn, loss_fn = _model_and_loss(spec)

  def export() -> bytes:
    with tempfile.TemporaryDirectory() as output_dir:
      config = trainer.TrainConfig(
          output_dir=output_dir, train_batch_size=spec.batch_size, num_train_steps=1000,
          num_warmup_steps=100, learning_rate=1e-4, optimizer=spec.optimizer,
          jit_compile=True, mixed_precision=spec.mixed_precision,
          gradient_accumulation_steps=spec.gradient_accumulation_steps)
      # One replica (the default strategy): its step is what each TPU core or chip runs.
      run = trainer.Trainer(tf.distribute.get_strategy(), config, model_fn, loss_fn,
                            dataset_fn=None)
      step = run._train_step  # pylint: disable=protected-access
      return step.experimental_get_compiler_ir(features(spec, spec.batch_size))(
          stage="hlo_serialized")
  return _with_policy(spec, export)


def predict_step_hlo(spec: StepSpec) -> bytes:
  """The serialized HloModuleProto of one prediction batch (the model with training=False)."""
  model_fn, _ = _model_and_loss(spec)

  def export() -> bytes:
    model = model_fn()
    step = tf.function(lambda batch: model(batch, training=False), jit_compile=True)
    return step.experimental_get_compiler_ir(features(spec, spec.batch_size))(
        stage="hlo_serialized")
  return _with_policy(spec, export)
