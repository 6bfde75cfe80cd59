"""Tests for bert_tf.data.squad_records: SQuAD features as TFRecords, datasets and the cache.

Records keep google-research's feature names; the cache (prepare_features) is reused when nothing
changed, rebuilt when anything did, and read back (load_eval_data) for post-processing.
"""

import json
import logging
import os
import pathlib
import re
import shutil
from typing import Any, Dict, Sequence

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.data import pipeline as input_pipeline
from bert_tf.data import squad_features, squad_predictions, squad_records

from tests.squad_data import files, fixture_features, output_paths, random_results, tokenizer


def test_feature_writer_uses_google_names(tmp_path: pathlib.Path, files: Dict[str, str],
                                          tokenizer: Any) -> None:
  _, features = fixture_features(files, tokenizer, is_training=True)
  with squad_records.FeatureWriter(str(tmp_path / "train.tf_record"), True,
                                   num_shards=3) as writer:
    for feature in features:
      writer.process_feature(feature)
  assert sorted(os.listdir(tmp_path)) == [f"train.tf_record-0000{i}-of-00003" for i in range(3)]
  assert writer.num_features == len(features)
  records = [tf.train.Example.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(writer.filenames[0])]
  assert len(records) == len(features[::3])
  for record, feature in zip(records, features[::3]):
    values = {k: list(v.int64_list.value) for k, v in record.features.feature.items()}
    assert values == {"unique_ids": [feature.unique_id], "input_ids": feature.input_ids,
                      "input_mask": feature.input_mask, "segment_ids": feature.segment_ids,
                      "start_positions": [feature.start_position],
                      "end_positions": [feature.end_position],
                      "is_impossible": [int(feature.is_impossible)]}


def test_feature_writer_leaves_nothing_on_error(tmp_path: pathlib.Path) -> None:
  with pytest.raises(ZeroDivisionError):
    with squad_records.FeatureWriter(str(tmp_path / "eval.tf_record"), False, num_shards=2):
      raise ZeroDivisionError
  assert os.listdir(tmp_path) == []


def write_records(path: pathlib.Path, features: Sequence[squad_features.InputFeatures],
                  is_training: bool, num_shards: int) -> str:
  with squad_records.FeatureWriter(str(path), is_training, num_shards) as writer:
    for feature in features:
      writer.process_feature(feature)
  return str(path) + ("-*" if num_shards > 1 else "")


def test_eval_dataset_round_trip(tmp_path: pathlib.Path, files: Dict[str, str],
                                 tokenizer: Any) -> None:
  _, features = fixture_features(files, tokenizer, is_training=False)
  pattern = write_records(tmp_path / "eval.tf_record", features, False, num_shards=2)
  dataset = squad_records.make_dataset(pattern, 40, is_training=False, batch_size=8,
                                       drop_remainder=False)
  batches = list(dataset.as_numpy_iterator())
  assert set(batches[0]) == {"unique_ids", "input_ids", "input_mask", "segment_ids"}
  assert all(v.dtype == np.int32 for v in batches[0].values())
  rows = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
  assert rows["unique_ids"].tolist() == [f.unique_id for f in features]  # Order restored.
  assert rows["input_ids"].tolist() == [f.input_ids for f in features]
  assert rows["segment_ids"].tolist() == [f.segment_ids for f in features]
  with pytest.raises(ValueError, match="shards training data only"):
    squad_records.make_dataset(pattern, 40, False, 8, False, tf.distribute.InputContext(2, 0, 2))


def test_training_dataset_round_trip_and_sharding(tmp_path: pathlib.Path, files: Dict[str, str],
                                                  tokenizer: Any) -> None:
  _, features = fixture_features(files, tokenizer, is_training=True)
  by_id = {f.unique_id: f for f in features}
  pattern = write_records(tmp_path / "train.tf_record", features, True, num_shards=2)
  dataset = squad_records.make_dataset(pattern, 40, is_training=True, batch_size=8,
                                       drop_remainder=True)
  assert dataset.element_spec["input_ids"].shape == (8, 40)
  assert dataset.element_spec["start_positions"].shape == (8,)
  seen = set()
  for batch in dataset.take(2 * len(features) // 8 + 1).as_numpy_iterator():
    for row in range(8):
      feature = by_id[int(batch["unique_ids"][row])]
      seen.add(feature.unique_id)
      assert batch["input_ids"][row].tolist() == feature.input_ids
      assert batch["start_positions"][row] == feature.start_position
      assert batch["end_positions"][row] == feature.end_position
      assert batch["is_impossible"][row] == int(feature.is_impossible)
  assert seen == set(by_id)  # Repeats, and covers everything.

  shares = []
  for pipeline in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                         num_replicas_in_sync=2)
    shard = squad_records.make_dataset(pattern, 40, True, batch_size=8, drop_remainder=True,
                                       input_context=context)
    assert shard.element_spec["input_ids"].shape == (4, 40)  # Per-replica batch.
    shares.append({int(u) for b in shard.take(len(features)).as_numpy_iterator()
                   for u in b["unique_ids"]})
  assert not shares[0] & shares[1] and shares[0] | shares[1] == set(by_id)


def prepare(files: Dict[str, str], tokenizer: Any, output_dir: pathlib.Path, is_training: bool,
            **overrides: Any) -> Dict[str, Any]:
  args = dict(input_file=files["data"], tokenizer=tokenizer, vocab_file=files["vocab"],
              max_seq_length=40, doc_stride=13, max_query_length=12, is_training=is_training,
              version_2_with_negative=True, output_dir=str(output_dir), num_shards=2,
              num_workers=0)
  args.update(overrides)
  return squad_records.prepare_features(**args)


