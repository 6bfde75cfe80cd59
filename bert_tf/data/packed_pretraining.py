"""Packed pretraining data: several of create_pretraining_data's instances to a row.

On corpus_ko 40-44% of a pretraining row of 128 is padding (docs/fine-tuning.md), so statically
masked instances are packed the way data/packing.py packs fine-tuning examples: each instance
unchanged ([CLS] A [SEP] B [SEP], position ids from 0, attention only within itself), never
split across rows. Besides data/packing.py's row layout (input_ids, segment_ids, position_ids,
example_ids [rows, L]; example_starts, example_weights [rows, E]) a row holds
  next_sentence_labels    [rows, E]  each instance's label, 0 in empty slots (NSP data only)
  masked_lm_positions     [rows, M]  the instances' masked positions, each shifted by its
                                     instance's offset in the row, one instance after another;
                                     0 after the last
  masked_lm_ids           [rows, M]  their original tokens; 0 after the last
  masked_lm_weights       [rows, M]  1.0 for a prediction, 0.0 after the last (float32)
M = max_predictions_per_row, the most predictions any row of the data holds (a static bound
like E: at most E * max_predictions_per_seq, in practice about masked_lm_prob * L + E). The
instance a prediction belongs to is the example_ids at its position.

Dynamically masked instances are packed without masked_lm_* features; the pipeline masks each
batch of rows (PackedMasker: data/masking.py's masker on every instance of the rows, then the
predictions shifted and gathered as above), and M is then the most predictions any row can get:
the sum of its instances' num_to_predict.

Each input file is packed on its own into one output shard (one file in memory at a time), in
two passes: lengths first, so that E and M are known before any row is written.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from bert_tf.data import masking, packing, pipeline, records
from bert_tf.io import files as io_files

PACKED_FORMAT = "bert_tf.packed_pretraining_rows/1"
MASKED_LM_KEYS = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
NEXT_SENTENCE_LABELS = "next_sentence_labels"


@dataclasses.dataclass
class PackedPretrainingFile(packing.PackedFile):
  """Packed pretraining shards (`path` is their pattern) and their prediction bound M; with
  masked_lm_prob, of dynamically masked instances (rows without masked_lm_* features)."""
  max_predictions_per_row: int = 0
  next_sentence_prediction: bool = True
  masked_lm_prob: Optional[float] = None


def _instance_spec(seq_length: int, max_predictions: int, next_sentence: bool,
                   static: bool) -> Dict[str, tf.io.FixedLenFeature]:
  lengths = dict.fromkeys(("input_ids", "input_mask", "segment_ids"), seq_length)
  if static:
    lengths.update(dict.fromkeys(MASKED_LM_KEYS[:2], max_predictions))
  if next_sentence:
    lengths[NEXT_SENTENCE_LABELS] = 1
  spec = pipeline.int_features(lengths)
  if static:
    spec["masked_lm_weights"] = tf.io.FixedLenFeature([max_predictions], tf.float32)
  return spec


def num_to_predict(lengths: np.ndarray, masked_lm_prob: float,
                   max_predictions_per_seq: int) -> np.ndarray:
  """The predictions dynamic masking gives instances of these lengths (masking's own rule)."""
  return masking.num_to_predict(lengths, masked_lm_prob, max_predictions_per_seq).numpy()


def _read_instances(path: str, spec: Dict[str, tf.io.FixedLenFeature], max_predictions: int,
                    masked_lm_prob: Optional[float]) -> Dict[str, np.ndarray]:
  """Every instance of `path` in file order, as arrays; plus "length" and "predictions" (its
  masked positions, or with masked_lm_prob the most dynamic masking gives it)."""
  dataset = tf.data.TFRecordDataset(path).batch(4096).map(pipeline.example_parser(spec))
  batches = list(dataset.as_numpy_iterator())
  if not batches:
    return {"length": np.zeros(0, np.int64), "predictions": np.zeros(0, np.int64)}
  arrays = {key: np.concatenate([batch[key] for batch in batches]) for key in spec}
  arrays["length"] = arrays["input_mask"].sum(axis=1)
  arrays["predictions"] = (
      (arrays["masked_lm_weights"] > 0).sum(axis=1) if masked_lm_prob is None
      else num_to_predict(arrays["length"], masked_lm_prob, max_predictions))
  return arrays


def _packed_row(arrays: Dict[str, np.ndarray], members: List[int], seq_length: int,
                max_examples: int, max_predictions: int, next_sentence: bool,
                static: bool) -> bytes:
  """One row's tf.train.Example in the layout of this module's docstring."""
  ints = {key: np.zeros(seq_length, np.int64) for key in (*packing.TOKEN_FEATURES,
                                                           packing.POSITION_IDS,
                                                           packing.EXAMPLE_IDS)}
  ints.update({key: np.zeros(max_examples, np.int64)
               for key in (packing.EXAMPLE_STARTS, packing.EXAMPLE_WEIGHTS)})
  if static:
    ints.update({key: np.zeros(max_predictions, np.int64) for key in MASKED_LM_KEYS[:2]})
  if next_sentence:
    ints[NEXT_SENTENCE_LABELS] = np.zeros(max_examples, np.int64)
  weights = np.zeros(max_predictions, np.float32)
  start = predicted = 0
  for slot, index in enumerate(members):
    length = int(arrays["length"][index])
    span = slice(start, start + length)
    for key in packing.TOKEN_FEATURES:
      ints[key][span] = arrays[key][index, :length]
    ints[packing.POSITION_IDS][span] = np.arange(length)
    ints[packing.EXAMPLE_IDS][span] = slot + 1
    ints[packing.EXAMPLE_STARTS][slot] = start
    ints[packing.EXAMPLE_WEIGHTS][slot] = 1
    if next_sentence:
      ints[NEXT_SENTENCE_LABELS][slot] = arrays[NEXT_SENTENCE_LABELS][index]
    if static:
      real = arrays["masked_lm_weights"][index] > 0
      targets = slice(predicted, predicted + int(real.sum()))
      ints["masked_lm_positions"][targets] = arrays["masked_lm_positions"][index][real] + start
      ints["masked_lm_ids"][targets] = arrays["masked_lm_ids"][index][real]
      weights[targets] = arrays["masked_lm_weights"][index][real]
      predicted = targets.stop
    start += length
  features = {key: records.int64_feature(value.tolist()) for key, value in ints.items()}
  if static:
    features["masked_lm_weights"] = tf.train.Feature(
        float_list=tf.train.FloatList(value=weights.tolist()))
  return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def prepare_packed(files: Sequence[str], seq_length: int, max_predictions_per_seq: int,
                   next_sentence: bool, seed: int, output_file: str,
                   masked_lm_prob: Optional[float] = None) -> PackedPretrainingFile:
  """Packs the instances of `files` (statically masked; with masked_lm_prob, unmasked ones
  dynamic masking will mask) into shards of rows beside `output_file`, once: reused while the
  input files (names and sizes), the lengths, the seed and the format are unchanged
  (records.cached_records), so a resumed run reads the same rows; a rebuild gives the same rows
  too (deterministic for a seed)."""
  static = masked_lm_prob is None
  spec = _instance_spec(seq_length, max_predictions_per_seq, next_sentence, static)
  key = dict(format=PACKED_FORMAT, inputs=[[os.path.abspath(f), tf.io.gfile.stat(f).length]
                                           for f in files],
             seq_length=seq_length, max_predictions_per_seq=max_predictions_per_seq,
             next_sentence_prediction=next_sentence, seed=seed, masked_lm_prob=masked_lm_prob)
  names = records.shard_names(os.path.basename(output_file), len(files))

  def build() -> Dict[str, Any]:
    rows_by_file: List[List[List[int]]] = []
    instances = tokens = max_examples = max_predictions = 0
    for index, path in enumerate(files):  # pass 1: lengths and prediction counts
      arrays = _read_instances(path, spec, max_predictions_per_seq, masked_lm_prob)
      rows = packing.pack_lengths(arrays["length"], seq_length, seed + index)
      rows_by_file.append(rows)
      instances += len(arrays["length"])
      tokens += int(arrays["length"].sum())
      max_examples = max([max_examples, *(len(row) for row in rows)])
      max_predictions = max([max_predictions,
                             *(int(arrays["predictions"][row].sum()) for row in rows)])
    directory = os.path.dirname(output_file)
    for path, name, rows in zip(files, names, rows_by_file):  # pass 2: the rows
      arrays = _read_instances(path, spec, max_predictions_per_seq, masked_lm_prob)
      with io_files.atomic_output(os.path.join(directory, name)) as temporary:
        with records.TFRecordWriter(temporary) as writer:
          for members in rows:
            writer.write(_packed_row(arrays, members, seq_length, max_examples, max_predictions,
                                     next_sentence, static))
    num_rows = sum(len(rows) for rows in rows_by_file)
    logging.info("Packed %d pretraining instances into %d rows of %d (up to %d instances and %d "
                 "predictions a row): the share of positions holding a token went from %.3f to "
                 "%.3f.", instances, num_rows, seq_length, max_examples, max_predictions,
                 tokens / max(1, instances * seq_length), tokens / max(1, num_rows * seq_length))
    return dict(files=names, num_rows=num_rows, num_examples=instances,
                max_examples_per_row=max_examples, max_predictions_per_row=max_predictions,
                num_tokens=tokens,
                record_counts={name: len(rows) for name, rows in zip(names, rows_by_file)})

  metadata = records.cached_records(output_file + ".json", key, build)
  if not metadata["num_rows"]:
    raise ValueError(f"{', '.join(files)} hold no pretraining instance to pack.")
  return PackedPretrainingFile(
      records.shard_pattern(output_file, len(files)), metadata["num_rows"],
      metadata["num_examples"], metadata["max_examples_per_row"], seq_length,
      max_predictions_per_row=metadata["max_predictions_per_row"],
      next_sentence_prediction=next_sentence, masked_lm_prob=masked_lm_prob)


def packed_parser(packed: PackedPretrainingFile) -> pipeline.Parser:
  """Parses batches of packed pretraining rows into this module's layout (int32; the weights
  float32)."""
  lengths = {**{key: packed.seq_length for key in (*packing.TOKEN_FEATURES, packing.POSITION_IDS,
                                                   packing.EXAMPLE_IDS)},
             **{key: packed.max_examples_per_row
                for key in (packing.EXAMPLE_STARTS, packing.EXAMPLE_WEIGHTS)},
             }
  static = packed.masked_lm_prob is None
  if static:
    lengths.update(dict.fromkeys(MASKED_LM_KEYS[:2], packed.max_predictions_per_row))
  if packed.next_sentence_prediction:
    lengths[NEXT_SENTENCE_LABELS] = packed.max_examples_per_row
  # Vectors even of length 1 (not pipeline.int_features, which makes those scalars).
  spec = {key: tf.io.FixedLenFeature([length], tf.int64) for key, length in lengths.items()}
  if static:
    spec["masked_lm_weights"] = tf.io.FixedLenFeature([packed.max_predictions_per_row],
                                                      tf.float32)
  parse = pipeline.example_parser(spec)

  def parse_rows(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    features = parse(serialized)
    features[packing.EXAMPLE_WEIGHTS] = tf.cast(features[packing.EXAMPLE_WEIGHTS], tf.float32)
    return features
  return parse_rows


class PackedMasker:
  """Masks batches of packed rows of unmasked instances, each instance as `masker` masks one
  unpacked (its own num_to_predict, candidates, words and 80/10/10), then its predictions shifted
  by its offset and the row's gathered into max_predictions_per_row slots. The same rows and
  seed give the same masks (masking.mask_dataset seeds batch k from (seed, stream, k))."""

  def __init__(self, masker: masking.DynamicMasker, max_predictions_per_row: int):
    self.masker = masker
    self.max_predictions_per_row = max_predictions_per_row

  def __call__(self, features: Dict[str, tf.Tensor], seed: tf.Tensor) -> Dict[str, tf.Tensor]:
    ids, example_ids = features["input_ids"], features[packing.EXAMPLE_IDS]
    starts = features[packing.EXAMPLE_STARTS]
    rows, width = tf.shape(ids)[0], ids.shape[-1]
    slots = starts.shape[-1]
    columns = tf.range(width, dtype=ids.dtype)
    # Each slot's instance as an unpacked row [rows, E, L]: its tokens from its start, padded.
    lengths = tf.reduce_sum(tf.cast(tf.equal(
        example_ids[:, None, :], tf.range(1, slots + 1, dtype=ids.dtype)[None, :, None]),
        ids.dtype), axis=-1)
    inside = columns[None, None, :] < lengths[:, :, None]
    sources = tf.minimum(starts[:, :, None] + columns[None, None, :], width - 1)

    def unpacked(name):
      values = tf.gather(features[name], tf.reshape(sources, [rows, -1]), batch_dims=1)
      return tf.reshape(tf.where(inside, tf.reshape(values, [rows, slots, width]), 0),
                        [-1, width])
    masked = self.masker(dict(input_ids=unpacked("input_ids"),
                              input_mask=tf.reshape(tf.cast(inside, ids.dtype), [-1, width]),
                              segment_ids=unpacked("segment_ids")), seed)
    # Back into the rows: position j of slot s is column j - start(s) of its instance.
    slot = tf.maximum(example_ids - 1, 0)
    offset = tf.maximum(columns[None, :] - tf.gather(starts, slot, batch_dims=1), 0)
    new_ids = tf.gather_nd(tf.reshape(masked["input_ids"], [rows, slots, width]),
                           tf.stack([slot, offset], axis=-1), batch_dims=1)
    # The predictions, shifted, real ones first in slot order, cut to the row's bound.
    per_row = slots * self.masker.max_predictions_per_seq
    positions = tf.reshape(tf.reshape(masked["masked_lm_positions"], [rows, slots, -1])
                           + starts[:, :, None], [rows, per_row])
    weights = tf.reshape(masked["masked_lm_weights"], [rows, per_row])
    order = tf.argsort(tf.where(weights > 0, 0, 1), axis=1, stable=True)[
        :, :self.max_predictions_per_row]
    weights = tf.gather(weights, order, batch_dims=1)
    real = weights > 0
    return {**features, "input_ids": tf.where(example_ids > 0, new_ids, ids),
            "masked_lm_positions": tf.where(real, tf.gather(positions, order, batch_dims=1), 0),
            "masked_lm_ids": tf.where(real, tf.gather(tf.reshape(
                masked["masked_lm_ids"], [rows, per_row]), order, batch_dims=1), 0),
            "masked_lm_weights": weights}
