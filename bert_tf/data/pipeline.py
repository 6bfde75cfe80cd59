"""Deterministic, resumable tf.data pipelines over sharded TFRecord files.

Distributed tf.data iterators cannot be checkpointed, so the data position is kept as the
number of batches already consumed, and the order of examples is a pure function of (seed,
epoch): each epoch reads this pipeline's files in its own seeded shuffled order, in blocks of
`files_in_parallel` files whose records are interleaved and then shuffled (the shuffle starts
afresh in each block). A resumed run turns the consumed records into (epoch, block, record in
the block) with the files' record counts (`record_counts`): whole epochs and blocks are skipped
by arithmetic, without opening their files, and only the current block is read up to the
position, on raw records before parsing. A resume therefore reads at most one block,
`files_in_parallel` / (number of files) of an epoch.
"""

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from bert_tf.data import records
from bert_tf.io import files as io_files

Parser = Callable[[tf.Tensor], Dict[str, tf.Tensor]]

COUNTS_CACHE = "record_counts.json"
# Metadata JSONs are small (a record count is ~40 bytes a file); larger JSONs are something else.
_MAX_METADATA_BYTES = 8 << 20


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


list_files = io_files.list_files  # defined in io/files.py, which tools without TensorFlow import


def _published_counts(directory: str) -> Dict[str, int]:
  """Record counts by file name, from the producers' metadata JSONs ("record_counts") there."""
  counts: Dict[str, int] = {}
  for path in tf.io.gfile.glob(os.path.join(directory, "*.json")):
    if tf.io.gfile.stat(path).length > _MAX_METADATA_BYTES:
      continue  # e.g. SQuAD's nbest_predictions.json beside its features
    try:
      published = io_files.read_json(path).get("record_counts")
    except (ValueError, AttributeError):
      continue
    if isinstance(published, dict):
      counts.update(published)
  return counts


def count_records(path: str) -> int:
  """The records of one TFRecord file, by reading it (raw records, nothing parsed)."""
  return int(tf.data.TFRecordDataset(path).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def damaged_file(file_pattern: str) -> Optional[str]:
  """Which file of `file_pattern` is damaged and how (None if none is): after a DataLossError,
  whose message names no file. Frame headers first (a truncated file, cheap), then every
  record's checksum."""
  files = list_files(file_pattern)
  for check in (records.count_frames, lambda path: sum(1 for _ in records.read_records(path))):
    for path in files:
      try:
        check(path)
      except ValueError as e:
        return str(e)
  return None


def record_counts(files: Sequence[str], cache_dir: Optional[str] = None) -> List[int]:
  """The record count of each file: from its producer's metadata, else counted once.

  Files bert_tf did not write have no metadata; they are counted by reading them once, and the
  counts are kept in CACHE_DIR/record_counts.json (keyed by path and size) for later resumes.
  """
  published: Dict[str, Dict[str, int]] = {}
  cache_path = os.path.join(cache_dir, COUNTS_CACHE) if cache_dir else None
  cache = (io_files.read_json(cache_path)
           if cache_path and tf.io.gfile.exists(cache_path) else {})
  counts, counted = [], False
  for path in files:
    directory, name = os.path.split(path)
    if directory not in published:
      published[directory] = _published_counts(directory)
    if name in published[directory]:
      counts.append(int(published[directory][name]))
      continue
    size = tf.io.gfile.stat(path).length
    entry = cache.get(path)
    if not entry or entry["bytes"] != size:
      logging.info("Counting the records of %s once (no metadata lists them).", path)
      entry = cache[path] = {"bytes": size, "records": count_records(path)}
      counted = True
    counts.append(entry["records"])
  if counted and cache_path:
    io_files.write_json_atomic(cache_path, cache)
  return counts


def _file_order(num_files: int, seed: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
  """A permutation of range(num_files), a pure function of (seed, epoch)."""
  keys = tf.random.stateless_uniform(
      [num_files], seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)]))
  return tf.argsort(keys, stable=True)


