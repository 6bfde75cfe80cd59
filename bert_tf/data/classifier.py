"""Sentence and sentence-pair classification data: tasks, features and the TFRecord cache.

The names and semantics follow google-research/bert's run_classifier.py, so code written against
it keeps working: `InputExample`, `InputFeatures`, processors with
`get_train_examples` / `get_dev_examples` / `get_test_examples` / `get_labels`,
`convert_single_example` ([CLS] a [SEP] b [SEP], segment ids 0 then 1, pairs truncated by
popping from the longer side) and TFRecords with the feature names input_ids, input_mask,
segment_ids, label_ids and is_real_example.

What differs: files are read from local paths or gs:// and checked as they are read, so a row
with the wrong number of columns or a label outside the task's list fails at once with the file
and line; the XNLI language is an option, not hard-coded; `tsv` and `csv` tasks take their
columns from options, so a user's own data needs no code; CoLA also reads the raw CoLA release
(in_domain_train.tsv ...) besides GLUE's train.tsv; and `prepare_features` keeps the TFRecords
with a fingerprint of what they hold, so a rerun or a resumed run reuses them.

Every record is a real example (is_real_example = 1); evaluation and prediction pad their last
batch in the input pipeline with is_real_example = 0 (input_pipeline.pad_to_full_batches), which
TPUs need for static shapes, and metrics and outputs skip the padding, so no example is dropped
or counted twice on any device.
"""

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from bert_tf import tokenization
from bert_tf.cli.errors import quoted, summary
from bert_tf.data import pipeline as input_pipeline
from bert_tf.data import records, sentence_pairs
from bert_tf.io import files as io_files

FEATURE_FORMAT = "bert_tf.classifier_features/1"
TASK_NAMES = ("cola", "csv", "mnli", "mrpc", "nsmc", "tsv", "xnli")
NLI_LABELS = ["contradiction", "entailment", "neutral"]
_LOGGED_EXAMPLES = 3


@dataclasses.dataclass
class InputExample:
  """One example: `text_b` is None for single sentences, `label` None where the file has none."""
  guid: str
  text_a: str
  text_b: Optional[str] = None
  label: Optional[str] = None
  where: str = ""  # "file, line N", for error messages


@dataclasses.dataclass
class InputFeatures:
  input_ids: List[int]
  input_mask: List[int]
  segment_ids: List[int]
  label_id: int
  is_real_example: bool = True


# ---------------------------------------------------------------------------------------------
# Reading delimited files


@dataclasses.dataclass(frozen=True)
class Row:
  """The fields of one row and where it came from."""
  path: str
  line: int
  fields: List[str]

  @property
  def where(self) -> str:
    return f"{self.path}, line {self.line}"


def read_rows(path: str, delimiter: str = "\t") -> List[Row]:
  """The non-blank rows of a UTF-8 TSV or CSV file (local or gs://), with their line numbers.

  TSV is read as google-research reads GLUE: a quote is an ordinary character (NSMC reviews and
  MRPC sentences contain unbalanced quotes). CSV uses standard quoting, so a quoted field may
  hold commas, doubled quotes and line breaks.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} does not exist.")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError:
    raise io_files.utf8_error(path) from None
  text = text.removeprefix("\ufeff")  # the byte-order mark some editors write
  quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
  reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
  rows = []
  first_line = 1
  try:
    for fields in reader:
      if any(field.strip() for field in fields):
        rows.append(Row(path, first_line, fields))
      first_line = reader.line_num + 1
  except csv.Error as e:
    raise ValueError(f"{path}, line {first_line}: {e}. Fix the quoting of that row.") from e
  return rows


def _check_columns(row: Row, exact: int = 0, at_least: int = 0, delimiter: str = "\t") -> None:
  count = len(row.fields)
  if (exact and count == exact) or (not exact and count >= at_least):
    return
  kind = "tab" if delimiter == "\t" else "comma"
  wanted = f"{exact}" if exact else f"at least {at_least}"
  raise ValueError(
      f"{row.where}: expected {wanted} {kind}-separated columns, found {count}. A stray "
      f"{kind} inside a sentence (or a missing one) shifts the columns: fix or remove that line.")


def _checked_label(row: Row, label: str, labels: Sequence[str]) -> str:
  if label not in labels:
    raise ValueError(f"{row.where}: label {quoted(label)} is not one of the task's "
                     f"{len(labels)} labels ({summary(labels)}). Fix the line, or for tsv/csv "
                     "tasks pass every label in --label_list.")
  return label


# ---------------------------------------------------------------------------------------------
# Tasks


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a file of a built-in task keeps its fields (column indexes)."""
  text_a: int
  text_b: Optional[int] = None
  label: Optional[int] = None  # None: the file has no labels (GLUE test sets)
  header: bool = False
  expected_header: Optional[Sequence[str]] = None
  columns: int = 0  # the exact column count, or 0 to require `min_columns`
  min_columns: int = 0
  only: Optional[Tuple[int, str]] = None  # (column, value): keep only the rows with that value


