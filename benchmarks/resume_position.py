"""Seconds from start to the first batch when a training run resumes deep into its data.

  python -m benchmarks.resume_position [--shards 64] [--records_per_shard 1500] [--at 0.9,5.5]

Writes `--shards` TFRecord files of pretraining-sized records (input_ids, input_mask, segment_ids
at seq 128, random lengths) with their record counts in a metadata JSON, as create_pretraining_data
does, and resumes input_pipeline.training_dataset (batch 256) at each `--at` (in epochs: 0.9 is
deep into the first, 5.5 in the sixth). Before: the resume point reached by reading and skipping
every consumed raw record (what the pipeline did until issue 13, `dataset.skip(start_record)` over
the same record stream; run_pretraining passed no epoch size, so whole epochs were read too).
After: whole blocks of files skipped by their record counts, only the current block read
(--input_files_in_parallel 16, the default, and 1). Both give the same first batch (checked).
Median of `--repeats` runs each; merged into benchmarks/results.json under "resume_position".
"""

import argparse
import itertools
import json
import os
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from bert_tf.data import pipeline as input_pipeline  # noqa: E402
from bert_tf.data import records  # noqa: E402

SEQ_LENGTH, BATCH_SIZE, SEED = 128, 256, 12345
SPEC = input_pipeline.int_features(dict(input_ids=SEQ_LENGTH, input_mask=SEQ_LENGTH,
                                        segment_ids=SEQ_LENGTH))


def write_shards(directory: str, shards: int, per_shard: int) -> str:
  """`shards` files of `per_shard` random records and their counts' metadata; returns the glob."""
  rng = np.random.default_rng(1)
  counts = {}
  for shard in range(shards):
    name = records.shard_name("data.tfrecord", shard, shards)
    with tf.io.TFRecordWriter(os.path.join(directory, name)) as writer:
      for _ in range(per_shard):
        length = int(rng.integers(SEQ_LENGTH // 4, SEQ_LENGTH + 1))
        padding = [0] * (SEQ_LENGTH - length)
        features = dict(input_ids=rng.integers(1000, 30000, length).tolist() + padding,
                        input_mask=[1] * length + padding,
                        segment_ids=[0] * (length // 2) + [1] * (length - length // 2) + padding)
        example = tf.train.Example(features=tf.train.Features(feature={
            key: records.int64_feature(values) for key, values in features.items()}))
        writer.write(example.SerializeToString())
    counts[name] = per_shard
  with open(os.path.join(directory, "data.tfrecord.metadata.json"), "w") as f:
    json.dump({"record_counts": counts}, f)
  return os.path.join(directory, "data.tfrecord-*")


def skipping_every_record(pattern: str, start_batch: int, files_in_parallel: int
                          ) -> tf.data.Dataset:
  """The same record stream, with the resume point reached by reading every consumed record."""
  share = input_pipeline._Share(input_pipeline.list_files(pattern), files_in_parallel, 10000,
                                SEED, None)
  dataset = tf.data.Dataset.range(0, 2**62).flat_map(share.epoch).skip(start_batch * BATCH_SIZE)
  dataset = dataset.batch(BATCH_SIZE, drop_remainder=True)
  return dataset.map(input_pipeline.example_parser(SPEC)).prefetch(tf.data.AUTOTUNE)


def first_batch(make: Any) -> Dict[str, Any]:
  """Seconds to build the dataset and get its first batch, and the batch."""
  started = time.perf_counter()
  batch = next(iter(make()))
  return dict(seconds=time.perf_counter() - started, input_ids=batch["input_ids"].numpy())


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--shards", type=int, default=64)
  parser.add_argument("--records_per_shard", type=int, default=1500)
  parser.add_argument("--at", default="0.9,5.5", help="resume points, in epochs")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  total = args.shards * args.records_per_shard
  figures = {}
  with tempfile.TemporaryDirectory() as tmp:
    pattern = write_shards(tmp, args.shards, args.records_per_shard)
    for at, parallel in itertools.product(map(float, args.at.split(",")), (16, 1)):
      start_batch = int(at * total) // BATCH_SIZE
      runs = {
          "before": lambda: skipping_every_record(pattern, start_batch, parallel),
          "after": lambda: input_pipeline.training_dataset(
              pattern, input_pipeline.example_parser(SPEC), BATCH_SIZE, seed=SEED,
              start_batch=start_batch, files_in_parallel=parallel)}
      results = {name: [first_batch(make) for _ in range(args.repeats)]
                 for name, make in runs.items()}
      if not np.array_equal(results["before"][0]["input_ids"], results["after"][0]["input_ids"]):
        raise AssertionError("the resumed first batches differ")
      seconds = {name: float(np.median([r["seconds"] for r in runs_]))
                 for name, runs_ in results.items()}
      figures[f"at {at} epochs, files_in_parallel={parallel}"] = dict(
          start_batch=start_batch, before_seconds=round(seconds["before"], 3),
          after_seconds=round(seconds["after"], 3),
          speedup=round(seconds["before"] / seconds["after"], 1))
  entry = dict(what="seconds from start to the first batch of a resumed run, before and after",
               shards=args.shards, records=total, batch_size=BATCH_SIZE, seq_length=SEQ_LENGTH,
               repeats=args.repeats, figures=figures, machine=common.machine_info())
  for name, values in figures.items():
    print(f"{name}: before {values['before_seconds']} s, after {values['after_seconds']} s "
          f"({values['speedup']}x)")
  common.merge_results("resume_position", entry)
  return entry


if __name__ == "__main__":
  main()
