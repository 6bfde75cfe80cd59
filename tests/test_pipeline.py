"""The training pipeline: per-epoch shuffled file order, mixed shards, exact O(1) resume."""

import json
import math
import pathlib
from typing import List, Optional, Sequence

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.data import pipeline, records

SPEC = pipeline.int_features({"index": 1})


def _write(path: pathlib.Path, indices: Sequence[int]) -> None:
  """A TFRecord file of tf.Examples numbered `indices`."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for index in indices:
      example = tf.train.Example(features=tf.train.Features(
          feature={"index": records.int64_feature([index])}))
      writer.write(example.SerializeToString())


def _corpus(directory: pathlib.Path, sizes: Sequence[int], metadata: bool = True) -> str:
  """Files numbered in order (file i holds the next sizes[i] numbers); returns their glob."""
  start, counts = 0, {}
  for i, size in enumerate(sizes):
    name = records.shard_name("data.tfrecord", i, len(sizes))
    _write(directory / name, range(start, start + size))
    counts[name] = size
    start += size
  if metadata:
    (directory / "data.tfrecord.metadata.json").write_text(json.dumps({"record_counts": counts}))
  return str(directory / "data.tfrecord-*")


def _batches(pattern: str, count: int, batch_size: int = 4, start_batch: int = 0,
             context: Optional[tf.distribute.InputContext] = None, **kwargs) -> List[List[int]]:
  dataset = pipeline.training_dataset(pattern, pipeline.example_parser(SPEC), batch_size,
                                      seed=7, start_batch=start_batch, input_context=context,
                                      **kwargs)
  return [batch["index"].tolist() for batch in dataset.take(count).as_numpy_iterator()]


SIZES = [5, 9, 3, 7, 6, 11, 4, 8]  # 53 records: batches straddle files, blocks and epochs.


def test_each_epoch_reads_every_record_once_in_its_own_order(tmp_path):
  pattern = _corpus(tmp_path, SIZES)
  flat = sum(_batches(pattern, 53, batch_size=2, files_in_parallel=3, shuffle_buffer=4), [])
  epochs = [flat[i * 53:(i + 1) * 53] for i in range(2)]
  assert all(sorted(epoch) == list(range(53)) for epoch in epochs)
  assert epochs[0] != epochs[1]
  assert flat == sum(_batches(pattern, 53, batch_size=2, files_in_parallel=3,
                              shuffle_buffer=4), [])  # A pure function of the seed.


@pytest.mark.parametrize("files_in_parallel", [1, 3, 16])
def test_a_resume_gives_the_batches_of_an_uninterrupted_run(tmp_path, files_in_parallel):
  pattern = _corpus(tmp_path, SIZES)
  whole = _batches(pattern, 60, files_in_parallel=files_in_parallel, shuffle_buffer=5)
  for start in [1, 3, 7, 13, 14, 29, 40]:  # within blocks, at epoch ends, epochs later
    assert _batches(pattern, 8, start_batch=start, files_in_parallel=files_in_parallel,
                    shuffle_buffer=5) == whole[start:start + 8], start


@pytest.mark.parametrize("sizes", [SIZES, [23, 30]])  # by file, by record (2 files, 3 pipelines)
def test_a_resume_is_exact_for_every_input_pipeline(tmp_path, sizes):
  pattern = _corpus(tmp_path, sizes)
  for index in range(3):
    context = tf.distribute.InputContext(3, index, 3)
    whole = _batches(pattern, 30, 2, context=context, files_in_parallel=2, shuffle_buffer=3)
    for start in [1, 5, 9, 17]:
      assert _batches(pattern, 6, 2, start, context, files_in_parallel=2,
                      shuffle_buffer=3) == whole[start:start + 6], (index, start)
  shares = [set(sum(_batches(pattern, sum(sizes) // 6, 1, context=tf.distribute.InputContext(
      3, index, 3), files_in_parallel=2), [])) for index in range(3)]
  assert not (shares[0] & shares[1]) and not (shares[1] & shares[2])


def test_a_resume_skips_whole_files_without_opening_them(tmp_path):
  """Files before the resume point are overwritten with garbage: reading one would fail."""
  pattern = _corpus(tmp_path, SIZES)
  whole = _batches(pattern, 20, files_in_parallel=2, shuffle_buffer=3)
  order = pipeline._file_order(len(SIZES), 7, 0).numpy().tolist()
  files = pipeline.list_files(pattern)
  done = sum(SIZES[i] for i in order[:4]) // 4 + 1  # a batch inside the third block
  for i in order[:4]:  # the first two blocks of epoch 0
    pathlib.Path(files[i]).write_bytes(b"not a record" * 10)
  assert _batches(pattern, 3, start_batch=done, files_in_parallel=2,
                  shuffle_buffer=3) == whole[done:done + 3]
  with pytest.raises(tf.errors.DataLossError):
    _batches(pattern, 20, files_in_parallel=2, shuffle_buffer=3)


def test_files_without_metadata_are_counted_once_and_cached(tmp_path, monkeypatch):
  data, cache = tmp_path / "data", tmp_path / "out"
  data.mkdir()
  cache.mkdir()
  pattern = _corpus(data, SIZES, metadata=False)
  whole = _batches(pattern, 30, files_in_parallel=3, shuffle_buffer=4)
  counted = []
  real = pipeline.count_records
  monkeypatch.setattr(pipeline, "count_records", lambda path: counted.append(path) or real(path))
  for _ in range(2):
    assert _batches(pattern, 5, start_batch=20, files_in_parallel=3, shuffle_buffer=4,
                    counts_cache_dir=str(cache)) == whole[20:25]
  assert len(counted) == len(SIZES)  # the second resume used CACHE/record_counts.json
  assert pipeline.record_counts(pipeline.list_files(pattern), str(cache)) == SIZES


def spread(batches: List[List[int]], corpus_size: int) -> float:
  """Mean over batches of the standard deviation of the batch's positions in the corpus (0..1)."""
  return float(np.mean([np.std(np.asarray(batch) / corpus_size) for batch in batches]))


UNIFORM_SPREAD = 1 / math.sqrt(12)  # the standard deviation of a uniform draw on [0, 1)


def test_batches_mix_a_corpus_sharded_in_order(tmp_path):
  """32 shards of 125 consecutive records (a corpus sorted by date, cut into windows), read with a
  shuffle buffer of 100 records, 2.5% of the data (like 10,000 of corpus-scale millions).

  Statistic: the mean over 60 batches of 32 of the standard deviation of the batch's positions
  (record number / 4000). A uniform random draw gives 1/sqrt(12) = 0.289, with a standard error of
  the per-batch value of about 0.024 for 32 draws, so about 0.003 for the mean of 60; 0.03 leaves
  room for the finite number of files (32 in a block gives 0.288). The old order (sorted files,
  4 at a time) gives 0.044: every batch comes from 4 neighbouring shards.
  """
  pattern = _corpus(tmp_path, [125] * 32)
  batches = _batches(pattern, 60, batch_size=32, files_in_parallel=32, shuffle_buffer=100)
  assert abs(spread(batches, 4000) - UNIFORM_SPREAD) < 0.03