class DataProcessor:
  """A classification task: its labels, its files and how to read them."""
  name = ""
  metric = "accuracy"  # the task's usual validation metric (a key of classifier_metrics)
  # split -> the file names to look for in data_dir; the first that exists is read.
  files: Dict[str, Sequence[str]] = {}

  def get_labels(self) -> List[str]:
    raise NotImplementedError

  def get_train_examples(self, data_dir: str) -> List[InputExample]:
    return self.examples(data_dir, "train")

  def get_dev_examples(self, data_dir: str) -> List[InputExample]:
    return self.examples(data_dir, "dev")

  def get_test_examples(self, data_dir: str) -> List[InputExample]:
    return self.examples(data_dir, "test")

  def find_file(self, data_dir: str, split: str) -> str:
    """The first of this split's file names that exists in `data_dir`."""
    names = self.files[split]
    for name in names:
      path = os.path.join(data_dir, name)
      if tf.io.gfile.exists(path):
        return path
    raise FileNotFoundError(
        f"The {self.name} {split} set is not in --data_dir={data_dir}: expected "
        f"{' or '.join(names)}.")

  def examples(self, data_dir: str, split: str) -> List[InputExample]:
    path = self.find_file(data_dir, split)
    examples = self.read_examples(path, split)
    if not examples:
      raise ValueError(f"{path} holds no {self.name} examples.")
    return examples

  def layout(self, path: str, split: str) -> Layout:
    raise NotImplementedError

  def label_of(self, value: str) -> str:
    return value

  def read_examples(self, path: str, split: str) -> List[InputExample]:
    """Reads a file with this task's layout, checking every row's columns and label."""
    layout = self.layout(path, split)
    rows = read_rows(path)
    if rows and layout.expected_header and rows[0].fields != list(layout.expected_header):
      raise ValueError(f"{rows[0].where}: expected the {self.name} header "
                       f"{chr(9).join(layout.expected_header)!r}, found "
                       f"{chr(9).join(rows[0].fields)!r}. For another layout use "
                       "--task_name=tsv with --text_a_column, --label_column and --has_header.")
    if layout.header:
      rows = rows[1:]
    labels = self.get_labels()
    examples = []
    for row in rows:
      _check_columns(row, layout.columns, layout.min_columns)
      if layout.only and row.fields[layout.only[0]] != layout.only[1]:
        continue
      label = None
      if layout.label is not None:
        label = _checked_label(row, self.label_of(row.fields[layout.label]), labels)
      text_b = row.fields[layout.text_b] if layout.text_b is not None else None
      examples.append(InputExample(f"{split}-{row.line}", row.fields[layout.text_a], text_b,
                                   label, row.where))
    if layout.only and not examples:
      column, value = layout.only
      present = sorted({row.fields[column] for row in rows})
      raise ValueError(f"{path} has no rows with {value!r} in column {column}; it has "
                       f"{', '.join(present)}.")
    return examples


