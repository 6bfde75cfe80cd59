"""create_pretraining_data: google-research's semantics, Korean statistics, format, resume."""

import builtins
import collections
import dataclasses
import hashlib
import logging
import os
import pathlib
import random
import subprocess
import sys
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st
import numpy as np
import pytest
import tensorflow as tf
from official.nlp.data import pretrain_dataloader

from benchmarks import pretraining_data
from benchmarks.pretraining_data import write_korean_corpus
from bert_tf import tokenization
from bert_tf.corpus import instances, reading, shards
from bert_tf.corpus import create_pretraining_data as cpd
from bert_tf.data import pipeline, records
from bert_tf.io import files as io_files
from bert_tf.tasks import pretraining as pretraining_task
from tests import processes
from tests.conftest import shared_path

SEQ, PREDICTIONS = 64, 10
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog",
          "ran", "far", "away", "play", "##ing", "##ed", "a", "big", "red", "ball", "."]


def shard_files(metadata):
  """The shards' paths (the metadata names them relative to its directory)."""
  directory = os.path.dirname(metadata["file_pattern"])
  return [os.path.join(directory, name) for name in metadata["files"]]


@pytest.fixture
def english(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(t + "\n" for t in TOKENS))
  text = tmp_path / "text.txt"
  sentences = ["the cat sat on the mat .", "the dog ran far away .", "a big red ball .",
               "the cat played with a ball .", "the dog sat on a big mat ."]
  docs = ["\n".join(random.Random(d).sample(sentences * 3, 8)) for d in range(12)]
  text.write_text("\n\n".join(docs) + "\n")
  return instances.DataConfig(input_file=str(text),
                              output_file=str(tmp_path / "out" / "data.tfrecord"),
                              vocab_file=str(vocab), do_lower_case=True, max_seq_length=SEQ,
                              max_predictions_per_seq=PREDICTIONS, dupe_factor=3,
                              documents_per_shard=4)


@pytest.fixture(scope="module")
def korean(tmp_path_factory):
  corpus = shared_path("corpus_ko")
  vocab = shared_path("vocabs", "kcbert-base-vocab.txt")
  tmp = tmp_path_factory.mktemp("ko")
  write_korean_corpus(str(tmp / "ko.txt"), max_lines=6000, corpus=corpus)
  config = instances.DataConfig(input_file=str(tmp / "ko.txt"), output_file=str(tmp / "out" / "ko"),
                                vocab_file=str(vocab), do_lower_case=False, dupe_factor=2,
                                documents_per_shard=200)
  return config, cpd.create_pretraining_data(config)


def read(pattern: str, seq: int, predictions: int):
  """All records, parsed with google-research's feature spec (masked_lm_weights float)."""
  spec = {"input_ids": tf.io.FixedLenFeature([seq], tf.int64),
          "input_mask": tf.io.FixedLenFeature([seq], tf.int64),
          "segment_ids": tf.io.FixedLenFeature([seq], tf.int64),
          "masked_lm_positions": tf.io.FixedLenFeature([predictions], tf.int64),
          "masked_lm_ids": tf.io.FixedLenFeature([predictions], tf.int64),
          "masked_lm_weights": tf.io.FixedLenFeature([predictions], tf.float32),
          "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64)}
  dataset = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)))
  batches = list(dataset.batch(100000).map(lambda s: tf.io.parse_example(s, spec)))
  return {k: np.concatenate([b[k].numpy() for b in batches]) for k in spec}


def test_instances_follow_google_layout(english):
  metadata = cpd.create_pretraining_data(english)
  data = read(metadata["file_pattern"], SEQ, PREDICTIONS)
  vocab = tokenization.load_vocab(english.vocab_file)
  assert len(data["input_ids"]) == metadata["counts"]["instances"] > 0
  for i in range(len(data["input_ids"])):
    ids, mask, segments = data["input_ids"][i], data["input_mask"][i], data["segment_ids"][i]
    length = int(mask.sum())
    assert mask[:length].all() and not mask[length:].any() and not ids[length:].any()
    num_a = int((segments[:length] == 0).sum())
    assert (segments[:num_a] == 0).all() and (segments[num_a:length] == 1).all()
    assert ids[0] == vocab["[CLS]"] and ids[num_a - 1] == ids[length - 1] == vocab["[SEP]"]
    weights = data["masked_lm_weights"][i]
    count = int(weights.sum())
    assert count == min(PREDICTIONS, max(1, round(length * 0.15)))
    positions = data["masked_lm_positions"][i][:count]
    assert list(positions) == sorted(set(positions))
    assert not set(positions) & {0, num_a - 1, length - 1}  # never [CLS] or [SEP]
    assert not data["masked_lm_positions"][i][count:].any()


