"""The records cache every producer shares (reuse, rebuild on a change, metadata written last) and
the TFRecord writer and reader that need no TensorFlow."""

import json
import random

import pytest
import tensorflow as tf

from bert_tf.data import records


def _build(directory, names, calls):
  """A build that writes `names` in `directory` and records that it ran."""
  def build():
    calls.append(names)
    for name in names:
      (directory / name).write_text(name)
    return {"files": list(names), "num_records": len(names)}
  return build


def test_reuses_a_complete_cache_and_rebuilds_on_any_change(tmp_path):
  metadata, calls = tmp_path / "meta.json", []
  first = records.cached_records(str(metadata), {"seq": 8}, _build(tmp_path, ["a", "b"], calls))
  assert first == {"seq": 8, "files": ["a", "b"], "num_records": 2,
                   "file_sizes": {"a": 1, "b": 1}}  # recorded when written
  assert json.loads(metadata.read_text()) == first
  assert records.cached_records(str(metadata), {"seq": 8},
                                _build(tmp_path, ["a", "b"], calls)) == first
  assert len(calls) == 1  # reused
  (tmp_path / "b").unlink()  # a file lost: rebuilt
  records.cached_records(str(metadata), {"seq": 8}, _build(tmp_path, ["a", "b"], calls))
  assert len(calls) == 2
  # Another key: rebuilt, and the old files the new build does not write are deleted.
  again = records.cached_records(str(metadata), {"seq": 16}, _build(tmp_path, ["c"], calls))
  assert again["files"] == ["c"] and len(calls) == 3
  assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "meta.json"]


def _build_records(directory, counts, calls):
  """A build that writes TFRecord files of `counts` records and publishes their record counts."""
  def build():
    calls.append(counts)
    for name, count in counts.items():
      with records.TFRecordWriter(str(directory / name)) as writer:
        for i in range(count):
          writer.write(b"record %d" % i)
    return {"files": list(counts), "record_counts": dict(counts)}
  return build


@pytest.mark.parametrize("damage", ["truncated", "one record short", "grown"])
def test_a_damaged_cached_file_is_rebuilt_not_reused(tmp_path, damage, caplog):
  """A cached file that no longer has the size (or records) it was written with is rebuilt, with
  a warning naming it; nothing trusts it until training dies on it."""
  metadata, calls = tmp_path / "meta.json", []
  counts = {"train.tf_record": 20, "other.tf_record": 3}
  records.cached_records(str(metadata), {"seq": 8}, _build_records(tmp_path, counts, calls))
  path = tmp_path / "train.tf_record"
  data = path.read_bytes()
  frame = len(records.frame(b"record 0"))
  if damage == "truncated":
    path.write_bytes(data[:-7])
  elif damage == "one record short":  # the size matches a rewritten metadata; the count does not
    path.write_bytes(data[:-frame])
    meta = json.loads(metadata.read_text())
    meta["file_sizes"]["train.tf_record"] = len(data) - frame
    metadata.write_text(json.dumps(meta))
  else:
    path.write_bytes(data + data[:frame])
  records.cached_records(str(metadata), {"seq": 8}, _build_records(tmp_path, counts, calls))
  assert len(calls) == 2  # rebuilt
  assert path.read_bytes() == data
  warning = [r.getMessage() for r in caplog.records if "Rebuilding" in r.getMessage()]
  assert warning and str(path) in warning[0], warning


def test_count_frames_counts_records_and_names_a_truncated_file(tmp_path):
  path = tmp_path / "x.tf_record"
  with tf.io.TFRecordWriter(str(path)) as writer:
    for i in range(7):
      writer.write(b"x" * i)
  assert records.count_frames(str(path)) == 7
  path.write_bytes(path.read_bytes()[:-3])
  with pytest.raises(ValueError, match=rf"{path}: the file ends inside record 6"):
    records.count_frames(str(path))


def test_a_build_that_fails_leaves_no_metadata_claiming_the_old_files(tmp_path):
  metadata = tmp_path / "meta.json"
  records.cached_records(str(metadata), {"seq": 8}, _build(tmp_path, ["a"], []))

  def crash():
    raise KeyboardInterrupt("killed mid-build")

  with pytest.raises(KeyboardInterrupt):
    records.cached_records(str(metadata), {"seq": 16}, crash)
  assert not metadata.exists()


def test_metadata_names_only_files_inside_its_directory(tmp_path):
  metadata = tmp_path / "meta.json"
  metadata.write_text(json.dumps({"seq": 8, "files": ["../outside"]}))
  with pytest.raises(ValueError, match="not a file name inside"):
    records.cached_records(str(metadata), {"seq": 8}, _build(tmp_path, ["a"], []))


def test_shard_names_follow_google_research():
  assert records.shard_names("out/train.tf_record", 1) == ["out/train.tf_record"]
  assert records.shard_names("t", 2) == ["t-00000-of-00002", "t-00001-of-00002"]
  assert records.shard_pattern("t", 2) == "t-*-of-00002"
  assert records.shard_pattern("t", 1) == "t"


def _some_records():
  rng = random.Random(0)
  sizes = [0, 1, 127, 128, 300, 70000, *(rng.randrange(1, 2000) for _ in range(50))]
  return [bytes(rng.getrandbits(8) for _ in range(size)) for size in sizes]


def test_writer_writes_what_tf_record_writer_writes_and_tf_reads_it(tmp_path):
  data = _some_records()
  ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "theirs.tfrecord"
  with records.TFRecordWriter(str(ours)) as writer:
    for record in data:
      writer.write(record)
  with tf.io.TFRecordWriter(str(theirs)) as writer:
    for record in data:
      writer.write(record)
  assert ours.read_bytes() == theirs.read_bytes()
  assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == data
  assert list(records.read_records(str(theirs))) == data
  assert len(ours.read_bytes()) == sum(len(r) + records.FRAME_BYTES for r in data)


def test_writer_and_reader_go_through_tf_gfile_for_urls():
  """ram:// stands in for gs://: TensorFlow's file systems are used for URLs."""
  path = "ram://records_test/data.tfrecord"
  data = _some_records()[:10]
  with records.TFRecordWriter(path) as writer:
    for record in data:
      writer.write(record)
  assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == data
  assert list(records.read_records(path)) == data


@pytest.mark.parametrize("where", [3, 9, 20, -2])  # length, length CRC, data, data CRC
def test_reader_names_a_corrupted_or_truncated_file(tmp_path, where):
  path = tmp_path / "data.tfrecord"
  with records.TFRecordWriter(str(path)) as writer:
    writer.write(b"x" * 40)
  content = bytearray(path.read_bytes())
  content[where] ^= 0xFF
  path.write_bytes(bytes(content))
  with pytest.raises(ValueError, match=f"{path}: corrupted TFRecord"):
    list(records.read_records(str(path)))
  path.write_bytes(bytes(content[:30]))
  with pytest.raises(ValueError, match=f"{path}: corrupted TFRecord"):
    list(records.read_records(str(path)))