class ColaProcessor(DataProcessor):
  """CoLA: GLUE's train.tsv/dev.tsv/test.tsv or the raw release's in_domain_*.tsv files.

  Labeled files have no header and the columns source, label, original mark, sentence; GLUE's
  test.tsv has a header and the columns index, sentence. The raw release has no test set, so
  out_of_domain_dev.tsv (labeled) serves as one.
  """
  name = "cola"
  metric = "mcc"
  files = {"train": ("train.tsv", "in_domain_train.tsv"),
           "dev": ("dev.tsv", "in_domain_dev.tsv"),
           "test": ("test.tsv", "out_of_domain_dev.tsv")}

  def get_labels(self) -> List[str]:
    return ["0", "1"]

  def layout(self, path: str, split: str) -> Layout:
    if os.path.basename(path) == "test.tsv":
      return Layout(text_a=1, header=True, columns=2)
    return Layout(text_a=3, label=1, columns=4)


class MrpcProcessor(DataProcessor):
  """MRPC (GLUE): header; Quality, #1 ID, #2 ID, #1 String, #2 String (test: index, not Quality)."""
  name = "mrpc"
  metric = "f1"
  files = {"train": ("train.tsv",), "dev": ("dev.tsv",), "test": ("test.tsv",)}

  def get_labels(self) -> List[str]:
    return ["0", "1"]

  def layout(self, path: str, split: str) -> Layout:
    return Layout(text_a=3, text_b=4, label=None if split == "test" else 0, header=True,
                  columns=5)


class MnliProcessor(DataProcessor):
  """MultiNLI (GLUE): header; sentence1 and sentence2 in columns 8 and 9, the label last.

  `mismatched` evaluates and predicts on dev_mismatched.tsv / test_mismatched.tsv instead of the
  matched sets.
  """
  name = "mnli"

  def __init__(self, mismatched: bool = False):
    kind = "mismatched" if mismatched else "matched"
    self.files = {"train": ("train.tsv",), "dev": (f"dev_{kind}.tsv",),
                  "test": (f"test_{kind}.tsv",)}

  def get_labels(self) -> List[str]:
    return list(NLI_LABELS)

  def layout(self, path: str, split: str) -> Layout:
    return Layout(text_a=8, text_b=9, label=None if split == "test" else -1, header=True,
                  min_columns=10)


class XnliProcessor(DataProcessor):
  """XNLI in any language: multinli/multinli.train.LANG.tsv (XNLI-MT) to train, and the rows of
  xnli.dev.tsv / xnli.test.tsv (XNLI-1.0) whose language column is LANG to evaluate and predict.
  """
  name = "xnli"

  def __init__(self, language: str):
    if not re.fullmatch(r"[A-Za-z][\w-]*", language or ""):
      raise ValueError(f"--xnli_language={language!r} is not a language code such as zh or ko.")
    self.language = language
    self.files = {"train": (os.path.join("multinli", f"multinli.train.{language}.tsv"),),
                  "dev": ("xnli.dev.tsv",), "test": ("xnli.test.tsv",)}

  def get_labels(self) -> List[str]:
    return list(NLI_LABELS)

  def layout(self, path: str, split: str) -> Layout:
    if split == "train":  # premise, hypo, label
      return Layout(text_a=0, text_b=1, label=2, header=True, columns=3)
    # language, gold_label, ..., sentence1 (6), sentence2 (7), ...
    return Layout(text_a=6, text_b=7, label=1, header=True, min_columns=8,
                  only=(0, self.language))

  def label_of(self, value: str) -> str:
    return "contradiction" if value == "contradictory" else value  # XNLI-MT's spelling


class NsmcProcessor(DataProcessor):
  """NSMC (Naver movie reviews): ratings_train.txt / ratings_test.txt, header `id document label`.

  NSMC has no dev set; like KcBERT's fine-tuning, the test file is used for validation.
  """
  name = "nsmc"
  files = {"train": ("ratings_train.txt",), "dev": ("ratings_test.txt",),
           "test": ("ratings_test.txt",)}

  def get_labels(self) -> List[str]:
    return ["0", "1"]

  def layout(self, path: str, split: str) -> Layout:
    return Layout(text_a=1, label=2, header=True, expected_header=("id", "document", "label"),
                  columns=3)