def test_statistics_on_real_korean_text(korean):
  config, metadata = korean
  counts = metadata["counts"]
  data = read(metadata["file_pattern"], 128, 20)
  masked = data["masked_lm_weights"].sum()
  assert masked == counts["masked"]
  # round(0.15 * len) per instance, capped at 20: close to 15% of the real tokens.
  assert 0.13 < masked / data["input_mask"].sum() < 0.16
  weights = data["masked_lm_weights"] > 0
  at_positions = np.take_along_axis(data["input_ids"], data["masked_lm_positions"], 1)[weights]
  originals = data["masked_lm_ids"][weights]
  mask_id = tokenization.load_vocab(config.vocab_file)["[MASK]"]
  as_mask = np.mean(at_positions == mask_id)
  kept = np.mean(at_positions == originals)
  assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.02
  assert abs((1 - as_mask - kept) - 0.1) < 0.02
  # Random next: 50% of multi-segment chunks plus every single-segment chunk (as in google's).
  assert 0.48 < data["next_sentence_labels"].mean() < 0.62
  assert counts["random_next"] == data["next_sentence_labels"].sum()


def test_tf_models_reader_reads_our_records(korean):
  _, metadata = korean
  loader = pretrain_dataloader.BertPretrainDataLoader(pretrain_dataloader.BertPretrainDataConfig(
      input_path=shard_files(metadata)[0], seq_length=128, max_predictions_per_seq=20,
      global_batch_size=4, is_training=False, use_next_sentence_label=True))
  batch = next(iter(loader.load()))
  ours = read(shard_files(metadata)[0], 128, 20)
  np.testing.assert_array_equal(batch["input_word_ids"].numpy(), ours["input_ids"][:4])
  np.testing.assert_array_equal(batch["masked_lm_ids"].numpy(), ours["masked_lm_ids"][:4])
  np.testing.assert_array_equal(batch["masked_lm_weights"].numpy(), ours["masked_lm_weights"][:4])
  np.testing.assert_array_equal(batch["next_sentence_labels"].numpy().ravel(),
                                ours["next_sentence_labels"][:4].ravel())


def _shard_bytes(metadata):
  return [open(path, "rb").read() for path in shard_files(metadata)]


def test_deterministic_across_worker_counts_and_seeded(english, tmp_path):
  one = cpd.create_pretraining_data(english, num_workers=1)
  two_config = dataclasses.replace(english, output_file=str(tmp_path / "two" / "data.tfrecord"))
  two = cpd.create_pretraining_data(two_config, num_workers=2)
  assert len(one["files"]) == 3 and _shard_bytes(one) == _shard_bytes(two)
  other = dataclasses.replace(english, output_file=str(tmp_path / "seed" / "data.tfrecord"),
                              random_seed=1)
  assert _shard_bytes(cpd.create_pretraining_data(other)) != _shard_bytes(one)


def test_resume_redoes_only_unfinished_shards(english):
  metadata = cpd.create_pretraining_data(english)
  before = _shard_bytes(metadata)
  first, last = shard_files(metadata)[0], shard_files(metadata)[-1]
  os.remove(last)  # as if the run died while writing the last shard
  os.remove(os.path.join(english.output_file + ".progress", "shard-00002.json"))
  os.utime(first, (1, 1))
  again = cpd.create_pretraining_data(english)
  assert _shard_bytes(again) == before and again["counts"] == metadata["counts"]
  assert os.path.getmtime(first) == 1  # finished shards are not redone
  with pytest.raises(ValueError, match="other settings.*dupe_factor"):
    cpd.create_pretraining_data(dataclasses.replace(english, dupe_factor=2))


