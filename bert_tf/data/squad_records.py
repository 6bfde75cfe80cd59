"""SQuAD features as TFRecords: writing them, reading them back as datasets, and their cache.

The storage stage, between the conversion (squad_features) and the model. `FeatureWriter` and
`make_dataset` keep google-research/bert's record names and input_fn semantics; files are written
under temporary names and renamed when complete, so a crash leaves nothing that looks finished.
`prepare_features` adds a cache: the TFRecords plus a metadata JSON recording everything the
features depend on, so a repeated run reuses them and a changed flag, vocab or input rebuilds them;
for evaluation it keeps what post-processing needs beside them (`load_eval_data`). It is separate
because it is the only stage that touches files other than the input and the predictions.
"""

import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf

from bert_tf.data import pipeline as input_pipeline
from bert_tf.data import records
from bert_tf.data import squad_examples, squad_features
from bert_tf.io import files as io_files

EVAL_SIDECAR = "eval_features.jsonl"
_METADATA_FORMAT = "bert_tf.squad_features/1"


class FeatureWriter:
  """Writes InputFeatures as tf.train.Examples with google-research's feature names.

  Features go round-robin to `num_shards` files, so reading the shards in turn restores their
  order. Files are written under temporary names and renamed by `close`: a crash leaves no file
  that looks complete. Usable as a context manager (which discards the files on an exception).
  """

  def __init__(self, filename_or_pattern: str, is_training: bool, num_shards: int = 1):
    if num_shards < 1:
      raise ValueError(f"num_shards must be at least 1, got {num_shards}.")
    self.filenames = records.shard_names(filename_or_pattern, num_shards)
    self.is_training = is_training
    self.num_features = 0
    directory = os.path.dirname(filename_or_pattern)
    if directory:
      tf.io.gfile.makedirs(directory)
    self._temporary = [io_files.temporary_path(name) for name in self.filenames]
    self._writers = [tf.io.TFRecordWriter(name) for name in self._temporary]

  def process_feature(self, feature: squad_features.InputFeatures) -> None:
    """Writes one feature."""
    features = {
        "unique_ids": records.int64_feature([feature.unique_id]),
        "input_ids": records.int64_feature(feature.input_ids),
        "input_mask": records.int64_feature(feature.input_mask),
        "segment_ids": records.int64_feature(feature.segment_ids),
    }
    if self.is_training:
      features["start_positions"] = records.int64_feature([feature.start_position])
      features["end_positions"] = records.int64_feature([feature.end_position])
      features["is_impossible"] = records.int64_feature([int(bool(feature.is_impossible))])
    example = tf.train.Example(features=tf.train.Features(feature=features))
    self._writers[self.num_features % len(self._writers)].write(example.SerializeToString())
    self.num_features += 1

  def close(self) -> None:
    """Finishes the files and gives them their final names."""
    for writer in self._writers:
      writer.close()
    for temporary, final in zip(self._temporary, self.filenames):
      tf.io.gfile.rename(temporary, final, overwrite=True)

  def discard(self) -> None:
    """Closes and deletes the unfinished files."""
    for writer in self._writers:
      writer.close()
    for temporary in self._temporary:
      if tf.io.gfile.exists(temporary):
        tf.io.gfile.remove(temporary)

  def __enter__(self) -> "FeatureWriter":
    return self

  def __exit__(self, exc_type, exc_value, traceback) -> None:
    if exc_type is None:
      self.close()
    else:
      self.discard()


def feature_parser(seq_length: int, is_training: bool) -> input_pipeline.Parser:
  """Parses batches of FeatureWriter records into int32 tensors (google-research's names)."""
  lengths = {"input_ids": seq_length, "input_mask": seq_length, "segment_ids": seq_length,
             "unique_ids": 1}
  if is_training:
    lengths.update(start_positions=1, end_positions=1, is_impossible=1)
  return input_pipeline.example_parser(input_pipeline.int_features(lengths))