@dataclasses.dataclass(frozen=True)
class TableFormat:
  """Where a user's own TSV/CSV keeps its fields: column indexes ("0") or header names."""
  text_a_column: str = "0"
  text_b_column: Optional[str] = None
  label_column: str = "1"
  has_header: bool = False
  label_list: Optional[Sequence[str]] = None  # None: the sorted labels of the training file


# Label-column names a header row is likely to hold (compared in lowercase).
_LABEL_HEADERS = frozenset({"label", "labels", "class", "category", "target", "y", "gold",
                            "gold_label", "sentiment", "polarity", "rating", "score", "라벨",
                            "레이블", "정답"})
_WORD = re.compile(r"[^\W\d]\w*")  # starts with a letter (any script), then letters, digits, _


def _header_like_label(value: str, other_labels: Sequence[str]) -> bool:
  """Whether a first row's label value, found in no other row, is likely a column name: a
  label-column word such as 'label', or any word when every other label is a number."""
  if not _WORD.fullmatch(value.strip()):
    return False
  return value.strip().lower() in _LABEL_HEADERS or not any(
      _WORD.fullmatch(label.strip()) for label in other_labels)


# A label column whose values are nearly all different (more than this many, and at least this
# share of the rows), or mostly at least this many words long, holds text (_check_like_labels).
_MAX_LABELS_ALL_DIFFERENT = 10
_ALL_DIFFERENT_SHARE = 0.9
_TEXT_WORDS = 4


def _label_sort_key(label: str):
  """Numbers in numeric order ("2" before "10"), then other labels alphabetically."""
  try:
    return (0, float(label), label)
  except ValueError:
    return (1, 0.0, label)