def test_a_damaged_shard_is_made_again_and_named_to_training(english):
  """A shard cut short after it was written: a rerun makes it again (the cache no longer trusts
  it), and until then training's check names it and the fix."""
  metadata = cpd.create_pretraining_data(english)
  before = _shard_bytes(metadata)
  damaged = shard_files(metadata)[1]
  with open(damaged, "r+b") as f:
    f.truncate(len(before[1]) - 10)
  with pytest.raises(ValueError, match=rf"{damaged} is .* bytes, .* when it was written .*"
                                       "rerun create_pretraining_data with the same flags"):
    shards.check_shards(shard_files(metadata))
  again = cpd.create_pretraining_data(english)
  assert _shard_bytes(again) == before
  shards.check_shards(shard_files(again))


def test_bad_flags_fail_early(english):
  with pytest.raises(ValueError, match="is a list"):
    dataclasses.replace(english, output_file="a,b").check()
  with pytest.raises(FileNotFoundError, match="nothing"):
    cpd.create_pretraining_data(dataclasses.replace(english, input_file="/nothing*"))


@pytest.mark.parametrize("text", ["", "\n\n", " \t\n  \n"])
def test_empty_input_text_is_an_error_naming_it(english, tmp_path, text):
  path = tmp_path / "empty.txt"
  path.write_text(text)
  with pytest.raises(ValueError, match=rf"No text in {path}"):
    cpd.create_pretraining_data(dataclasses.replace(english, input_file=str(path)))
  assert not os.path.exists(os.path.dirname(english.output_file))


def test_text_without_tokens_is_an_error_and_gets_no_metadata(english, tmp_path):
  path = tmp_path / "controls.txt"
  path.write_text("\x00\u200b\n\x07\n\n\ufeff\n")
  config = dataclasses.replace(english, input_file=str(path))
  with pytest.raises(ValueError, match=rf"No training instance from {path}"):
    cpd.create_pretraining_data(config)
  assert not os.path.exists(english.output_file + ".metadata.json")


def test_input_text_that_is_not_utf8_names_the_line(english, tmp_path):
  path = tmp_path / "cp949.txt"
  path.write_bytes("the cat sat .\n\n".encode() + "고양이\n".encode("cp949"))
  with pytest.raises(ValueError, match=rf"{path}, line 3: not valid UTF-8"):
    cpd.create_pretraining_data(dataclasses.replace(english, input_file=str(path)))


def test_vocab_without_mask_is_an_error(english, tmp_path):
  vocab = tmp_path / "no_mask.txt"
  vocab.write_text("".join(t + "\n" for t in TOKENS if t != "[MASK]"))
  with pytest.raises(ValueError, match=rf"{vocab} lacks \[MASK\]"):
    cpd.create_pretraining_data(dataclasses.replace(english, vocab_file=str(vocab)))


WORD = st.sampled_from(["the", "cat", "sat", ".", "", "\r", "\t", "가", "\x00", "\u2028", "\x85",
                        "\ufeff", "ß"]) | st.text(st.characters(codec="utf-8"), max_size=3)
RAW_TEXT = st.binary(max_size=120) | st.lists(st.lists(WORD, max_size=6).map(" ".join),
                                              max_size=8).map(
    lambda lines: "\n".join(lines).encode("utf-8"))


# `english` is shared by the examples on purpose: each one rewrites the text and has its own output.
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=RAW_TEXT)
def test_fuzz_raw_text_makes_data_or_names_the_file(english, content):
  """Whatever the text file holds: records, or a ValueError naming the file; nothing else."""
  path = pathlib.Path(english.input_file)
  path.write_bytes(content)
  output = path.parent / f"out-{hashlib.sha256(content).hexdigest()[:16]}" / "data"
  try:
    metadata = cpd.create_pretraining_data(dataclasses.replace(english, output_file=str(output)))
  except ValueError as e:
    assert str(path) in str(e)
    return
  assert metadata["counts"]["instances"] >= 1


def test_data_made_with_another_vocab_is_named(english, tmp_path):
  metadata = cpd.create_pretraining_data(english)
  shards.check_data_vocab(shard_files(metadata)[0], english.vocab_file)
  other = tmp_path / "other_vocab.txt"
  other.write_text("".join(t + "\n" for t in TOKENS + ["extra"]))
  with pytest.raises(ValueError, match=rf"{metadata['files'][0]} was made with the vocab "
                                       rf"{english.vocab_file} .*--vocab_file={other}"):
    shards.check_data_vocab(shard_files(metadata)[0], str(other))
  shards.check_data_vocab(str(tmp_path / "records-without-metadata"), str(other))


