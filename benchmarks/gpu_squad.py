"""BERT-Base SQuAD fine-tuning throughput on GPUs: steps/s, examples/s and MFU against the peak.

  python -m benchmarks.gpu_squad [--batch_size 32] [--steps 50] [--no_xla]

Trains bert_tf's span labeler (configs/bert_base_uncased.json, random weights) at seq 384 through
bert_tf.trainer on every visible GPU (MirroredStrategy; the batch is per GPU), with XLA and
mixed precision: bfloat16 from compute capability 8.0 (A100, L4, H100), float16 with loss scaling
before (T4, V100). Batches are random int32 features from memory, so the figure is the step's,
not the input pipeline's (benchmarks.input_pipeline measures that). Model FLOPs per example are
figure 4's formula (benchmarks.train_step.model_flops); MFU is model FLOP/s over the GPUs' dense
peak from PEAK_TFLOPS. On a machine without a GPU it exits with a message. Merged into
benchmarks/results.json under "gpu_squad".
"""

import argparse
import os
import tempfile
from typing import Any, Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import train_step  # noqa: E402
from bert_tf import modeling  # noqa: E402
from bert_tf.checkpoints.configs import BertConfig  # noqa: E402
from bert_tf.tasks import squad as squad_task
from bert_tf.training import distribution, trainer  # noqa: E402

SEQ_LENGTH = 384
BERT_BASE = common.ROOT / "configs" / "bert_base_uncased.json"
# Dense (no sparsity) tensor-core peaks in TFLOP/s, bf16 (fp16 for T4 and V100, which lack bf16),
# from NVIDIA's data sheets; the first name contained in the device name wins.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0),
               ("L40S", 362.0), ("L4", 121.0), ("V100", 125.0), ("T4", 65.0))


def peak_tflops(device_name: str) -> Optional[float]:
  """The dense half-precision peak of one GPU named `device_name`; None when not in the table."""
  for name, peak in PEAK_TFLOPS:
    if name in device_name:
      return peak
  return None


def gpu_details() -> Dict[str, Any]:
  """Name, compute capability and count of the visible GPUs; SystemExit when there is none."""
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus:
    raise SystemExit("No GPU visible to TensorFlow: benchmarks.gpu_squad measures GPU training "
                     "and has nothing to do on this machine.")
  details = tf.config.experimental.get_device_details(gpus[0])
  return dict(name=details.get("device_name", "unknown GPU"),
              compute_capability=tuple(details.get("compute_capability", (0, 0))),
              count=len(gpus))


def random_features(count: int, vocab_size: int) -> Dict[str, np.ndarray]:
  """`count` random SQuAD training features at seq 384, every position real."""
  rng = np.random.default_rng(1)
  shape = (count, SEQ_LENGTH)
  return dict(input_ids=rng.integers(0, vocab_size, shape, dtype=np.int32),
              input_mask=np.ones(shape, np.int32), segment_ids=np.zeros(shape, np.int32),
              start_positions=rng.integers(0, SEQ_LENGTH, count, dtype=np.int32),
              end_positions=rng.integers(0, SEQ_LENGTH, count, dtype=np.int32))


def make_trainer(config: BertConfig, strategy: tf.distribute.Strategy, global_batch: int,
                 steps: int, xla: bool, policy: str, output_dir: str) -> trainer.Trainer:
  """run_squad.py's trainer for BERT-Base at seq 384, fed 8 random batches in a cycle."""
  features = random_features(8 * global_batch, config.vocab_size)
  modeling.set_mixed_precision(policy)

  def model_fn() -> tf_keras.Model:
    tf_keras.utils.set_random_seed(1)
    return modeling.build_model(modeling.BertSpanLabeler(config))

  def dataset_fn(context: tf.distribute.InputContext, start_batch: int) -> tf.data.Dataset:
    batch = context.get_per_replica_batch_size(global_batch)
    dataset = tf.data.Dataset.from_tensor_slices(features).repeat()
    return dataset.skip(start_batch * batch).batch(batch, drop_remainder=True).prefetch(2)

  train_config = trainer.TrainConfig(
      output_dir=output_dir, train_batch_size=global_batch, num_train_steps=10**6,
      learning_rate=3e-5, num_warmup_steps=100, iterations_per_loop=steps,
      save_checkpoints_steps=10**6, keep_checkpoint_max=1, jit_compile=xla,
      mixed_precision=policy)
  return trainer.Trainer(strategy, train_config, model_fn, squad_task.span_loss, dataset_fn)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch_size", type=int, default=32, help="examples per GPU and step")
  parser.add_argument("--steps", type=int, default=50, help="timed steps (one loop)")
  parser.add_argument("--no_xla", action="store_true", help="without XLA compilation")
  args = parser.parse_args(argv)
  gpu = gpu_details()
  policy = distribution.precision_for("GPUs", [tuple(gpu["compute_capability"])])
  config = BertConfig.from_json_file(str(BERT_BASE))
  strategy = tf.distribute.MirroredStrategy()
  global_batch = args.batch_size * strategy.num_replicas_in_sync
  with tempfile.TemporaryDirectory() as output_dir:
    run = make_trainer(config, strategy, global_batch, args.steps, not args.no_xla, policy,
                       output_dir)
    timing = common.time_training_steps(run, args.steps)
  steps_per_sec = 1 / timing["seconds_per_step"]
  flops_per_step = train_step.model_flops(
      "squad", train_step.Task(SEQ_LENGTH, global_batch), config)
  peak = peak_tflops(gpu["name"])
  achieved_tflops = flops_per_step * steps_per_sec / 1e12
  entry = dict(
      what="BERT-Base SQuAD fine-tuning step (seq 384) through bert_tf.trainer on GPUs",
      gpu=gpu["name"], gpus=gpu["count"], compute_capability=list(gpu["compute_capability"]),
      mixed_precision=policy, xla=not args.no_xla, batch_per_gpu=args.batch_size,
      steps=args.steps, steps_per_sec=round(steps_per_sec, 3),
      examples_per_sec=round(steps_per_sec * global_batch, 1),
      model_tflops_per_step=round(flops_per_step / 1e12, 2),
      achieved_tflops=round(achieved_tflops, 1),
      peak_tflops_per_gpu=peak,
      mfu=round(achieved_tflops / (peak * gpu["count"]), 3) if peak else None,
      machine=common.machine_info())
  print(f"{gpu['count']} x {gpu['name']} ({policy}, XLA {not args.no_xla}): "
        f"{entry['steps_per_sec']} steps/s, {entry['examples_per_sec']} examples/s, "
        f"{entry['achieved_tflops']} TFLOP/s, MFU "
        f"{entry['mfu'] if peak else 'unknown (GPU not in PEAK_TFLOPS)'}")
  common.merge_results("gpu_squad", entry)
  return entry


if __name__ == "__main__":
  main()