def make_dataset(file_pattern: str, seq_length: int, is_training: bool, batch_size: int,
                 drop_remainder: bool,
                 input_context: Optional[tf.distribute.InputContext] = None, seed: int = 12345,
                 start_batch: int = 0, files_in_parallel: int = 16) -> tf.data.Dataset:
  """Batches of int32 feature dicts from FeatureWriter files (the input_fn of google-research).

  Keys: input_ids, input_mask, segment_ids ([batch, seq_length]) and unique_ids, plus
  start_positions, end_positions and is_impossible for training. Training data is shuffled (by
  `seed`), repeated and always has full batches, starting after `start_batch` batches (to resume).
  `batch_size` is the global batch: with `input_context` (tf.distribute's
  distribute_datasets_from_function) each input pipeline reads its share of the files and yields
  per-replica batches. Evaluation data is read once, in order.
  """
  parser = feature_parser(seq_length, is_training)
  if is_training:
    if input_context:
      batch_size = input_context.get_per_replica_batch_size(batch_size)
    return input_pipeline.training_dataset(file_pattern, parser, batch_size, seed=seed,
                                           start_batch=start_batch, input_context=input_context,
                                           files_in_parallel=files_in_parallel)
  if input_context:
    raise ValueError("make_dataset shards training data only: for prediction, distribute the "
                     "dataset with strategy.experimental_distribute_dataset instead.")
  return input_pipeline.evaluation_dataset(file_pattern, parser, batch_size,
                                           drop_remainder=drop_remainder)


def _split_name(is_training: bool) -> str:
  return "train" if is_training else "eval"


def metadata_path(output_dir: str, is_training: bool) -> str:
  """Where prepare_features records what it cached for training or for evaluation."""
  return os.path.join(output_dir, f"{_split_name(is_training)}_meta.json")


def _write_eval_sidecar(path: str, features: List[squad_features.InputFeatures]) -> None:
  """One JSON line per feature with what write_predictions needs (not the model inputs)."""
  with io_files.atomic_output(path) as temporary:
    with tf.io.gfile.GFile(temporary, "w") as f:
      for feature in features:
        positions = list(feature.token_to_orig_map)
        f.write(json.dumps({
            "unique_id": feature.unique_id,
            "example_index": feature.example_index,
            "doc_span_index": feature.doc_span_index,
            "tokens": feature.tokens,
            "doc_offset": positions[0] if positions else len(feature.tokens),
            "token_to_orig": [feature.token_to_orig_map[p] for p in positions],
            "max_context": [int(feature.token_is_max_context[p]) for p in positions],
        }, ensure_ascii=False) + "\n")


def _read_eval_sidecar(path: str) -> List[squad_features.InputFeatures]:
  features = []
  with tf.io.gfile.GFile(path, "r") as f:
    for line in f:
      record = json.loads(line)
      positions = range(record["doc_offset"], record["doc_offset"] + len(record["token_to_orig"]))
      features.append(squad_features.InputFeatures(
          unique_id=record["unique_id"], example_index=record["example_index"],
          doc_span_index=record["doc_span_index"], tokens=record["tokens"],
          token_to_orig_map=dict(zip(positions, record["token_to_orig"])),
          token_is_max_context=dict(zip(positions, map(bool, record["max_context"]))),
          input_ids=None, input_mask=None, segment_ids=None))
  return features


