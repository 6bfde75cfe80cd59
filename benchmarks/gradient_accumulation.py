"""Gradient accumulation: peak memory and time of a training step, full batch vs micro-batches.

  python -m benchmarks.gradient_accumulation [--task classifier] [--accumulation 4] [--steps 3]
                                             [--repeats 3] [--jit]

BERT-mini on `--task`'s sequence length and batch (benchmarks/train_step.py's tasks, random
batches from tf.data), trained by the Trainer the scripts use: once with the whole batch per
step, once with --gradient_accumulation_steps=K (the same batch as K micro-batches, summed in
the compiled step). Peak memory is TensorFlow's CPU allocator's high-water mark while the loop
runs `--steps` steps (tf.config.experimental.get_memory_info after reset_memory_stats), minus
what it held before (weights, Adam slots, the input buffers): the step's own memory, i.e.
activations and gradients (with accumulation also the gradient sums). Both figures are medians
over `--repeats` rounds, the two runs taking turns: the peak varies from round to round, as
TensorFlow's executor runs independent ops in a varying order. Merges the figures into benchmarks/results.json under "gradient_accumulation", "tasks",
the task's name.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (after the log-level variable)
import tf_keras  # noqa: E402

from benchmarks import common, train_step  # noqa: E402
from bert_tf import modeling  # noqa: E402
from bert_tf.tasks import classifier as classifier_task  # noqa: E402
from bert_tf.tasks import pretraining as pretraining_task  # noqa: E402
from bert_tf.tasks import squad as squad_task  # noqa: E402
from bert_tf.training import trainer  # noqa: E402

DEVICE = "CPU:0"
MODELS = dict(classifier=(lambda c: modeling.BertClassifier(c, num_labels=2),
                          classifier_task.classification_loss),
              pretraining=(modeling.BertPretrainer, pretraining_task.pretraining_loss),
              squad=(modeling.BertSpanLabeler, squad_task.span_loss))


def make_trainer(task: str, accumulation: int, output_dir: str, steps: int,
                 jit_compile: bool) -> trainer.Trainer:
  """train_step's BERT-mini Trainer for `task`, with `accumulation` micro-batches per step."""
  shape = train_step.TASKS[task]
  features = train_step._random_features(task, shape, seed=1)  # pylint: disable=protected-access
  build, loss_fn = MODELS[task]

  def model_fn():
    tf_keras.utils.set_random_seed(1)
    return modeling.build_model(build(train_step.BERT_MINI))

  def dataset_fn(context: tf.distribute.InputContext, start_batch: int) -> tf.data.Dataset:
    batch = context.get_per_replica_batch_size(shape.batch_size)
    dataset = tf.data.Dataset.from_tensor_slices(features).repeat()
    return dataset.skip(start_batch * batch).batch(batch, drop_remainder=True).prefetch(2)

  config = trainer.TrainConfig(
      output_dir=output_dir, train_batch_size=shape.batch_size,
      num_train_steps=train_step.NUM_TRAIN_STEPS, learning_rate=train_step.LEARNING_RATE,
      num_warmup_steps=train_step.NUM_WARMUP_STEPS, iterations_per_loop=steps,
      save_checkpoints_steps=train_step.NUM_TRAIN_STEPS, jit_compile=jit_compile,
      gradient_accumulation_steps=accumulation,
      max_seconds_per_loop=train_step.UNBOUNDED_LOOP_SECONDS)
  return trainer.Trainer(tf.distribute.get_strategy(), config, model_fn, loss_fn, dataset_fn)


class Run:
  """One Trainer's loop over its own iterator, timed and measured without checkpoints."""

  def __init__(self, run: trainer.Trainer, steps: int):
    self.run, self.steps = run, tf.constant(steps)
    self.iterator = run._distributed_dataset()  # pylint: disable=protected-access
    self.loop(tf.constant(1))  # traces (and with --jit compiles) the loop

  def loop(self, steps: tf.Tensor) -> float:
    return float(self.run._train_loop(self.iterator, steps)[0])  # pylint: disable=protected-access

  def round(self) -> Dict[str, float]:
    """Seconds per step over `steps` steps, and the allocator's peak meanwhile (MiB): above
    what it held before (the step's own memory) and in all."""
    tf.config.experimental.reset_memory_stats(DEVICE)
    before = tf.config.experimental.get_memory_info(DEVICE)["current"]
    started = time.perf_counter()
    self.loop(self.steps)
    seconds = (time.perf_counter() - started) / int(self.steps)
    peak = tf.config.experimental.get_memory_info(DEVICE)["peak"]
    return dict(seconds_per_step=seconds, step_peak_mib=(peak - before) / 2**20,
                allocator_peak_mib=peak / 2**20)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--task", default="classifier", choices=sorted(MODELS))
  parser.add_argument("--accumulation", type=int, default=4)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--jit", action="store_true", help="compile the step with XLA")
  args = parser.parse_args(argv)
  train_step.set_threads(os.cpu_count() or 1)
  batch = train_step.TASKS[args.task].batch_size
  names = {1: f"batch {batch}",
           args.accumulation: f"{args.accumulation} x {batch // args.accumulation}"}
  with tempfile.TemporaryDirectory() as output_dir:
    runs = {names[k]: Run(make_trainer(args.task, k, os.path.join(output_dir, str(k)),
                                       args.steps, args.jit), args.steps)
            for k in names}
    rounds: Dict[str, List[Dict[str, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
      for name, run in runs.items():
        rounds[name].append(run.round())
  full, micro = names[1], names[args.accumulation]
  figures = {name: {**{key: round(statistics.median(r[key] for r in values), 4 if "sec" in key
                                  else 1) for key in values[0]},
                    "rounds": [{k: round(v, 4) for k, v in r.items()} for r in values]}
             for name, values in rounds.items()}
  entry = dict(
      command=" ".join(["python -m benchmarks.gradient_accumulation",
                        *(argv if argv is not None else sys.argv[1:])]),
      machine=common.machine_info(), seq_length=train_step.TASKS[args.task].seq_length,
      batch_size=batch,
      accumulation=args.accumulation, jit_compile=args.jit, steps=args.steps, runs=figures,
      memory_ratio=round(figures[micro]["step_peak_mib"] / figures[full]["step_peak_mib"], 3),
      time_ratio=round(figures[micro]["seconds_per_step"] / figures[full]["seconds_per_step"], 3))
  tasks = common.read_results().get("gradient_accumulation", {}).get("tasks", {})
  common.merge_results("gradient_accumulation", dict(tasks={**tasks, args.task: entry}))
  for name, values in figures.items():
    print(f"{name}: step memory {values['step_peak_mib']} MiB (allocator peak "
          f"{values['allocator_peak_mib']} MiB), {values['seconds_per_step'] * 1000:.0f} ms/step")
  print(f"micro-batches / full batch: memory {entry['memory_ratio']}x, time "
        f"{entry['time_ratio']}x")
  return entry


if __name__ == "__main__":
  main()
