"""The records cache every producer shares: reuse, rebuild on a change, metadata written last."""

import json

import pytest

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
  assert first == {"seq": 8, "files": ["a", "b"], "num_records": 2}
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