class TableProcessor(DataProcessor):
  """Any TSV or CSV: train, dev and test files named train.EXT, dev.EXT and test.EXT.

  The test file may leave out the label column (its examples are then unlabeled). Every row must
  have as many columns as the file's first row.
  """

  def __init__(self, delimiter: str, table: TableFormat):
    self.delimiter = delimiter
    self.table = table
    self.name = "tsv" if delimiter == "\t" else "csv"
    self.files = {split: (f"{split}.{self.name}",) for split in ("train", "dev", "test")}
    self._labels = list(table.label_list) if table.label_list else None
    self._data_dir = None

  def get_labels(self) -> List[str]:
    if self._labels is None:
      if self._data_dir is None:
        raise ValueError(f"The {self.name} task reads its labels from the training file: pass "
                         "--label_list or read the examples first.")
      path = self.find_file(self._data_dir, "train")
      rows = self._rows(path)
      column = self._column(rows[0], self.table.label_column, "label")
      self._check_no_header(rows, column)
      values = [row.fields[column] for row in self._data(rows)]
      self._labels = sorted(set(values), key=_label_sort_key)
      self._check_like_labels(path, rows[0], values)
      logging.info("Labels of %s (sorted; pass --label_list to fix another order): %s", path,
                   self._labels)
    return self._labels

  def examples(self, data_dir: str, split: str) -> List[InputExample]:
    self._data_dir = data_dir
    return super().examples(data_dir, split)

  def _rows(self, path: str) -> List[Row]:
    rows = read_rows(path, self.delimiter)
    if not rows:
      raise ValueError(f"{path} is empty.")
    for row in rows[1:]:
      _check_columns(row, exact=len(rows[0].fields), delimiter=self.delimiter)
    return rows

  def _data(self, rows: List[Row]) -> List[Row]:
    return rows[1:] if self.table.has_header else rows

  def _check_no_header(self, rows: List[Row], label: int) -> None:
    """Without --has_header, refuses a first row that looks like a header (its label is in no
    other row and is a column name, or is outside --label_list), which would become a class."""
    if self.table.has_header or len(rows) < 2:
      return
    value = rows[0].fields[label]
    others = {row.fields[label] for row in rows[1:]}
    if value in others:
      return
    if self.table.label_list is not None:
      header_like = value not in self.table.label_list
    else:
      header_like = _header_like_label(value, sorted(others))
    if header_like:
      shown = sorted(others, key=_label_sort_key)
      raise ValueError(
          f"{rows[0].where} looks like a header: its label {value!r} is in no other row (they "
          f"have {', '.join(map(repr, shown[:5]))}{', ...' if len(shown) > 5 else ''}), so it "
          f"would become a class of its own. Pass --has_header=true (columns may then be "
          "named, e.g. --label_column=label); if it really is an example, list every label in "
          "--label_list.")

  def _check_like_labels(self, path: str, first: Row, values: Sequence[str]) -> None:
    """Refuses a label column that holds text: values nearly all different, or most of them
    several words long. Swapped --text_a_column and --label_column otherwise train a classifier
    with as many classes as rows, and exit 0."""
    distinct = sorted(set(values), key=_label_sort_key)
    all_different = len(distinct) > _MAX_LABELS_ALL_DIFFERENT and (
        len(distinct) >= _ALL_DIFFERENT_SHARE * len(values))
    text = sum(len(value.split()) >= _TEXT_WORDS for value in distinct) > len(distinct) / 2
    if not (all_different or text):
      return
    columns = ", ".join(f"{i}: {quoted(field, 24)}" for i, field in enumerate(first.fields))
    raise ValueError(
        f"{path}: --label_column={self.table.label_column} looks like text, not labels: "
        f"{len(distinct)} different values in {len(values)} rows ({summary(distinct, 3)}). "
        f"Check --label_column and --text_a_column (the first row's columns are {columns}). "
        "If these really are the classes, list them in --label_list.")

  def _column(self, first: Row, spec: str, flag: str, required: bool = True) -> Optional[int]:
    """The index of column `spec` (an index or a header name) given the file's first row."""
    if re.fullmatch(r"\d+", spec):
      index = int(spec)
      if index < len(first.fields):
        return index
      if not required:
        return None
      raise ValueError(f"{first.where}: --{flag}_column={spec}, but the rows have "
                       f"{len(first.fields)} columns (numbered from 0).")
    if not self.table.has_header:
      raise ValueError(f"--{flag}_column={spec!r} is a column name, which needs --has_header "
                       "(or give the column's index, from 0).")
    if spec in first.fields:
      return first.fields.index(spec)
    if not required:
      return None
    raise ValueError(f"{first.where}: the header has no column {spec!r} (it has "
                     f"{summary(first.fields, 10)}); fix --{flag}_column.")

  def read_examples(self, path: str, split: str) -> List[InputExample]:
    rows = self._rows(path)
    text_a = self._column(rows[0], self.table.text_a_column, "text_a")
    text_b = (self._column(rows[0], self.table.text_b_column, "text_b")
              if self.table.text_b_column is not None else None)
    label = self._column(rows[0], self.table.label_column, "label", required=split != "test")
    if label is not None:
      self._check_no_header(rows, label)
    labels = self.get_labels() if label is not None else []
    return [
        InputExample(f"{split}-{row.line}", row.fields[text_a],
                     row.fields[text_b] if text_b is not None else None,
                     _checked_label(row, row.fields[label], labels) if label is not None
                     else None, row.where)
        for row in self._data(rows)]


def get_processor(task_name: str, xnli_language: str = "zh", mnli_mismatched: bool = False,
                  table: Optional[TableFormat] = None) -> DataProcessor:
  """The processor for --task_name (case-insensitive), with its options."""
  name = task_name.lower()
  if name == "cola":
    return ColaProcessor()
  if name == "mrpc":
    return MrpcProcessor()
  if name == "mnli":
    return MnliProcessor(mismatched=mnli_mismatched)
  if name == "xnli":
    return XnliProcessor(xnli_language)
  if name == "nsmc":
    return NsmcProcessor()
  if name in ("tsv", "csv"):
    return TableProcessor("\t" if name == "tsv" else ",", table or TableFormat())
  raise ValueError(f"--task_name={task_name!r} is not a known task; expected one of "
                   f"{', '.join(TASK_NAMES)} (tsv/csv read any file: see --text_a_column).")


# ---------------------------------------------------------------------------------------------
# Features


