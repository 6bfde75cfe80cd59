"""Packed training data: several examples to a row of max_seq_length, so steps stop computing padding.

Fine-tuning examples are short (15% of a 128-token NSMC row and 9% of a CoLA row hold real
tokens), so a row of max_seq_length holds several of them, each unchanged: its own [CLS] ... [SEP],
position ids from 0, attention only within itself (packed_modeling.py). Training features, as
written for google-research's batches, are packed once into TFRecords of rows
(`prepare_packed`), deterministically for a seed; the training pipeline then reads rows the way it
reads examples (shuffled per epoch, resumed by position), `rows_per_step` of them a step, so that a
step learns from --train_batch_size examples on average with static shapes.

Packed tensor layout (a batch of `rows` rows; L = max_seq_length; E = max_examples_per_row, the
most examples any row of the file holds):
  input_ids, segment_ids  [rows, L]  the examples' tokens one after another, then 0 (padding)
  position_ids            [rows, L]  0, 1, ... restarting at each example's [CLS]; 0 on padding
  example_ids             [rows, L]  1 + the index in its row of the example a position belongs
                                     to; 0 on padding. Position i attends to j iff they are equal.
  example_starts          [rows, E]  the position of each example's [CLS]; 0 in an empty slot
  example_weights         [rows, E]  1.0 for an example, 0.0 for an empty slot (float32)
  per-example features    [rows, E]  the task's own, 0 in empty slots: label_ids (classifier);
                                     start_positions, end_positions (from the example's [CLS],
                                     as unpacked) and unique_ids (SQuAD)
An example is never split across rows: features are packed as written, already truncated to
max_seq_length as google-research truncates them.
"""

import bisect
import dataclasses
import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from bert_tf.data import pipeline, records
from bert_tf.io import files as io_files

PACKED_FORMAT = "bert_tf.packed_rows/1"
POSITION_IDS = "position_ids"
EXAMPLE_IDS = "example_ids"
EXAMPLE_STARTS = "example_starts"
EXAMPLE_WEIGHTS = "example_weights"
TOKEN_FEATURES = ("input_ids", "segment_ids")


def pack_lengths(lengths: Sequence[int], capacity: int, seed: int) -> List[List[int]]:
  """Rows of example indices whose lengths sum to at most `capacity`, in a seeded order.

  Best-fit decreasing: longest first (ties in a seeded shuffle), each into the open row it
  fills most tightly. Over fine-tuning length histograms it leaves a few percent of a row
  empty. The rows are returned shuffled by `seed`, so the file mixes long and short rows.
  """
  rng = np.random.RandomState(seed)
  order = sorted(rng.permutation(len(lengths)).tolist(), key=lambda i: -lengths[i])
  rows: List[List[int]] = []
  open_rows: List[Tuple[int, int]] = []  # (space left, row index), sorted
  for index in order:
    length = int(lengths[index])
    if not 0 < length <= capacity:
      raise ValueError(f"Example {index} has {length} tokens; rows hold 1 to {capacity}.")
    slot = bisect.bisect_left(open_rows, (length, -1))
    if slot == len(open_rows):
      rows.append([index])
      space, row = capacity - length, len(rows) - 1
    else:
      space, row = open_rows.pop(slot)
      rows[row].append(index)
      space -= length
    if space:
      bisect.insort(open_rows, (space, row))
  return [rows[i] for i in rng.permutation(len(rows))]


# How far a packed step's average example count may stray from --train_batch_size (whole rows
# per replica make it a step) before the run is refused.
PACKED_BATCH_TOLERANCE = 1.5


def rows_per_step(train_batch_size: int, num_examples: float, num_rows: float,
                  multiple: int) -> int:
  """Rows a step takes so that it holds about `train_batch_size` examples (rows hold
  num_examples / num_rows on average): a multiple of `multiple` (replicas x micro-batches), at
  least one each."""
  rows = train_batch_size * num_rows / num_examples
  return max(multiple, int(round(rows / multiple)) * multiple)


def check_step_examples(train_batch_size: int, rows: int, examples_per_row: float,
                        multiple: int, seq_length: int) -> None:
  """A ValueError naming the batch to use when `rows` rows of `examples_per_row` examples on
  average make a step far from `train_batch_size` examples (`multiple` replicas x
  micro-batches need a row each)."""
  per_step = rows * examples_per_row
  if not 1 / PACKED_BATCH_TOLERANCE <= per_step / train_batch_size <= PACKED_BATCH_TOLERANCE:
    raise ValueError(
        f"--pack_sequences: rows of {seq_length} tokens hold {examples_per_row:.1f} training "
        f"examples on average, so a step of {rows} row(s) ({multiple} replica(s) x "
        f"micro-batch(es) need a row each) learns from about {per_step:.0f} examples, not "
        f"--train_batch_size={train_batch_size}: raise --train_batch_size to at least "
        f"{round(multiple * examples_per_row)} or pass --pack_sequences=false.")


@dataclasses.dataclass
class PackedFile:
  """A TFRecord file of packed rows and what shapes and step sizes need of it."""
  path: str
  num_rows: int
  num_examples: int
  max_examples_per_row: int
  seq_length: int

  @property
  def examples_per_row(self) -> float:
    return self.num_examples / self.num_rows