def test_command_line_error_is_one_line_and_writes_nothing(tmp_path):
  """The tool prints a bad flag as one `error:` line, not a traceback, before writing anything."""
  text = tmp_path / "text.txt"
  text.write_text("한국어 문장입니다.\n\n또 다른 문서입니다.\n", encoding="utf-8")
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Seoul", "서울"]) + "\n",
                   encoding="utf-8")
  result = subprocess.run(
      [sys.executable, "-m", "bert_tf.corpus.create_pretraining_data", f"--input_file={text}",
       f"--output_file={tmp_path / 'out' / 'data.tfrecord'}", f"--vocab_file={vocab}",
       "--do_lower_case=True"], cwd=pathlib.Path(__file__).resolve().parent.parent,
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert "error: --do_lower_case=True does not match the vocab" in result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout, shards, expected", [
    ("no blank lines", 8, "only 1 document(s) for --num_output_shards=8"),
    ("documents of many sentences", 4, "--num_output_shards=4 made 3 shards"),
    ("documents of many sentences", 5, None),
    ("a blank line after every line", None, "sentences per document"),
    ("documents of many sentences", None, None)])
def test_structure_of_the_input_is_reported_and_mistakes_warned(english, tmp_path, caplog,
                                                                layout, shards, expected):
  lines = [f"the cat sat on the mat {i} ." for i in range(40)]
  text = {"no blank lines": "\n".join(lines),
          "a blank line after every line": "\n\n".join(lines),
          "documents of many sentences": "\n\n".join("\n".join(lines[i:i + 8])
                                                      for i in range(0, 40, 8))}[layout]
  (tmp_path / "input.txt").write_text(text + "\n")
  config = dataclasses.replace(english, input_file=str(tmp_path / "input.txt"),
                               output_file=str(tmp_path / "out" / "data"),
                               num_output_shards=shards)
  caplog.set_level(logging.INFO)
  counts = cpd.create_pretraining_data(config)["counts"]
  assert counts["sentences"] == 40
  warnings = cpd.structure_warnings(config, counts)
  if expected is None:
    assert warnings == []
  else:
    assert any(expected in w for w in warnings), warnings
    assert any(expected in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
  assert any("sentences (" in r.getMessage() and "random next" in r.getMessage()
             for r in caplog.records)


def _numbered_corpus(tmp_path, num_documents):
  """Documents numbered in order, each made of its own word d<i> (so an instance names its
  document), and a vocab of those words."""
  vocab = tmp_path / "numbered_vocab.txt"
  vocab.write_text("".join(t + "\n" for t in TOKENS[:5] + [f"d{i}" for i in range(num_documents)]))
  text = tmp_path / "numbered.txt"
  text.write_text("\n\n".join("\n".join(" ".join([f"d{i}"] * 6) for _ in range(6))
                              for i in range(num_documents)) + "\n")
  return instances.DataConfig(input_file=str(text), output_file=str(tmp_path / "numbered" / "data"),
                              vocab_file=str(vocab), do_lower_case=True, max_seq_length=16,
                              max_predictions_per_seq=2, dupe_factor=4, num_output_shards=8)


def _documents(input_ids, segment_ids):
  """The document of each instance: the commonest word of its first segment (ids 5.. are d0..)."""
  words = np.where((segment_ids == 0) & (input_ids >= 5), input_ids - 5, -1)
  return np.array([np.bincount(row[row >= 0]).argmax() for row in words])


def test_shards_and_training_batches_sample_the_whole_corpus(tmp_path):
  """200 documents numbered in order, 8 shards (windows of 25 documents), read one shard at a
  time (files_in_parallel=1, so only the shards' mixing counts) through a 64-record shuffle.

  Statistic: the standard deviation of the documents' positions (number / 200), per shard and per
  batch of 32, averaged. A uniform random draw gives 1/sqrt(12) = 0.289; a draw from the 200
  documents of 32 has a standard error of about 0.024 per batch, 0.004 for the mean over 40
  batches, and a whole shard (~300 instances) about 0.008; 0.04 leaves room for the per-window
  dealing. The old layout (each shard one window) gives 0.036 per shard (25/200/sqrt(12)), and
  0.145 for its batches even read 4 shards at a time as the old pipeline did: both fail by far.
  """
  config = _numbered_corpus(tmp_path, 200)
  metadata = cpd.create_pretraining_data(config)
  uniform = 1 / np.sqrt(12)
  for path in shard_files(metadata):
    shard = read(path, 16, 2)
    assert metadata["record_counts"][os.path.basename(path)] == len(shard["input_ids"])
    positions = _documents(shard["input_ids"], shard["segment_ids"]) / 200
    assert abs(np.std(positions) - uniform) < 0.04, path
  spec = pipeline.int_features({"input_ids": 16, "segment_ids": 16})
  dataset = pipeline.training_dataset(metadata["file_pattern"], pipeline.example_parser(spec), 32,
                                      shuffle_buffer=64, files_in_parallel=1)
  spreads = [np.std(_documents(b["input_ids"], b["segment_ids"]) / 200)
             for b in dataset.take(40).as_numpy_iterator()]
  assert abs(np.mean(spreads) - uniform) < 0.04


def test_command_line_on_local_files_does_not_import_tensorflow(english, tmp_path):
  """TensorFlow (seconds to import) is for gs:// paths only; the shards are still exactly what
  tf.io.TFRecordWriter writes, and tf.data reads them."""
  result, imported = processes.tensorflow_imports(
      ["-m", "bert_tf.corpus.create_pretraining_data", f"--input_file={english.input_file}",
       f"--output_file={english.output_file}", f"--vocab_file={english.vocab_file}",
       f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}", "--dupe_factor=3",
       "--documents_per_shard=4", "--num_workers=1"],
      cwd=pathlib.Path(__file__).resolve().parent.parent, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  metadata = shards.read_metadata(records.shard_name(english.output_file, 0, 3))
  assert metadata["counts"] == cpd.create_pretraining_data(
      dataclasses.replace(english, output_file=str(tmp_path / "in_process" / "data"))
  )["counts"]
  for shard in shard_files(metadata):
    data = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
    assert len(data) == metadata["record_counts"][os.path.basename(shard)] > 0
    rewritten = str(tmp_path / "rewritten.tfrecord")
    with tf.io.TFRecordWriter(rewritten) as writer:
      for record in data:
        writer.write(record)
    assert pathlib.Path(shard).read_bytes() == pathlib.Path(rewritten).read_bytes()
  assert not imported, f"imported {imported[:3]}..."


def test_dynamic_data_holds_the_static_instances_unmasked(english, tmp_path):
  """Without whole-word masking the masks draw from their own generator, so the same seed gives
  the same instances in both modes: the dynamic records are the static ones with the masked
  tokens put back, and without masked_lm_* features."""
  static = cpd.create_pretraining_data(english)
  dynamic = cpd.create_pretraining_data(dataclasses.replace(
      english, output_file=str(tmp_path / "dynamic" / "data"), masking="dynamic"))
  assert dynamic["masking"] == "dynamic" and dynamic["counts"]["instances"] == static["counts"][
      "instances"]
  record = next(iter(tf.data.TFRecordDataset(shard_files(dynamic)[0])))
  assert sorted(tf.train.Example.FromString(record.numpy()).features.feature) == [
      "input_ids", "input_mask", "next_sentence_labels", "segment_ids"]
  masked = read(static["file_pattern"], SEQ, PREDICTIONS)
  spec = {name: tf.io.FixedLenFeature([SEQ], tf.int64)
          for name in ("input_ids", "input_mask", "segment_ids")}
  spec["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)
  unmasked = {k: np.concatenate([b[k].numpy() for b in tf.data.TFRecordDataset(
      shard_files(dynamic)).batch(10000).map(lambda s: tf.io.parse_example(s, spec))])
      for k in spec}
  restored = masked["input_ids"].copy()
  rows, slots = np.nonzero(masked["masked_lm_weights"])
  restored[rows, masked["masked_lm_positions"][rows, slots]] = masked["masked_lm_ids"][rows, slots]
  for name in ("input_mask", "segment_ids", "next_sentence_labels"):
    np.testing.assert_array_equal(unmasked[name], masked[name])
  np.testing.assert_array_equal(unmasked["input_ids"], restored)
  assert not (unmasked["input_ids"] == tokenization.load_vocab(english.vocab_file)["[MASK]"]).any()


def test_mlm_only_data_has_one_segment_and_no_next_sentence_labels(english):
  config = dataclasses.replace(english, next_sentence_prediction=False)
  metadata = cpd.create_pretraining_data(config)
  assert metadata["next_sentence_prediction"] is False and metadata["counts"]["random_next"] == 0
  record = next(iter(tf.data.TFRecordDataset(shard_files(metadata)[0])))
  assert "next_sentence_labels" not in tf.train.Example.FromString(record.numpy()).features.feature
  spec = pretraining_task.feature_spec(SEQ, PREDICTIONS, pretraining_task.DataFormat(
      next_sentence_prediction=False))
  data = {k: v.numpy() for k, v in tf.io.parse_example(
      next(iter(tf.data.TFRecordDataset(shard_files(metadata)).batch(10000))), spec).items()}
  vocab = tokenization.load_vocab(english.vocab_file)
  lengths = data["input_mask"].sum(axis=1)
  ids = data["input_ids"].copy()  # unmasked (a random replacement may be any token)
  rows, slots = np.nonzero(data["masked_lm_weights"])
  ids[rows, data["masked_lm_positions"][rows, slots]] = data["masked_lm_ids"][rows, slots]
  assert not data["segment_ids"].any()
  assert (ids[:, 0] == vocab["[CLS]"]).all()
  assert (ids[np.arange(len(lengths)), lengths - 1] == vocab["[SEP]"]).all()
  assert ((ids == vocab["[SEP]"]).sum(axis=1) == 1).all()
  # Sentences end with "." and are packed whole: every instance ends with one.
  assert (ids[np.arange(len(lengths)), lengths - 2] == vocab["."]).all()
  counts = data["masked_lm_weights"].sum(axis=1)
  np.testing.assert_array_equal(counts, np.minimum(PREDICTIONS, np.maximum(
      1, np.round(lengths * 0.15))))
  assert (data["masked_lm_positions"] < lengths[:, None] - 1).all()
  assert (data["masked_lm_positions"][counts > 0, 0] >= 1).all()


@pytest.mark.parametrize("next_sentence_prediction, consequence", [
    (True, "next-sentence pairs cannot come from it"),
    (False, "an instance (whole sentences of one document) holds one sentence")])
def test_one_sentence_documents_warning_names_what_the_mode_loses(english, next_sentence_prediction,
                                                                  consequence):
  config = dataclasses.replace(english, next_sentence_prediction=next_sentence_prediction)
  counts = {"documents": 40, "sentences": 41, "random_next": 0, "instances": 40}
  [warning] = cpd.structure_warnings(config, counts)
  assert "1.02 sentences per document" in warning and consequence in warning


def test_an_unwritable_output_is_one_line_before_any_work(tmp_path, unwritable_dir):
  text = tmp_path / "text.txt"
  text.write_text("한국어 문장입니다.\n\n또 다른 문서입니다.\n", encoding="utf-8")
  output = unwritable_dir / "data.tfrecord"
  line = processes.user_error(
      "-m", "bert_tf.corpus.create_pretraining_data", f"--input_file={text}",
      f"--output_file={output}",
      f"--vocab_file={pathlib.Path(__file__).parent.parent / 'sample_data' / 'vocab.txt'}",
      "--num_workers=1")
  assert line.startswith(f"error: --output_file={output}: nothing can be written in ")


def test_a_missing_vocab_is_one_line_naming_the_flag(tmp_path):
  text = tmp_path / "text.txt"
  text.write_text("한국어 문장입니다.\n\n또 다른 문서입니다.\n", encoding="utf-8")
  line = processes.user_error(
      "-m", "bert_tf.corpus.create_pretraining_data", f"--input_file={text}",
      f"--output_file={tmp_path / 'data.tfrecord'}", f"--vocab_file={tmp_path / 'vocb.txt'}")
  assert line.startswith(f"error: --vocab_file={tmp_path / 'vocb.txt'}: nothing exists at this "
                         "path"), line
  assert "ls -ld" in line and not (tmp_path / "data.tfrecord.metadata.json").exists()


class FileCalls:
  """Counts, under one directory, the files opened and the read calls on them, at the file layer
  every reader and writer here goes through: Python's `open` (io_files.gfile's local files too).
  Line iteration over the input text (a buffered stream read once a pass) is not a read call."""

  READS = ("read", "read1", "readinto", "readinto1", "readline", "readlines")

  def __init__(self, monkeypatch, directory):
    self.opened, self.reads, self.directory = collections.Counter(), 0, str(directory)
    real_open = builtins.open

    def counting_open(path, *args, **kwargs):
      f = real_open(path, *args, **kwargs)
      if isinstance(path, str) and path.startswith(self.directory):
        self.opened[self._kind(path)] += 1
        return _CountedFile(f, self)
      return f

    monkeypatch.setattr(builtins, "open", counting_open)

  @staticmethod
  def _kind(path):
    """"shard" for a shard (or its temporary), else the file's extension."""
    name = os.path.basename(path).split(".tmp-")[0]
    return "shard" if "-of-" in name else name.rsplit(".", 1)[-1]


class _CountedFile:
  def __init__(self, f, calls):
    self._f, self._calls = f, calls

  def __getattr__(self, name):
    attribute = getattr(self._f, name)
    if name not in FileCalls.READS:
      return attribute

    def counted(*args, **kwargs):
      self._calls.reads += 1
      return attribute(*args, **kwargs)
    return counted

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    return self._f.__exit__(*exc_info)

  def __iter__(self):
    return iter(self._f)


def _tiny_documents(tmp_path, num_documents):
  """`num_documents` documents of two short sentences, and the english vocab."""
  text = tmp_path / "tiny.txt"
  text.write_text("\n\n".join("the cat sat on the mat .\nthe dog ran far away ."
                              for _ in range(num_documents)) + "\n")
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(t + "\n" for t in TOKENS))
  return instances.DataConfig(input_file=str(text), output_file=str(tmp_path / "out" / "data"),
                              vocab_file=str(vocab), do_lower_case=True, max_seq_length=16,
                              max_predictions_per_seq=2, dupe_factor=1, documents_per_shard=1,
                              num_output_shards=num_documents)


@pytest.mark.parametrize("path", ["local", "beam"])
def test_file_operations_grow_as_windows_plus_shards(tmp_path, monkeypatch, path):
  """1,000 windows (one tiny document each) dealt over 1,000 shards. Per window: its part file
  written and read once, its counts written and read; per shard: its spool written and read,
  the shard and its progress record written; so at most 4 opens and 4 read calls a window plus
  a shard, and a few for the run (measured: 9,011 opens and 4,005 read calls locally). Assembling
  each shard from a byte range of every window's part file, as before, opened windows x shards =
  1,000,000 files."""
  num = 1000
  config = _tiny_documents(tmp_path, num)
  options = None
  if path == "beam":
    from tests.test_beam_pipelines import direct  # pylint: disable=import-outside-toplevel
    options = direct()
  calls = FileCalls(monkeypatch, tmp_path)
  metadata = cpd.create_pretraining_data(config, beam_options=options)
  monkeypatch.undo()
  assert len(metadata["files"]) == num and metadata["counts"]["instances"] >= num
  opened = sum(calls.opened.values())
  print(f"{path}: {opened} files opened {dict(calls.opened)}, {calls.reads} read calls, for "
        f"{num} windows and {num} shards")
  assert calls.opened["shard"] == num
  assert opened <= 5 * (num + num) + 20 and calls.reads <= 5 * (num + num) + 20


def test_bucket_output_gets_only_finished_shards_and_records(english, tmp_path, monkeypatch):
  """With the output on a file system of URLs (TensorFlow's ram://, standing for gs://), the
  part and spool files stay on local disk ($TMPDIR) and the bucket receives the shards, their
  progress records and the metadata only, each written once; the shards are the local run's."""
  local = cpd.create_pretraining_data(english)
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmpdir"))
  written, real_gfile = [], io_files.gfile.GFile

  def recording_gfile(path, mode="r"):
    if io_files.is_url(path) and "w" in mode:
      written.append(os.path.basename(path).split(".tmp-")[0].lstrip("."))
    return real_gfile(path, mode)

  monkeypatch.setattr(io_files.gfile, "GFile", recording_gfile)
  url = f"ram://{tmp_path.name}/out/data.tfrecord"
  remote = cpd.create_pretraining_data(dataclasses.replace(english, output_file=url))
  monkeypatch.undo()
  shards = [f"data.tfrecord-{i:05d}-of-00003" for i in range(3)]
  assert sorted(written) == sorted(
      ["config.json", "counts.json", "data.tfrecord.metadata.json", *shards,
       *(f"shard-{i:05d}.json" for i in range(3))])
  assert remote["record_counts"] == local["record_counts"]
  for mine, theirs in zip(shard_files(local), shards):
    assert tf.io.gfile.GFile(f"ram://{tmp_path.name}/out/{theirs}", "rb").read() == open(
        mine, "rb").read()
  assert not os.listdir(tmp_path / "tmpdir")  # the local scratch is removed at the end


def test_a_long_document_is_cut_once_logged_and_a_text_without_breaks_warned(english, tmp_path,
                                                                            caplog):
  lines = [f"the cat sat on the mat {i} ." for i in range(200)]
  (tmp_path / "one.txt").write_text("\n".join(lines) + "\n")
  shape = {}
  pieces = list(reading.read_documents([str(tmp_path / "one.txt")], shape=shape))
  assert [len(piece) for piece in pieces] == [64, 64, 64, 8]
  assert sum(pieces, []) == lines
  assert shape == {"lines": 200, "document_breaks": 0, "documents_cut": 1, "pieces": 4}
  caplog.set_level(logging.INFO)
  config = dataclasses.replace(english, input_file=str(tmp_path / "one.txt"))
  counts = cpd.create_pretraining_data(config)["counts"]
  assert counts["documents"] == 4 and counts["documents_cut"] == 1
  cut = [r.getMessage() for r in caplog.records if "were cut" in r.getMessage()]
  assert len(cut) == 1 and "1 document(s) longer than 64 lines were cut into 4 pieces" in cut[0]
  [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert "no blank line in the input" in warning
  assert "whether two lines are neighbours" in warning
  assert "--next_sentence_prediction=false" in warning


def test_a_single_document_of_a_million_lines_in_bounded_memory_and_linear_time(tmp_path):
  """One 1,000,000-line document (no blank line) against the same lines with a blank line every
  10 (the normal shape), each made in a fresh process (benchmarks.pretraining_data.measure, seq
  128, dupe_factor 1, one worker). Counted, not timed: the rate is instances per CPU second
  (user + system, which other processes' load moves far less than wall time), compared with the
  normal shape's measured in the same test; it must be at least half of it (measured 0.74x at
  load average 13; before the cut, 500,000 lines of this shape ran 40x slower than normal, their
  time growing with the square of the document). Peak RSS (the tool's own high-water mark): at
  most 2.5x the normal shape's, since a window holds at most 2,000 pieces of 64 lines (128,000
  lines; the normal shape's windows hold 20,000) whatever the document's length (measured: 148
  against 73 MiB; before, 1.26 GB at 500,000 lines, growing with the document)."""
  rng = random.Random(0)
  sentences = ["the cat sat on the mat .", "the dog ran far away .", "a big red ball .",
               "the cat played with a ball .", "the dog sat on a big mat ."]
  lines = [rng.choice(sentences) for _ in range(1_000_000)]
  (tmp_path / "one.txt").write_text("\n".join(lines) + "\n")
  (tmp_path / "documents.txt").write_text(
      "".join(line + ("\n\n" if i % 10 == 9 else "\n") for i, line in enumerate(lines)))
  (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in TOKENS))
  runs = {}
  for name in ("documents", "one"):
    output = tmp_path / name / "data"
    runs[name] = pretraining_data.measure("bert_tf", [
        f"--input_file={tmp_path / (name + '.txt')}", f"--output_file={output}",
        f"--vocab_file={tmp_path / 'vocab.txt'}", "--do_lower_case=True", "--dupe_factor=1",
        "--num_workers=1"])
    runs[name]["counts"] = shards.read_metadata(records.shard_name(str(output), 0, 1))["counts"]
  one, normal = runs["one"], runs["documents"]
  assert one["counts"]["documents_cut"] == 1 and one["counts"]["documents"] == 15_625
  rate = {name: run["counts"]["instances"] / run["cpu_seconds"] for name, run in runs.items()}
  print(runs, rate)
  assert rate["one"] >= rate["documents"] / 2
  assert one["peak_rss_mib"] <= 2.5 * normal["peak_rss_mib"]