def convert_single_example(ex_index: int, example: InputExample,
                           label_list: Sequence[str], max_seq_length: int,
                           tokenizer: tokenization.FullTokenizer) -> InputFeatures:
  """The features of one example: [CLS] a [SEP] (b [SEP]), zero-padded to max_seq_length.

  Unlabeled examples get label id 0, as google-research gives its test sets the first label.
  """
  packed = sentence_pairs.pack(tokenizer, example.text_a, example.text_b, max_seq_length)
  label_id = 0
  if example.label is not None:
    if example.label not in label_list:
      raise ValueError(f"{example.where or example.guid}: label {example.label!r} is not one of "
                       f"{list(label_list)}.")
    label_id = list(label_list).index(example.label)
  if ex_index < _LOGGED_EXAMPLES:
    logging.info("Example %s: %s -> label %s (id %d)", example.guid,
                 " ".join(map(tokenization.printable_text, packed.tokens)), example.label,
                 label_id)
  return InputFeatures(packed.input_ids, packed.input_mask, packed.segment_ids, label_id)


def serialize_features(feature: InputFeatures) -> bytes:
  """A tf.train.Example with google-research's feature names."""
  return tf.train.Example(features=tf.train.Features(feature={
      "input_ids": records.int64_feature(feature.input_ids),
      "input_mask": records.int64_feature(feature.input_mask),
      "segment_ids": records.int64_feature(feature.segment_ids),
      "label_ids": records.int64_feature([feature.label_id]),
      "is_real_example": records.int64_feature([int(feature.is_real_example)]),
  })).SerializeToString()


def file_based_convert_examples_to_features(
    examples: Iterable[InputExample], label_list: Sequence[str],
    max_seq_length: int, tokenizer: tokenization.FullTokenizer, output_file: str) -> int:
  """Writes the features of `examples` to a TFRecord file, atomically; returns the count."""
  count = 0
  with io_files.atomic_output(output_file) as temporary:
    with tf.io.TFRecordWriter(temporary) as writer:
      for index, example in enumerate(examples):
        writer.write(serialize_features(
            convert_single_example(index, example, label_list, max_seq_length, tokenizer)))
        count += 1
  return count


def feature_parser(seq_length: int) -> input_pipeline.Parser:
  """Parses batches of the records written above into int32 tensors."""
  return input_pipeline.example_parser(input_pipeline.int_features(dict(
      input_ids=seq_length, input_mask=seq_length, segment_ids=seq_length, label_ids=1,
      is_real_example=1)))


@dataclasses.dataclass
class FeatureFile:
  """A TFRecord file of features, one record per example."""
  path: str
  num_examples: int


def _fingerprint(examples: Sequence[InputExample], label_list: Sequence[str],
                 max_seq_length: int, tokenizer: tokenization.FullTokenizer) -> str:
  digest = hashlib.sha256(json.dumps(
      [FEATURE_FORMAT, list(label_list), max_seq_length,
       tokenizer.basic_tokenizer.do_lower_case]).encode())
  digest.update("\n".join(tokenizer.vocab).encode())
  for example in examples:
    digest.update(json.dumps([example.text_a, example.text_b, example.label],
                             ensure_ascii=False).encode())
  return digest.hexdigest()


def prepare_features(examples: Sequence[InputExample], label_list: Sequence[str],
                     max_seq_length: int, tokenizer: tokenization.FullTokenizer,
                     output_file: str) -> FeatureFile:
  """Writes the features of `examples` to `output_file` once (records.cached_records).

  The metadata OUTPUT_FILE.json records a fingerprint of the examples, labels, vocab, casing and
  length; a later call with the same fingerprint reuses the file (a resumed run must see the
  same records), anything else rewrites it.
  """
  key = dict(format=FEATURE_FORMAT,
             fingerprint=_fingerprint(examples, label_list, max_seq_length, tokenizer))

  def build() -> Dict[str, Any]:
    count = file_based_convert_examples_to_features(examples, label_list, max_seq_length,
                                                    tokenizer, output_file)
    logging.info("Wrote the features of %d examples to %s.", count, output_file)
    return dict(files=[os.path.basename(output_file)], num_examples=count,
                record_counts={os.path.basename(output_file): count})

  metadata = records.cached_records(output_file + ".json", key, build)
  return FeatureFile(output_file, metadata["num_examples"])