def prepare_features(input_file: str, tokenizer: Any, vocab_file: str, max_seq_length: int,
                     doc_stride: int, max_query_length: int, is_training: bool,
                     version_2_with_negative: bool, output_dir: str, num_shards: int = 1,
                     num_workers: int = 0) -> Dict[str, Any]:
  """Writes the features of `input_file` to TFRecords in `output_dir` once; returns their metadata.

  The metadata ({train,eval}_meta.json) records the flags, the SHA-256 of the input and the vocab,
  the tokenizer's casing, the files and the counts (num_examples, num_features); its
  `file_pattern` (recorded relative to `output_dir`, returned joined to it) is what make_dataset
  reads. A later call with the same inputs reuses the files, also from a copy of `output_dir`;
  any difference rebuilds them. The metadata is written last, so an interrupted build is redone.

  For evaluation, write_predictions also needs the examples and each feature's tokens and maps.
  They are kept beside the TFRecords in eval_features.jsonl (the examples are re-read from the
  input, whose checksum the metadata holds); `load_eval_data` returns both, so prediction needs
  neither the tokenizer nor a second conversion.
  """
  split = _split_name(is_training)
  meta_path = metadata_path(output_dir, is_training)
  # What the features depend on. The input and vocab are compared by content, not path: files
  # that merely moved are still the same (their paths are recorded for load_eval_data).
  key = {
      "format": _METADATA_FORMAT,
      "split": split,
      "input_sha256": io_files.file_sha256(input_file),
      "vocab_sha256": io_files.file_sha256(vocab_file),
      "do_lower_case": bool(tokenizer.basic_tokenizer.do_lower_case),
      "max_seq_length": max_seq_length,
      "doc_stride": doc_stride,
      "max_query_length": max_query_length,
      "version_2_with_negative": version_2_with_negative,
      "num_shards": num_shards,
  }

  def build() -> Dict[str, Any]:
    started = time.time()
    examples = squad_examples.read_squad_examples(input_file, is_training, version_2_with_negative)
    record_file = os.path.join(output_dir, f"{split}.tf_record")
    eval_features = []
    with FeatureWriter(record_file, is_training, num_shards) as writer:
      def output(feature: squad_features.InputFeatures) -> None:
        writer.process_feature(feature)
        if not is_training:
          eval_features.append(feature)
      num_features = squad_features.convert_examples_to_features(
          examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training, output,
          num_workers)
    files = [os.path.basename(name) for name in writer.filenames]
    if not is_training:
      files.append(EVAL_SIDECAR)
      _write_eval_sidecar(os.path.join(output_dir, EVAL_SIDECAR), eval_features)
    logging.info("Wrote %d %s features of %d examples to %s in %.1f s.", num_features, split,
                 len(examples), output_dir, time.time() - started)
    record_counts = {os.path.basename(name): len(range(i, writer.num_features, num_shards))
                     for i, name in enumerate(writer.filenames)}  # round-robin shards
    return dict(input_file=input_file, vocab_file=vocab_file, files=files,
                num_examples=len(examples), num_features=num_features, record_counts=record_counts,
                file_pattern=records.shard_pattern(os.path.basename(record_file), num_shards))

  metadata = records.cached_records(meta_path, key, build)
  # By name in output_dir: older caches recorded the path as typed, which a copy must not follow.
  return dict(metadata, input_file=input_file, file_pattern=os.path.join(
      output_dir, os.path.basename(metadata["file_pattern"])))


def load_eval_data(output_dir: str, input_file: Optional[str] = None
                   ) -> Tuple[List[squad_examples.SquadExample],
                              List[squad_features.InputFeatures]]:
  """The evaluation examples and features that prepare_features cached, for write_predictions.

  `input_file` is the predict file as given now (default: the path the cache recorded)."""
  meta_path = metadata_path(output_dir, is_training=False)
  if not tf.io.gfile.exists(meta_path):
    raise FileNotFoundError(f"{meta_path} does not exist: run prepare_features with "
                            "is_training=False first.")
  metadata = io_files.read_json(meta_path)
  input_file = input_file or metadata["input_file"]
  if io_files.file_sha256(input_file) != metadata["input_sha256"]:
    raise ValueError(f"{input_file} changed after its features were written to "
                     f"{output_dir}: run prepare_features again.")
  examples = squad_examples.read_squad_examples(
      input_file, is_training=False, version_2_with_negative=metadata["version_2_with_negative"])
  features = _read_eval_sidecar(os.path.join(output_dir, EVAL_SIDECAR))
  return examples, features
