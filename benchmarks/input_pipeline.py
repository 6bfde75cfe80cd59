"""Input pipeline throughput against what a training step consumes, in the same run.

  python -m benchmarks.input_pipeline [--records 16384] [--repeats 3] [--train_steps 8]

Writes sharded TFRecords (8 shards) of random features with realistic shapes at seq 128 (SQuAD
training features through squad_records.FeatureWriter, classifier features through
classifier_data.serialize_features; each has a random real length, the rest padding) and reads
them with the training pipelines the tasks use (squad_records.make_dataset, and
input_pipeline.training_dataset with classifier_data.feature_parser): shuffled, batched 32 with
drop_remainder, parsed after batching, int32. Records/s is the median over repeats of reading
`--records` records after the first batch. The reference is the training step of BERT-mini
(L=4, H=256, A=4) as a classifier at the same batch and length, figure 4's trainer
(benchmarks.train_step) on in-memory batches: examples/s of full steps with the optimizer.
The target is a pipeline at least 5x faster than the step. Merged into benchmarks/results.json
under "input_pipeline".
"""

import argparse
import os
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import train_step  # noqa: E402
from bert_tf.data import squad_features, squad_records  # noqa: E402
from bert_tf.data import classifier as classifier_data
from bert_tf.data import pipeline as input_pipeline
from bert_tf.data import records

SEQ_LENGTH, BATCH_SIZE, NUM_SHARDS = 128, 32, 8


def random_inputs(rng: np.random.Generator, vocab_size: int) -> Dict[str, list]:
  """input_ids, input_mask and segment_ids of one example with a random real length."""
  length = int(rng.integers(SEQ_LENGTH // 4, SEQ_LENGTH + 1))
  first = int(rng.integers(2, length - 1))
  padding = [0] * (SEQ_LENGTH - length)
  return dict(input_ids=rng.integers(1000, vocab_size, length).tolist() + padding,
              input_mask=[1] * length + padding,
              segment_ids=[0] * first + [1] * (length - first) + padding)


def write_squad_features(pattern: str, count: int, vocab_size: int) -> str:
  """`count` random SQuAD training features in NUM_SHARDS files; returns their glob."""
  rng = np.random.default_rng(1)
  with squad_records.FeatureWriter(pattern, is_training=True, num_shards=NUM_SHARDS) as writer:
    for index in range(count):
      inputs = random_inputs(rng, vocab_size)
      start = int(rng.integers(0, SEQ_LENGTH))
      writer.process_feature(squad_features.InputFeatures(
          unique_id=1000000000 + index, example_index=index, doc_span_index=0, tokens=[],
          token_to_orig_map={}, token_is_max_context={}, start_position=start,
          end_position=min(start + int(rng.integers(0, 8)), SEQ_LENGTH - 1), is_impossible=False,
          **inputs))
  return pattern + "-*"


def write_classifier_features(pattern: str, count: int, vocab_size: int) -> str:
  """`count` random two-label classifier features in NUM_SHARDS files; returns their glob."""
  rng = np.random.default_rng(2)
  writers = [tf.io.TFRecordWriter(name) for name in records.shard_names(pattern, NUM_SHARDS)]
  for index in range(count):
    feature = classifier_data.InputFeatures(label_id=int(rng.integers(0, 2)),
                                            **random_inputs(rng, vocab_size))
    writers[index % NUM_SHARDS].write(classifier_data.serialize_features(feature))
  for writer in writers:
    writer.close()
  return pattern + "-*"


def records_per_second(dataset: tf.data.Dataset, records: int, repeats: int) -> Dict[str, Any]:
  """Median records/s of reading `records` records (after a first batch) over fresh iterators."""
  batches = records // BATCH_SIZE
  rates = []
  for _ in range(repeats):
    iterator = iter(dataset)
    next(iterator)  # Starts the pipeline's threads and fills the shuffle buffer.
    started = time.perf_counter()
    for _ in range(batches):
      next(iterator)
    rates.append(batches * BATCH_SIZE / (time.perf_counter() - started))
  return dict(records_per_sec=round(float(np.median(rates))), all=[round(r) for r in rates])


def train_step_examples_per_second(steps: int, work_dir: str) -> Dict[str, Any]:
  """Examples/s of bert_tf.trainer's full step (forward, backward, clipping, AdamW) on the CPU.

  The trainer is figure 4's (benchmarks.train_step): BERT-mini classifier, seq 128, batch 32, fed
  from in-memory batches; `steps` steps run in one loop.
  """
  task = train_step.TASKS["classifier"]
  run = train_step.make_trainer("classifier", task, work_dir, steps_per_loop=steps)
  timing = common.time_training_steps(run, steps)
  step_seconds = timing["seconds_per_step"]
  return dict(examples_per_sec=round(task.batch_size / step_seconds, 1), steps=steps,
              seconds_per_step=round(step_seconds, 3),
              checkpoint_seconds=round(timing["checkpoint_seconds"], 2))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--records", type=int, default=16384, help="records read per repeat")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--train_steps", type=int, default=8, help="timed training steps")
  args = parser.parse_args(argv)
  vocab_size = train_step.BERT_MINI.vocab_size
  with tempfile.TemporaryDirectory() as tmp:
    # Enough records that a repeat never reads a record twice in one epoch.
    count = args.records + 2 * BATCH_SIZE
    squad_files = write_squad_features(os.path.join(tmp, "squad", "train.tf_record"), count,
                                       vocab_size)
    classifier_files = write_classifier_features(os.path.join(tmp, "classifier.tf_record"),
                                                 count, vocab_size)
    pipelines = {
        "squad training features (squad_records.make_dataset)": squad_records.make_dataset(
            squad_files, SEQ_LENGTH, is_training=True, batch_size=BATCH_SIZE,
            drop_remainder=True),
        "classifier features (input_pipeline.training_dataset)": input_pipeline.training_dataset(
            classifier_files, classifier_data.feature_parser(SEQ_LENGTH), BATCH_SIZE),
    }
    figures = {name: records_per_second(dataset, args.records, args.repeats)
               for name, dataset in pipelines.items()}
    step = train_step_examples_per_second(args.train_steps, os.path.join(tmp, "train"))
  slowest = min(f["records_per_sec"] for f in figures.values())
  entry = dict(
      what="records/s of the training input pipelines vs examples/s of the BERT-mini training "
           "step at the same batch",
      seq_length=SEQ_LENGTH, batch_size=BATCH_SIZE, shards=NUM_SHARDS,
      records_read=args.records // BATCH_SIZE * BATCH_SIZE, repeats=args.repeats,
      pipelines=figures, train_step=dict(model="BERT-mini classifier (L=4, H=256, A=4)", **step),
      ratio=round(slowest / step["examples_per_sec"], 1), machine=common.machine_info())
  for name, values in figures.items():
    print(f"{name:<56}{values['records_per_sec']:>10,} records/s")
  print(f"{'training step, BERT-mini, batch 32, seq 128':<56}{step['examples_per_sec']:>10} "
        "examples/s")
  print(f"slowest pipeline / training step: {entry['ratio']}x (target 5x)")
  common.merge_results("input_pipeline", entry)
  return entry


if __name__ == "__main__":
  main()
