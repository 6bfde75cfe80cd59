"""Deterministic, resumable tf.data pipelines over sharded TFRecord files.

Distributed tf.data iterators cannot be checkpointed, so the data position is kept as the
number of batches already consumed: for a given seed the order of examples is a pure function
of the epoch, and a resumed run rebuilds the pipeline and skips the serialized records it has
already used (whole epochs are skipped by arithmetic when the record count is known). Skipping
happens before parsing, on raw records, so it costs a read and nothing else.
"""

from typing import Callable, Dict, List, Optional

import tensorflow as tf

Parser = Callable[[tf.Tensor], Dict[str, tf.Tensor]]


def int_features(names_and_lengths: Dict[str, int]) -> Dict[str, tf.io.FixedLenFeature]:
  """tf.Example specs for int64 features of fixed length (1 = scalar)."""
  return {name: tf.io.FixedLenFeature([length] if length > 1 else [], tf.int64)
          for name, length in names_and_lengths.items()}


def example_parser(spec: Dict[str, tf.io.FixedLenFeature]) -> Parser:
  """Parses a batch of serialized tf.Examples, casting int64 to int32 (what TPUs want)."""
  def parse(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    parsed = tf.io.parse_example(serialized, spec)
    return {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in parsed.items()}
  return parse


def list_files(file_pattern: str) -> List[str]:
  """Sorted files matching a comma-separated list of globs; an error names a pattern with no match."""
  files = []
  for pattern in file_pattern.split(","):
    matched = tf.io.gfile.glob(pattern.strip())
    if not matched:
      raise FileNotFoundError(f"No file matches {pattern.strip()!r}.")
    files.extend(matched)
  return sorted(set(files))


def _records(files: List[str], input_context: Optional[tf.distribute.InputContext]
             ) -> tf.data.Dataset:
  """All records of this input pipeline's share, in a fixed order."""
  dataset = tf.data.Dataset.from_tensor_slices(files)
  by_file = input_context and len(files) >= input_context.num_input_pipelines
  if by_file:
    dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=4,
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if input_context and not by_file:
    dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  return dataset


def training_dataset(file_pattern: str, parser: Parser, batch_size: int, seed: int = 12345,
                     start_batch: int = 0, shuffle_buffer: int = 10000,
                     records_per_epoch: Optional[int] = None,
                     input_context: Optional[tf.distribute.InputContext] = None
                     ) -> tf.data.Dataset:
  """Endless shuffled batches (drop_remainder: static shapes for TPU/XLA), starting at `start_batch`.

  `batch_size` is the per-pipeline batch. `records_per_epoch` (this pipeline's share) lets a
  resumed run skip whole epochs without reading them.
  """
  files = list_files(file_pattern)
  records = _records(files, input_context)
  start_record = start_batch * batch_size
  first_epoch = 0
  if records_per_epoch:
    first_epoch, start_record = divmod(start_record, records_per_epoch)

  def epoch(index: tf.Tensor) -> tf.data.Dataset:
    return records.shuffle(shuffle_buffer, seed=tf.cast(seed, tf.int64) * 1000003 + index,
                           reshuffle_each_iteration=False)

  dataset = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch)
  dataset = dataset.skip(start_record)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  dataset = dataset.map(parser, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(file_pattern: str, parser: Parser, batch_size: int,
                       drop_remainder: bool = False) -> tf.data.Dataset:
  """Every record once, in file order (callers pad to full batches where shapes must be static).

  Several workers split the batches, not the files: evaluation data is often a single file,
  which TF's default file-based sharding refuses to split.
  """
  dataset = _records(list_files(file_pattern), None)
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  dataset = dataset.map(parser, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def pad_to_full_batches(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
  """Pads a partial last batch with all-zero examples, so every batch has a static shape.

  Callers tell padding apart by a field that is never zero in real data (e.g. unique_ids)
  or by the is_real_example mask added here.
  """
  def pad(features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    count = tf.shape(next(iter(features.values())))[0]
    padded = {}
    for key, value in features.items():
      paddings = [[0, batch_size - count]] + [[0, 0]] * (value.shape.rank - 1)
      value = tf.pad(value, paddings)
      value.set_shape([batch_size] + value.shape.as_list()[1:])
      padded[key] = value
    padded["is_real_example"] = tf.pad(tf.ones([count], tf.int32), [[0, batch_size - count]])
    return padded
  return dataset.map(pad)