def _shard_size(count: int, num_shards: int, index: int) -> int:
  """How many of `count` records `dataset.shard(num_shards, index)` keeps."""
  return max(0, (count - index + num_shards - 1) // num_shards)


class _Share:
  """This input pipeline's files and how its epochs read them (by-file or by-record shards)."""

  def __init__(self, files: List[str], files_in_parallel: int, shuffle_buffer: int, seed: int,
               input_context: Optional[tf.distribute.InputContext]):
    self.num_shards = input_context.num_input_pipelines if input_context else 1
    self.shard_index = input_context.input_pipeline_id if input_context else 0
    self.by_record = self.num_shards > 1 and len(files) < self.num_shards
    self.files = files if self.by_record or self.num_shards == 1 else files[
        self.shard_index::self.num_shards]
    self.files_in_parallel = files_in_parallel
    self.shuffle_buffer = shuffle_buffer
    self.seed = seed

  def block(self, block_files: tf.Tensor, epoch: tf.Tensor, block: tf.Tensor) -> tf.data.Dataset:
    """The records of one block of files, interleaved, then shuffled by a seed of its own."""
    dataset = tf.data.Dataset.from_tensor_slices(block_files).interleave(
        tf.data.TFRecordDataset, cycle_length=self.files_in_parallel, block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    seed = tf.cast(self.seed, tf.int64) * 1000003 + tf.cast(epoch, tf.int64)
    seed = seed * 1000003 + tf.cast(block, tf.int64)
    return dataset.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)

  def ordered_files(self, epoch: tf.Tensor) -> tf.Tensor:
    """This pipeline's files in the order epoch `epoch` reads them."""
    return tf.gather(tf.constant(self.files), _file_order(len(self.files), self.seed, epoch))

  def epoch(self, epoch: tf.Tensor, first_block: int = 0, first_record: int = 0,
            phase: Optional[int] = None) -> tf.data.Dataset:
    """This pipeline's records of epoch `epoch`, from record `first_record` of block `first_block`.

    With by-record sharding the pipeline keeps every num_shards-th record of the epoch, from the
    `phase`-th (its own index, or 0 when `first_record` is already one of its records).
    """
    ordered = self.ordered_files(epoch)[first_block * self.files_in_parallel:]
    blocks = tf.data.Dataset.from_tensor_slices(ordered).batch(self.files_in_parallel)
    dataset = blocks.enumerate(first_block).flat_map(
        lambda index, block_files: self.block(block_files, epoch, index)).skip(first_record)
    if self.by_record:
      dataset = dataset.shard(self.num_shards, self.shard_index if phase is None else phase)
    return dataset

  def position(self, start_record: int, cache_dir: Optional[str]) -> Tuple[int, int, int]:
    """(epoch, block, record in the block's stream) of this pipeline's `start_record`-th record."""
    counts = dict(zip(self.files, record_counts(self.files, cache_dir)))
    per_epoch = sum(counts.values())
    if self.by_record:
      per_epoch = _shard_size(per_epoch, self.num_shards, self.shard_index)
    if per_epoch == 0:
      raise ValueError(f"The training files ({self.files[0]}, ...) hold no records.")
    epoch, rest = divmod(start_record, per_epoch)
    if self.by_record:
      rest = self.shard_index + rest * self.num_shards
    for block, count in enumerate(self._block_counts(counts, epoch)):
      if rest < count:
        return epoch, block, rest
      rest -= count
    raise AssertionError("unreachable: the position lies within the epoch")

  def _block_counts(self, counts: Dict[str, int], epoch: int) -> List[int]:
    """The records of each block of epoch `epoch`, in order."""
    ordered = [name.decode() for name in self.ordered_files(epoch).numpy()]
    size = self.files_in_parallel
    return [sum(counts[name] for name in ordered[i:i + size]) for i in range(0, len(ordered), size)]


def training_dataset(file_pattern: str, parser: Parser, batch_size: int, seed: int = 12345,
                     start_batch: int = 0, shuffle_buffer: int = 10000,
                     files_in_parallel: int = 16,
                     input_context: Optional[tf.distribute.InputContext] = None,
                     counts_cache_dir: Optional[str] = None) -> tf.data.Dataset:
  """Endless shuffled batches (drop_remainder: static shapes for TPU/XLA), starting at `start_batch`.

  `batch_size` is the per-pipeline batch. `files_in_parallel` files are interleaved at once: more
  mixes shards better, fewer makes a resume read less (at most one block of that many files).
  `counts_cache_dir` keeps the record counts of files no metadata describes (e.g. output_dir).
  """
  if files_in_parallel < 1:
    raise ValueError(f"files_in_parallel={files_in_parallel} must be at least 1.")
  share = _Share(list_files(file_pattern), files_in_parallel, shuffle_buffer, seed, input_context)
  first_epoch = 0
  dataset = None
  if start_batch:
    first_epoch, block, record = share.position(start_batch * batch_size, counts_cache_dir)
    dataset = share.epoch(first_epoch, block, record, phase=0)
    first_epoch += 1
  epochs = tf.data.Dataset.range(first_epoch, 2**62).flat_map(share.epoch)
  dataset = epochs if dataset is None else dataset.concatenate(epochs)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  dataset = dataset.map(parser, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


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