def test_prepare_features_reuses_and_rebuilds(tmp_path: pathlib.Path, files: Dict[str, str],
                                              tokenizer: Any, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
  caplog.set_level(logging.INFO)
  out = tmp_path / "features"
  first = prepare(files, tokenizer, out, is_training=True)
  examples, features = fixture_features(files, tokenizer, is_training=True)
  assert (first["num_examples"], first["num_features"]) == (len(examples), len(features))
  assert len(tf.io.gfile.glob(first["file_pattern"])) == 2
  assert first["record_counts"] == {  # what lets a resume skip whole files unread
      os.path.basename(path): input_pipeline.count_records(path)
      for path in tf.io.gfile.glob(first["file_pattern"])}

  convert = squad_features.convert_examples_to_features
  monkeypatch.setattr(squad_features, "convert_examples_to_features",
                      lambda *a, **k: pytest.fail("the cache was not reused"))
  assert prepare(files, tokenizer, out, is_training=True) == first
  assert any(re.search("Reusing the cached records of .*train_meta.json", r.getMessage())
             for r in caplog.records)
  monkeypatch.setattr(squad_features, "convert_examples_to_features", convert)

  changed_flag = prepare(files, tokenizer, out, is_training=True, doc_stride=7)
  assert changed_flag["doc_stride"] == 7 and changed_flag["num_features"] > first["num_features"]
  assert any("doc_stride changed" in r.getMessage() for r in caplog.records)

  vocab = tmp_path / "vocab.txt"
  shutil.copy(files["vocab"], vocab)
  with open(vocab, "a", encoding="utf-8") as f:
    f.write("extra\n")
  changed_vocab = prepare(files, tokenizer, out, is_training=True, doc_stride=7,
                          vocab_file=str(vocab))
  assert changed_vocab["vocab_sha256"] != first["vocab_sha256"]
  assert any("vocab_sha256 changed" in r.getMessage() for r in caplog.records)

  fewer_shards = prepare(files, tokenizer, out, is_training=True, doc_stride=7,
                         vocab_file=str(vocab), num_shards=1)
  assert tf.io.gfile.glob(fewer_shards["file_pattern"]) == [str(out / "train.tf_record")]
  # The old shards are gone and no temporary file is left behind.
  assert sorted(os.listdir(out)) == ["train.tf_record", "train_meta.json"]


def test_a_copied_feature_cache_reads_its_own_files(tmp_path: pathlib.Path,
                                                    files: Dict[str, str], tokenizer: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
  """The metadata names the records relative to its directory and the input by the path given
  now: a copied or synced run directory reuses its own cache, with the original gone."""
  data = tmp_path / "data.json"
  shutil.copy(files["data"], data)
  prepare(dict(files, data=str(data)), tokenizer, tmp_path / "out", is_training=False)
  recorded = json.loads((tmp_path / "out" / "eval_meta.json").read_text())
  assert recorded["file_pattern"] == "eval.tf_record-*-of-00002"
  shutil.copytree(tmp_path / "out", tmp_path / "copy")
  shutil.rmtree(tmp_path / "out")
  data.rename(tmp_path / "moved.json")  # the input moved too (another machine)
  moved = dict(files, data=str(tmp_path / "moved.json"))
  monkeypatch.setattr(squad_features, "convert_examples_to_features",
                      lambda *a, **k: pytest.fail("the cache was not reused"))
  again = prepare(moved, tokenizer, tmp_path / "copy", is_training=False)
  assert again["file_pattern"] == str(tmp_path / "copy" / "eval.tf_record-*-of-00002")
  assert len(tf.io.gfile.glob(again["file_pattern"])) == 2
  examples, features = squad_records.load_eval_data(str(tmp_path / "copy"), moved["data"])
  assert len(features) == recorded["num_features"] and examples


def test_prepare_eval_features_and_load_them_back(tmp_path: pathlib.Path, files: Dict[str, str],
                                                  tokenizer: Any) -> None:
  data = tmp_path / "data.json"
  shutil.copy(files["data"], data)
  metadata = prepare(dict(files, data=str(data)), tokenizer, tmp_path, is_training=False)
  assert sorted(os.listdir(tmp_path)) == [
      "data.json", "eval.tf_record-00000-of-00002", "eval.tf_record-00001-of-00002",
      "eval_features.jsonl", "eval_meta.json"]
  examples, features = fixture_features(files, tokenizer, is_training=False)
  loaded_examples, loaded_features = squad_records.load_eval_data(str(tmp_path))
  assert loaded_examples == examples
  assert metadata["num_features"] == len(loaded_features) == len(features)
  for loaded, feature in zip(loaded_features, features):
    for field in ("unique_id", "example_index", "doc_span_index", "tokens", "token_to_orig_map",
                  "token_is_max_context"):
      assert getattr(loaded, field) == getattr(feature, field)
  # The same predictions from the in-memory and the reloaded features.
  results = random_results(features, seed=3)
  paths = [output_paths(tmp_path / name) for name in ("a", "b")]
  assert (squad_predictions.write_predictions(examples, features, results, 5, 10, True, *paths[0],
                                              True) ==
          squad_predictions.write_predictions(loaded_examples, loaded_features, results, 5, 10,
                                              True, *paths[1], True))

  data.touch()  # Same content: still valid.
  squad_records.load_eval_data(str(tmp_path))
  with open(data, "a", encoding="utf-8") as f:
    f.write(" ")
  with pytest.raises(ValueError, match="changed after its features were written"):
    squad_records.load_eval_data(str(tmp_path))