def _read_features(file_pattern: str, seq_length: int, example_keys: Sequence[str]
                   ) -> Dict[str, np.ndarray]:
  """Every record of the unpacked feature files, in file order, as arrays; plus "length"."""
  spec = pipeline.int_features({**{key: seq_length for key in (*TOKEN_FEATURES, "input_mask")},
                                **{key: 1 for key in example_keys}})
  dataset = tf.data.TFRecordDataset(pipeline.list_files(file_pattern)).batch(4096).map(
      pipeline.example_parser(spec))
  batches = list(dataset.as_numpy_iterator())
  arrays = {key: np.concatenate([batch[key] for batch in batches]) for key in spec}
  arrays["length"] = arrays.pop("input_mask").sum(axis=1)
  return arrays


def _int_feature(values: np.ndarray) -> tf.train.Feature:
  return records.int64_feature(values.tolist())


def _packed_row(arrays: Dict[str, np.ndarray], members: List[int], seq_length: int,
                max_examples: int, example_keys: Sequence[str]) -> bytes:
  """One row's tf.train.Example in the layout of this module's docstring."""
  row = {key: np.zeros(seq_length, np.int64) for key in (*TOKEN_FEATURES, POSITION_IDS,
                                                          EXAMPLE_IDS)}
  slots = {key: np.zeros(max_examples, np.int64) for key in (*example_keys, EXAMPLE_STARTS,
                                                              EXAMPLE_WEIGHTS)}
  start = 0
  for slot, index in enumerate(members):
    length = int(arrays["length"][index])
    span = slice(start, start + length)
    for key in TOKEN_FEATURES:
      row[key][span] = arrays[key][index, :length]
    row[POSITION_IDS][span] = np.arange(length)
    row[EXAMPLE_IDS][span] = slot + 1
    for key in example_keys:
      slots[key][slot] = arrays[key][index]
    slots[EXAMPLE_STARTS][slot] = start
    slots[EXAMPLE_WEIGHTS][slot] = 1
    start += length
  features = {key: _int_feature(value) for key, value in {**row, **slots}.items()}
  return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def prepare_packed(file_pattern: str, source_metadata: str, seq_length: int,
                   example_keys: Sequence[str], seed: int, output_file: str) -> PackedFile:
  """Packs the unpacked training features of `file_pattern` into `output_file`, once.

  `source_metadata` is the JSON that describes those features (their cache's commit point): the
  packed rows are reused while it, the length, the keys and the seed are unchanged
  (records.cached_records), so a resumed run reads the same rows.
  """
  key = dict(format=PACKED_FORMAT, source_sha256=io_files.file_sha256(source_metadata),
             seq_length=seq_length, example_keys=list(example_keys), seed=seed)

  def build() -> Dict[str, Any]:
    arrays = _read_features(file_pattern, seq_length, example_keys)
    rows = pack_lengths(arrays["length"], seq_length, seed)
    max_examples = max(len(row) for row in rows)
    with io_files.atomic_output(output_file) as temporary:
      with records.TFRecordWriter(temporary) as writer:
        for members in rows:
          writer.write(_packed_row(arrays, members, seq_length, max_examples, example_keys))
    tokens = int(arrays["length"].sum())
    name = os.path.basename(output_file)
    logging.info("Packed %d training examples into %d rows of %d (up to %d a row): the share of "
                 "positions holding a token went from %.2f to %.2f.", len(arrays["length"]),
                 len(rows), seq_length, max_examples, tokens / (len(arrays["length"]) * seq_length),
                 tokens / (len(rows) * seq_length))
    return dict(files=[name], num_rows=len(rows), num_examples=len(arrays["length"]),
                max_examples_per_row=max_examples, num_tokens=tokens,
                record_counts={name: len(rows)})

  metadata = records.cached_records(output_file + ".json", key, build)
  return PackedFile(output_file, metadata["num_rows"], metadata["num_examples"],
                    metadata["max_examples_per_row"], seq_length)


def packed_parser(packed: PackedFile, example_keys: Sequence[str]) -> pipeline.Parser:
  """Parses batches of packed rows into the layout of this module's docstring (int32; the
  weights float32)."""
  lengths = {**{key: packed.seq_length for key in (*TOKEN_FEATURES, POSITION_IDS, EXAMPLE_IDS)},
             **{key: packed.max_examples_per_row
                for key in (*example_keys, EXAMPLE_STARTS, EXAMPLE_WEIGHTS)}}
  # Not pipeline.int_features: a length of 1 must stay a vector of one slot, not a scalar.
  parse = pipeline.example_parser({key: tf.io.FixedLenFeature([length], tf.int64)
                                   for key, length in lengths.items()})

  def parse_rows(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    features = parse(serialized)
    features[EXAMPLE_WEIGHTS] = tf.cast(features[EXAMPLE_WEIGHTS], tf.float32)
    return features
  return parse_rows


def is_packed(features: Dict[str, tf.Tensor]) -> bool:
  """Whether `features` are packed rows (this module's layout) rather than one example a row."""
  return EXAMPLE_IDS in features
