"""Masked-LM / next-sentence pretraining TFRecords from raw text, at corpus scale.

Usage: python -m bert_tf.create_pretraining_data --input_file=corpus*.txt \
  --output_file=out/pretrain.tfrecord --vocab_file=vocab.txt --num_output_shards=64

Input and output follow google-research/bert's create_pretraining_data.py: one sentence a line,
a blank line between documents (a new file also starts a new document); the same flags; the
same instance semantics (short_seq_prob target lengths, random a_end split, 50% random next
segment with the unused segments put back, truncation from a random end of the longer side,
num_to_predict = min(max_predictions_per_seq, max(1, round(len * masked_lm_prob))), 80% [MASK]
/ 10% original / 10% random token, optional whole-word masking, next_sentence_labels 1 = random)
and the same tf.Example features (masked_lm_weights float).

What differs, for scale: documents are read as a stream and cut into windows of
--documents_per_shard documents (fewer when --num_output_shards makes smaller shards), so memory
is bounded by the window, not the corpus; a document longer than MAX_DOCUMENT_LINES lines (a text
without blank lines is one document) is cut into pieces of that many, so the window stays
bounded whatever the input's shape. The random next segment is drawn from a document of the same
window (google-research draws from the whole corpus), and instances are shuffled within each
window and dupe pass (google-research shuffles all of them). So that every shard is a sample of
the whole corpus, not one stretch of it, a window's instances are dealt round-robin over all the
shards: window i emits blocks of (shard, sort key, record), record j going to shard
(j + i) mod num_shards with a key that is a seeded hash of (i, j) (sort_keys); each shard is
written once, atomically, with all of its records sorted by key: a seeded shuffle of the shard,
a function of the seed and the flags only. Moving the blocks to their shards is a shuffle: Beam's
GroupByKey on the Beam path (bert_tf.beam_pipelines); locally, each window writes its blocks to
a part file, one sequential pass appends them to one spool file per shard (files held open), and
each shard is sorted from its spool, so the file operations grow as windows + shards, not as
their product. The part and spool files live in OUTPUT_FILE.progress/scratch, or for a gs://
output on local disk ($TMPDIR), so that only finished shards go to the bucket. Windows are made
by --num_workers processes; window i uses its own random generator seeded from (random_seed, i),
so the output depends on the seed and the flags, not on the number of workers or the runner.
Shards are recorded in OUTPUT_FILE.progress/ as they are finished, so a rerun skips them (and
the windows whose part files remain). The metadata lists each shard's record count
("record_counts"), which lets a resumed training run skip whole files without reading them
(bert_tf.data.pipeline). For speed, the instances of a window and dupe pass are masked together
with NumPy (its own generator, seeded the same way) and encoded straight to the tf.Example wire
format, not through protobuf objects. With --runner (e.g. DataflowRunner; Beam's options after
`--`), Apache Beam pipelines run these same steps and write the same shards and metadata.

Two options go beyond google-research (both recorded in the metadata, which run_pretraining
reads): --masking=dynamic writes the instances unmasked (input_ids, input_mask, segment_ids and
next_sentence_labels, no masked_lm_* features), and training masks every batch afresh with the
same semantics (bert_tf.data.masking), so each epoch sees new masks; --dupe_factor then only
repeats the documents with other cuts and other random next segments, and 1 is enough.
--next_sentence_prediction=false makes masked-LM-only instances without next_sentence_labels:
whole consecutive sentences of one document packed up to the target length in one segment
(RoBERTa's DOC-SENTENCES; InstanceMaker.full_sentences), and run_pretraining trains the
masked LM alone.
"""

import collections
import concurrent.futures
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import struct
import tempfile
from typing import IO, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from absl import app, flags, logging

from bert_tf import beam_flags, clean_text, io_utils, script_errors, tokenization
from bert_tf.data import records

gfile = io_utils.gfile  # tf.io.gfile's functions; TensorFlow only for gs:// paths

Document = List[List[int]]  # segments (sentences) of token ids
MASKING_MODES = ("static", "dynamic")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """google-research's flags plus the sharding ones."""
  input_file: str
  output_file: str
  vocab_file: str
  do_lower_case: bool
  do_whole_word_mask: bool = False
  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  random_seed: int = 12345
  dupe_factor: int = 10
  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1
  num_output_shards: Optional[int] = None
  documents_per_shard: int = 2000
  clean: str = "none"
  masking: str = "static"  # or "dynamic": unmasked records, masked in training (data.masking)
  next_sentence_prediction: bool = True  # False: one-segment full-sentence instances, MLM only

  def check(self) -> None:
    """Fails early on values that would break or silently corrupt the output."""
    if "," in self.output_file:
      raise ValueError(f"--output_file={self.output_file} is a list; give one path: the shards "
                       "are named OUTPUT_FILE-00000-of-000NN (--num_output_shards).")
    if self.max_seq_length < 5:
      raise ValueError(f"--max_seq_length={self.max_seq_length} leaves no room for two segments "
                       "besides [CLS] [SEP] [SEP]; use at least 5 (128 is google-research's).")
    if not 0 < self.masked_lm_prob < 1 or not 0 <= self.short_seq_prob <= 1:
      raise ValueError(f"--masked_lm_prob={self.masked_lm_prob} must be in (0, 1) and "
                       f"--short_seq_prob={self.short_seq_prob} in [0, 1].")
    if self.max_predictions_per_seq < 1 or self.dupe_factor < 1 or self.documents_per_shard < 1:
      raise ValueError("--max_predictions_per_seq, --dupe_factor and --documents_per_shard must "
                       "be at least 1.")
    if self.num_output_shards is not None and self.num_output_shards < 1:
      raise ValueError(f"--num_output_shards={self.num_output_shards} must be at least 1.")
    if self.clean not in ("none", *clean_text.RECIPES):
      raise ValueError(f"--clean={self.clean}: use none or one of {clean_text.RECIPES}.")
    if self.masking not in MASKING_MODES:
      raise ValueError(f"--masking={self.masking}: use one of {', '.join(MASKING_MODES)}.")


def _varint(value: int) -> bytes:
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _below(n: int, rng: random.Random) -> int:
  """A uniform integer in [0, n): rng.randint's job at a third of its cost (53-bit float draw)."""
  return int(rng.random() * n)


@dataclasses.dataclass
class MaskedBatch:
  """Instances of one window and dupe pass, padded into arrays (one row an instance); masked,
  or unmasked (positions, labels and num_masked None) for dynamic masking."""
  input_ids: np.ndarray  # [n, max_seq_length], 0 after each length
  lengths: np.ndarray  # [n]
  num_a: np.ndarray  # [n]: [CLS], segment A and its [SEP] (segment_ids 0); all of it for one
  positions: Optional[np.ndarray]  # [n, max_predictions_per_seq], sorted, 0 after num_masked
  labels: Optional[np.ndarray]  # [n, max_predictions_per_seq]: original ids, 0 after num_masked
  num_masked: Optional[np.ndarray]  # [n]
  is_random_next: np.ndarray  # [n]


MAX_VOCAB_SIZE = 1 << 21  # ids of up to 3 varint bytes


def varint_rows(values: np.ndarray) -> Tuple[bytes, List[int]]:
  """The protobuf varints of each row of `values` (ints in [0, 2**21)), concatenated, and the
  byte offset where each row starts (plus the end)."""
  if values.max(initial=0) < 1 << 7:  # one byte each (positions, small vocabs)
    return values.astype(np.uint8).tobytes(), list(range(0, values.size + 1, values.shape[1]))
  sizes = 1 + (values >= 1 << 7) + (values >= 1 << 14)
  parts = np.stack([(values & 0x7F) | (values >= 1 << 7) << 7,
                    (values >> 7 & 0x7F) | (values >= 1 << 14) << 7,
                    values >> 14], axis=-1).astype(np.uint8)
  data = parts[np.arange(3) < sizes[..., None]].tobytes()
  return data, [0, *np.cumsum(sizes.sum(axis=1)).tolist()]


class ExampleEncoder:
  """Encodes google-research's pretraining tf.Example straight to its wire format.

  Features hold packed Int64List/FloatList values; the id fields of a whole batch are
  varint-encoded at once with NumPy, and the fields that depend only on the lengths (input_mask,
  segment_ids, masked_lm_weights, next_sentence_labels) are encoded once and reused. Unmasked
  batches (dynamic masking) get no masked_lm_* features; without next_sentence_prediction there
  is no next_sentence_labels.
  """

  _INTS, _FLOATS = 0x1a, 0x12  # tags of Feature.int64_list and Feature.float_list

  def __init__(self, vocab_size: int, max_seq_length: int, max_predictions_per_seq: int,
               next_sentence_prediction: bool = True):
    if vocab_size > MAX_VOCAB_SIZE:
      raise ValueError(f"The vocab has {vocab_size} tokens; at most {MAX_VOCAB_SIZE} are "
                       "supported.")
    # Every length in a record: at most 3 bytes an id, 4 a weight, plus the names and headers.
    self.varints = [_varint(i) for i in range(8 * max_seq_length + 16 * max_predictions_per_seq
                                              + 256)]
    self.max_seq_length = max_seq_length
    self._prefixes: Dict[Tuple[bytes, int], bytes] = {}
    self._masks = [self._entry(b"input_mask", self._INTS,
                               b"\1" * n + b"\0" * (max_seq_length - n))
                   for n in range(max_seq_length + 1)]
    one, zero = struct.pack("<f", 1.0), struct.pack("<f", 0.0)
    self._weights = [self._entry(b"masked_lm_weights", self._FLOATS,
                                 one * n + zero * (max_predictions_per_seq - n))
                     for n in range(max_predictions_per_seq + 1)]
    self._labels = [self._entry(b"next_sentence_labels", self._INTS, bytes([label]))
                    if next_sentence_prediction else b"" for label in (0, 1)]
    self._segments: Dict[Tuple[int, int], bytes] = {}

  def _entry(self, name: bytes, kind: int, packed: bytes) -> bytes:
    """One map entry of Features: the key, then a Feature holding the packed values."""
    return self._entry_prefix(name, kind, len(packed)) + packed

  def _entry_prefix(self, name: bytes, kind: int, size: int) -> bytes:
    """What precedes `size` bytes of packed values in their Features entry (cached)."""
    key = (name, size)
    prefix = self._prefixes.get(key)
    if prefix is None:
      v = self.varints
      values = 1 + len(v[size]) + size
      feature = 1 + len(v[values]) + values
      entry = 1 + len(v[len(name)]) + len(name) + 1 + len(v[feature]) + feature
      prefix = self._prefixes[key] = (b"\x0a" + v[entry] + b"\x0a" + v[len(name)] + name +
                                      b"\x12" + v[feature] + bytes([kind]) + v[values] +
                                      b"\x0a" + v[size])
    return prefix

  def _segment_entry(self, num_a: int, length: int) -> bytes:
    key = (num_a, length)
    entry = self._segments.get(key)
    if entry is None:
      packed = b"\0" * num_a + b"\1" * (length - num_a) + b"\0" * (self.max_seq_length - length)
      entry = self._segments[key] = self._entry(b"segment_ids", self._INTS, packed)
    return entry

  def encode_batch(self, batch: MaskedBatch) -> List[bytes]:
    """One serialized tf.Example per row of `batch`."""
    ids, id_at = varint_rows(batch.input_ids)
    count = len(batch.lengths)
    if batch.positions is None:  # unmasked: the masked_lm_* entries are empty
      positions = labels = b""
      position_at = label_at = [0] * (count + 1)
      positions_prefixes = labels_prefixes = [b""] * count
      weights, num_masked = [b""], [0] * count
    else:
      positions, position_at = varint_rows(batch.positions)
      labels, label_at = varint_rows(batch.labels)
      positions_prefixes = self._prefixes_of(b"masked_lm_positions", position_at)
      labels_prefixes = self._prefixes_of(b"masked_lm_ids", label_at)
      weights, num_masked = self._weights, batch.num_masked.tolist()
    v, records = self.varints, []
    rows = zip(self._prefixes_of(b"input_ids", id_at), positions_prefixes, labels_prefixes,
               batch.lengths.tolist(), batch.num_a.tolist(), num_masked,
               batch.is_random_next.tolist())
    for i, (ids_prefix, positions_prefix, labels_prefix, length, num_a, masked,
            is_random_next) in enumerate(rows):
      features = b"".join((
          ids_prefix, ids[id_at[i]:id_at[i + 1]],
          self._masks[length],
          self._segment_entry(num_a, length),
          positions_prefix, positions[position_at[i]:position_at[i + 1]],
          labels_prefix, labels[label_at[i]:label_at[i + 1]],
          weights[masked],
          self._labels[is_random_next]))
      records.append(b"\x0a" + v[len(features)] + features)
    return records

  def _prefixes_of(self, name: bytes, offsets: List[int]) -> List[bytes]:
    """The entry prefix of each row of an int64 field, given the rows' byte offsets."""
    sizes = [end - begin for begin, end in zip(offsets, offsets[1:])]
    prefix = {size: self._entry_prefix(name, self._INTS, size) for size in set(sizes)}
    return [prefix[size] for size in sizes]


def truncate_pair(tokens_a: List[int], tokens_b: List[int], max_num_tokens: int,
                  rng: random.Random) -> Tuple[List[int], List[int]]:
  """The pair cut to fit as google-research's loop cuts it: a token at a time from the longer
  segment (B on ties), from its front or back with even odds; here the counts come in one go."""
  excess = len(tokens_a) + len(tokens_b) - max_num_tokens
  if excess <= 0:
    return tokens_a, tokens_b
  gap = min(excess, abs(len(tokens_a) - len(tokens_b)))
  cut_a = (excess - gap) // 2 + (gap if len(tokens_a) > len(tokens_b) else 0)
  return _cut_ends(tokens_a, cut_a, rng), _cut_ends(tokens_b, excess - cut_a, rng)


def _cut_ends(tokens: List[int], count: int, rng: random.Random) -> List[int]:
  """`tokens` less `count` tokens, each taken from the front or the back with even odds."""
  front = sum(rng.random() < 0.5 for _ in range(count))
  return tokens[front:len(tokens) - (count - front)]


class InstanceMaker:
  """google-research's instance and masking semantics, on token ids."""

  def __init__(self, config: DataConfig, vocab: Dict[str, int]):
    self.config = config
    self.cls_id, self.sep_id, self.mask_id = vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"]
    self.vocab_size = len(vocab)
    self.is_subword = [False] * self.vocab_size
    for token, index in vocab.items():
      self.is_subword[index] = token.startswith("##")
    self.num_to_predict = [
        min(config.max_predictions_per_seq, max(1, int(round(n * config.masked_lm_prob))))
        for n in range(config.max_seq_length + 1)]
    self.stats: Dict[str, int] = collections.Counter()

  def from_document(self, documents: List[Document], index: int, rng: random.Random
                    ) -> List[Tuple[List[int], int, bool]]:
    """(tokens, num_a, is_random_next) pairs from one document, as google-research makes them."""
    document = documents[index]
    max_num_tokens = self.config.max_seq_length - 3
    target_length = max_num_tokens
    if rng.random() < self.config.short_seq_prob:
      target_length = 2 + _below(max_num_tokens - 1, rng)
    instances = []
    lengths = [len(segment) for segment in document]
    last = len(document) - 1
    start = chunk_length = i = 0  # the chunk is document[start:i + 1]
    while i <= last:
      chunk_length += lengths[i]
      if i == last or chunk_length >= target_length:
        size = i + 1 - start
        a_end = start + (1 + _below(size - 1, rng) if size >= 2 else 1)
        tokens_a = list(itertools.chain.from_iterable(document[start:a_end]))
        tokens_b: List[int] = []
        is_random_next = size == 1 or rng.random() < 0.5
        if is_random_next:
          target_b_length = target_length - len(tokens_a)
          other = index
          for _ in range(10):
            other = _below(len(documents), rng)
            if other != index:
              break
          random_document = documents[other]
          # Indices, not a slice: a slice copies the rest of the document every time.
          for j in range(_below(len(random_document), rng), len(random_document)):
            tokens_b.extend(random_document[j])
            if len(tokens_b) >= target_b_length:
              break
          i = a_end - 1  # put the unused segments back
        else:
          tokens_b = list(itertools.chain.from_iterable(document[a_end:i + 1]))
        tokens_a, tokens_b = truncate_pair(tokens_a, tokens_b, max_num_tokens, rng)
        tokens = [self.cls_id, *tokens_a, self.sep_id, *tokens_b, self.sep_id]
        instances.append((tokens, len(tokens_a) + 2, is_random_next))
        start, chunk_length = i + 1, 0
      i += 1
    return instances

  def full_sentences(self, document: Document, rng: random.Random
                     ) -> List[Tuple[List[int], int, bool]]:
    """Masked-LM-only instances (--next_sentence_prediction=false) from one document: RoBERTa's
    DOC-SENTENCES, [CLS] whole sentences [SEP] in one segment.

    Consecutive sentences of the document are packed while they fit in the target length
    (max_seq_length - 2, or with short_seq_prob a shorter one drawn as google-research draws
    it); an instance never crosses a document boundary, so it needs no separator inside and a
    window's instances do not depend on the order of its documents. A sentence longer than
    max_seq_length - 2 is cut from random ends, as google-research cuts pairs.
    """
    max_num_tokens = self.config.max_seq_length - 2
    target_length = max_num_tokens
    if rng.random() < self.config.short_seq_prob:
      target_length = 2 + _below(max_num_tokens - 1, rng)
    instances = []
    chunk: List[int] = []
    for segment in [*document, None]:
      if chunk and (segment is None or len(chunk) + len(segment) > target_length):
        tokens, _ = truncate_pair(chunk, [], max_num_tokens, rng)
        instances.append(([self.cls_id, *tokens, self.sep_id], len(tokens) + 2, False))
        chunk = []
      if segment is not None:
        chunk.extend(segment)
    return instances

  def instances(self, documents: List[Document], index: int, rng: random.Random
                ) -> List[Tuple[List[int], int, bool]]:
    """The instances of document `index`: sentence pairs with next-sentence labels, or full
    sentences without (config.next_sentence_prediction)."""
    if self.config.next_sentence_prediction:
      return self.from_document(documents, index, rng)
    return self.full_sentences(documents[index], rng)

  def pad_batch(self, instances: List[Tuple[List[int], int, bool]]) -> MaskedBatch:
    """(tokens, num_a, is_random_next) instances, unmasked, padded into arrays."""
    width = self.config.max_seq_length
    lengths = np.array([len(tokens) for tokens, _, _ in instances])
    ids = np.zeros((len(instances), width), np.int64)
    ids[np.arange(width) < lengths[:, None]] = np.fromiter(
        itertools.chain.from_iterable(tokens for tokens, _, _ in instances), np.int64,
        int(lengths.sum()))
    return MaskedBatch(ids, lengths, np.array([a for _, a, _ in instances]), None, None, None,
                       np.array([random_next for _, _, random_next in instances], np.int64))

  def mask_batch(self, instances: List[Tuple[List[int], int, bool]], rng: random.Random,
                 np_rng: np.random.Generator) -> MaskedBatch:
    """google-research's masking of (tokens, num_a, is_random_next) instances, all at once.

    Candidates are all tokens but [CLS] and the two [SEP]s (the first [SEP] is at num_a - 1;
    with one segment, num_a is the length); num_to_predict of them are chosen (a uniform random
    subset, or whole words), then 80% become [MASK], 10% stay and 10% become a random token.
    data.masking draws the same masks in the training pipeline (dynamic masking).
    """
    config = self.config
    width, most = config.max_seq_length, config.max_predictions_per_seq
    batch = self.pad_batch(instances)
    ids, lengths, num_a = batch.input_ids, batch.lengths, batch.num_a
    columns = np.arange(width)
    candidates = (columns >= 1) & (columns < lengths[:, None] - 1) & (columns != num_a[:, None] - 1)
    if config.do_whole_word_mask:
      chosen = np.full((len(instances), most), width)
      for row, (tokens, a, _) in enumerate(instances):
        words = self._whole_words(tokens, [*range(1, a - 1), *range(a, len(tokens) - 1)], rng,
                                  self.num_to_predict[len(tokens)])
        chosen[row, :len(words)] = words
      num_masked = (chosen < width).sum(axis=1)
    else:  # single-token words: google-research's loop reduces to a uniform random subset
      num_masked = np.minimum(np.array(self.num_to_predict)[lengths], candidates.sum(axis=1))
      keys = np.where(candidates, np_rng.random(ids.shape), 2.0)
      chosen = np.full((len(instances), most), width)
      shown = min(most, width)
      chosen[:, :shown] = np.argsort(keys, axis=1)[:, :shown]
      chosen[np.arange(most) >= num_masked[:, None]] = width
    positions = np.sort(chosen, axis=1)
    masked = positions < width
    positions[~masked] = 0
    labels = np.where(masked, np.take_along_axis(ids, positions, axis=1), 0)
    draws = np_rng.random(positions.shape)
    random_ids = np_rng.integers(0, self.vocab_size, positions.shape)
    replaced = np.where(draws < 0.8, self.mask_id, np.where(draws < 0.9, labels, random_ids))
    rows = np.nonzero(masked)[0]
    ids[rows, positions[masked]] = replaced[masked]
    stats = self.stats
    stats["masked_as_mask"] += int((masked & (draws < 0.8)).sum())
    stats["masked_kept"] += int((masked & (draws >= 0.8) & (draws < 0.9)).sum())
    stats["masked_random"] += int((masked & (draws >= 0.9)).sum())
    return dataclasses.replace(batch, positions=positions, labels=labels, num_masked=num_masked)

  def _whole_words(self, tokens: List[int], candidates: List[int], rng: random.Random,
                   num_to_predict: int) -> List[int]:
    """google-research's whole-word selection: shuffled words, skipping any that would overflow."""
    words: List[List[int]] = []
    for i in candidates:
      if words and self.is_subword[tokens[i]] and words[-1][-1] == i - 1:
        words[-1].append(i)
      else:
        words.append([i])
    rng.shuffle(words)
    chosen: List[int] = []
    for word in words:
      if len(chosen) >= num_to_predict:
        break
      if len(chosen) + len(word) <= num_to_predict:
        chosen.extend(word)
    return chosen


def _open_text(path: str) -> IO[str]:
  """Local files through Python's own reader (much faster line by line), others through gfile."""
  if "://" in path:
    return gfile.GFile(path, "r")
  return open(path, encoding="utf-8")  # pylint: disable=consider-using-with


# Longer documents are cut into pieces of this many lines. A window holds --documents_per_shard
# documents and draws random next segments from all of them, so this bounds its memory and work
# whatever the input's shape (a corpus without blank lines is one document); google-research's
# chunks of a long document are cut only where a piece ends, one chunk in about 16.
MAX_DOCUMENT_LINES = 64


def read_documents(files: Sequence[str], clean: str = "none",
                   shape: Optional[Dict[str, int]] = None) -> Iterator[List[str]]:
  """Documents (lists of non-blank lines) from text files, streamed; blank lines end documents,
  and a document longer than MAX_DOCUMENT_LINES lines comes as pieces of that many.

  `shape`, when given and the documents all read, gains "lines", "document_breaks" (documents a
  blank line ended), "documents_cut" and "pieces" (the long documents and the pieces they gave).
  """
  lines_read = breaks = cut = pieces = 0
  for path in files:
    lines: List[str] = []
    parts = 0  # pieces of the current document already given
    try:
      with _open_text(path) as f:
        for line in f:
          line = line.strip()
          if line and clean != "none":
            line = clean_text.clean_line_kcbert(line) or ""
          if line:
            if len(lines) == MAX_DOCUMENT_LINES:
              yield lines
              lines, parts = [], parts + 1
            lines.append(line)
            lines_read += 1
          elif lines:
            breaks += 1
            cut, pieces = cut + (parts > 0), pieces + (parts + 1 if parts else 0)
            yield lines
            lines, parts = [], 0
    except UnicodeDecodeError:
      raise io_utils.utf8_error(path) from None
    if lines:
      cut, pieces = cut + (parts > 0), pieces + (parts + 1 if parts else 0)
      yield lines
  if shape is not None:
    for name, value in (("lines", lines_read), ("document_breaks", breaks),
                        ("documents_cut", cut), ("pieces", pieces)):
      shape[name] = shape.get(name, 0) + value


def corpus_shape(files: Sequence[str], clean: str = "none") -> Dict[str, int]:
  """The count pass: "documents" (pieces included) and read_documents' shape counts."""
  shape: Dict[str, int] = {}
  shape["documents"] = sum(1 for _ in read_documents(files, clean, shape))
  return shape


def _progress_dir(output_file: str) -> str:
  return output_file + ".progress"


def _metadata_path(output_file: str) -> str:
  return output_file + ".metadata.json"


# State shared with worker processes (set before forking, so workers inherit it).
_WORKER: Dict[str, Any] = {}

# A block: records of one window and dupe pass bound for one shard, with their sort keys. The
# header holds the shard, the record count and the bytes of their TFRecord frames; then come the
# keys (uint64), the frames' lengths (uint32) and the frames. Windows emit blocks; a shard is
# written from all of its blocks in key order, whatever order they arrive in (_write_shard).
_BLOCK_HEADER = struct.Struct("<IIQ")
_READ_BYTES = 1 << 22


def _splitmix64(z: np.ndarray) -> np.ndarray:
  """splitmix64's finalizer on uint64s: a bijection that scatters consecutive numbers."""
  z = z + np.uint64(0x9E3779B97F4A7C15)
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return z ^ (z >> np.uint64(31))


def sort_keys(seed: int, window: int, first: int, count: int) -> np.ndarray:
  """The sort keys of records first, ..., first + count - 1 of `window`: pseudo-random, distinct
  (a bijection of (window, record)), a function of the seed and the record alone, so that any
  worker computes them and a shard's order does not depend on the runner."""
  numbers = (np.uint64(window) << np.uint64(32)) + np.arange(first, first + count, dtype=np.uint64)
  return _splitmix64(numbers ^ _splitmix64(np.array([seed % (1 << 64)], np.uint64)))


def _block(shard: int, keys: np.ndarray, frames: Sequence[bytes]) -> bytes:
  lengths = np.fromiter(map(len, frames), np.uint32, len(frames))
  return b"".join((_BLOCK_HEADER.pack(shard, len(frames), int(lengths.sum())),
                   keys.astype("<u8").tobytes(), lengths.astype("<u4").tobytes(), *frames))


def window_blocks(index: int, raw_documents: List[List[str]], counts: Dict[str, int]
                  ) -> Iterator[Tuple[int, bytes]]:
  """Tokenizes window `index`, makes its instances and yields them as (shard, block), a dupe
  pass at a time; `counts` gets the window's counts once all are yielded.

  Record j of the window (counted over its dupe passes) goes to shard (j + index) mod
  num_shards, so every shard gets a share of every window.
  """
  config: DataConfig = _WORKER["config"]
  tokenizer: tokenization.FullTokenizer = _WORKER["tokenizer"]
  num_shards, encoder = _WORKER["num_shards"], _WORKER["encoder"]
  maker = copy.copy(_WORKER["maker"])  # its tables shared, its counts its own (Beam's threads)
  maker.stats = collections.Counter()
  documents: List[Document] = []
  for lines in raw_documents:
    segments = [tokenizer.tokenize_to_ids(line) for line in lines]
    segments = [s for s in segments if s]
    if segments:
      documents.append(segments)
  rng = random.Random(config.random_seed * 1000003 + index)
  np_rng = np.random.default_rng([config.random_seed, index])
  stats = maker.stats
  stats["documents"] = len(documents)
  stats["sentences"] = sum(len(document) for document in documents)
  for _ in range(config.dupe_factor if documents else 0):
    instances = []
    for document_index in range(len(documents)):
      instances.extend(maker.instances(documents, document_index, rng))
    if not instances:
      continue
    rng.shuffle(instances)
    if config.masking == "dynamic":
      batch = maker.pad_batch(instances)
    else:
      batch = maker.mask_batch(instances, rng, np_rng)
    frames = [records.frame(record) for record in encoder.encode_batch(batch)]
    first = stats["instances"]
    keys = sort_keys(config.random_seed, index, first, len(frames))
    for offset in range(min(num_shards, len(frames))):
      yield ((first + offset + index) % num_shards,
             _block((first + offset + index) % num_shards, keys[offset::num_shards],
                    frames[offset::num_shards]))
    stats["instances"] += len(instances)
    stats["random_next"] += int(batch.is_random_next.sum())
    stats["tokens"] += int(batch.lengths.sum())
    if batch.num_masked is not None:
      stats["masked"] += int(batch.num_masked.sum())
  counts.update(stats)


def read_blocks(path: str) -> Iterator[Tuple[int, bytes]]:
  """The (shard, block)s of a file of blocks, read in 4 MiB pieces (a few read calls a file)."""
  with gfile.GFile(path, "rb") as f:
    buffer, position = b"", 0
    while True:
      chunk = f.read(_READ_BYTES)
      buffer = buffer[position:] + chunk
      position = 0
      while len(buffer) - position >= _BLOCK_HEADER.size:
        shard, count, size = _BLOCK_HEADER.unpack_from(buffer, position)
        end = position + _BLOCK_HEADER.size + 12 * count + size
        if end > len(buffer):
          break
        yield shard, buffer[position:end]
        position = end
      if not chunk:
        if position < len(buffer):
          raise ValueError(f"{path} ends in the middle of a block: a scratch file was cut short. "
                           "Delete it and rerun.")
        return


def write_shard(config: DataConfig, shard: int, num_shards: int, blocks: Iterable[bytes]) -> int:
  """Writes shard `shard` atomically, its records in sort-key order (so the same whatever order
  the blocks come in), then its progress record; returns its record count. Memory: the shard."""
  views, keys, sources, starts, ends = [], [], [], [], []
  for block in blocks:
    _, count, _ = _BLOCK_HEADER.unpack_from(block)
    keys.append(np.frombuffer(block, "<u8", count, _BLOCK_HEADER.size))
    lengths = np.frombuffer(block, "<u4", count, _BLOCK_HEADER.size + 8 * count)
    block_ends = _BLOCK_HEADER.size + 12 * count + np.cumsum(lengths, dtype=np.int64)
    ends.append(block_ends)
    starts.append(block_ends - lengths)
    sources.append(np.full(count, len(views)))
    views.append(memoryview(block))
  order = np.argsort(np.concatenate(keys), kind="stable") if keys else np.zeros(0, np.int64)
  ordered = [np.concatenate(column)[order].tolist() if keys else []
             for column in (sources, starts, ends)]
  path = records.shard_name(config.output_file, shard, num_shards)
  with io_utils.atomic_output(path) as tmp, gfile.GFile(tmp, "wb") as out:
    for begin in range(0, len(order), 4096):
      out.write(b"".join(views[source][start:end] for source, start, end in
                         zip(*(column[begin:begin + 4096] for column in ordered))))
  io_utils.write_json_atomic(_shard_progress(config.output_file, shard),
                             {"records": len(order), "bytes": gfile.stat(path).length})
  return len(order)


def sum_counts(counts: Iterable[Dict[str, int]]) -> Dict[str, int]:
  """The sum of counts, keys sorted (so its JSON is the same whatever order they come in)."""
  totals: Dict[str, int] = collections.Counter()
  for each in counts:
    totals.update(each)
  return {name: totals[name] for name in sorted(totals)}


def _shard_progress(output_file: str, shard: int) -> str:
  return os.path.join(_progress_dir(output_file), f"shard-{shard:05d}.json")


def _counts_path(output_file: str) -> str:
  return os.path.join(_progress_dir(output_file), "counts.json")


def scratch_dir(output_file: str, run_config: Dict[str, Any]) -> str:
  """Where the local run keeps its part and spool files: in OUTPUT_FILE.progress/ for a local
  output; on local disk for a gs:// one (a directory named after the run's settings, under
  $TMPDIR), so that only finished shards go to the bucket."""
  if not io_utils.is_url(output_file):
    return os.path.join(_progress_dir(output_file), "scratch")
  digest = hashlib.sha256(json.dumps(run_config, sort_keys=True).encode()).hexdigest()[:16]
  return os.path.join(tempfile.gettempdir(), f"bert_tf-pretraining-{digest}")


def _part_path(scratch: str, window: int) -> str:
  return os.path.join(scratch, f"window-{window:05d}.blocks")


def _window_counts_path(scratch: str, window: int) -> str:
  return os.path.join(scratch, f"window-{window:05d}.json")


def _spool_path(scratch: str, shard: int) -> str:
  return os.path.join(scratch, f"shard-{shard:05d}.blocks")


def _make_window(index: int, raw_documents: List[List[str]]) -> None:
  """Writes window `index`'s blocks to its part file and then its counts, each atomically."""
  scratch, counts = _WORKER["scratch"], {}
  with io_utils.atomic_output(_part_path(scratch, index)) as tmp, gfile.GFile(tmp, "wb") as part:
    for _, block in window_blocks(index, raw_documents, counts):
      part.write(block)
  io_utils.write_json_atomic(_window_counts_path(scratch, index), counts)


def _open_files_allowed(wanted: int) -> int:
  """How many files this process may hold open beside its others, after raising its soft
  limit towards the hard one when `wanted` needs it."""
  import resource  # pylint: disable=import-outside-toplevel  (POSIX only)
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  needed = wanted + 64
  if soft != resource.RLIM_INFINITY and soft < needed:
    soft = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
  return wanted if soft == resource.RLIM_INFINITY else max(1, soft - 64)


def _spool(scratch: str, num_windows: int, shards: Sequence[int]) -> None:
  """Moves the windows' blocks to one spool file per shard of `shards`: each part file is read
  once, sequentially, in window order, and the spools are written through files held open, so
  the file operations grow as windows + shards, not as their product. (Beyond the open-file
  limit, the shards go in groups and each group reads the part files again.)"""
  group = _open_files_allowed(len(shards))
  for begin in range(0, len(shards), group):
    with contextlib.ExitStack() as stack:
      spools = {shard: stack.enter_context(gfile.GFile(_spool_path(scratch, shard), "wb"))
                for shard in shards[begin:begin + group]}
      for window in range(num_windows):
        for shard, block in read_blocks(_part_path(scratch, window)):
          if shard in spools:
            spools[shard].write(block)


def _shard_done(output_file: str, shard: int, num_shards: int) -> bool:
  """Whether shard `shard` was written and is still the size it was written at (a damaged or
  deleted shard is made again)."""
  progress = _shard_progress(output_file, shard)
  if not gfile.exists(progress):
    return False
  path = records.shard_name(output_file, shard, num_shards)
  recorded = io_utils.read_json(progress).get("bytes")
  return gfile.exists(path) and recorded in (None, gfile.stat(path).length)


def _shard_metadata_path(shard: str) -> Optional[str]:
  """Where the metadata of the data set a shard (OUTPUT_FILE-0000I-of-0000N) belongs to would be."""
  match = re.fullmatch(r"(.*)-\d{5}-of-\d{5}", shard)
  return _metadata_path(match.group(1)) if match else None


def read_metadata(shard: str) -> Optional[Dict[str, Any]]:
  """The metadata of the data set a shard belongs to, if any."""
  path = _shard_metadata_path(shard)
  return io_utils.read_json(path) if path and gfile.exists(path) else None


def count_instances(file_pattern: str) -> Optional[int]:
  """The instances in the files of `file_pattern` when their metadata covers exactly those
  files (None otherwise: counting a corpus's records would read all of it)."""
  files = io_utils.list_files(file_pattern)
  metadata = read_metadata(files[0])
  if not metadata:
    return None
  directory = os.path.dirname(files[0])
  listed = sorted(os.path.join(directory, name) for name in metadata["files"])
  return metadata["counts"]["instances"] if listed == files else None


def check_shards(files: Sequence[str]) -> None:
  """Fails, naming the shard and the fix, when a shard of `files` differs from what its metadata
  recorded when create_pretraining_data wrote it (size, record count); shards without metadata
  pass."""
  metadata = read_metadata(files[0])
  if not metadata:
    return
  directory = os.path.dirname(files[0])
  listed = set(metadata.get("files", []))
  names = [os.path.basename(f) for f in files
           if os.path.dirname(f) == directory and os.path.basename(f) in listed]
  metadata_path = _shard_metadata_path(files[0])  # not None: it has metadata
  problem = records.damage(metadata_path, metadata, names)
  if problem:
    raise ValueError(f"{problem}; {os.path.basename(metadata_path)} records each shard as "
                     "written. Copy the shard again, or rerun create_pretraining_data with the "
                     "same flags: it makes damaged shards again.")


def check_data_vocab(shard: str, vocab_file: str) -> None:
  """Fails when `shard`'s metadata records another vocab than `vocab_file` (ids would mean other
  tokens, and the exported model would carry the wrong vocab.txt); data without metadata passes."""
  metadata = read_metadata(shard)
  recorded = metadata.get("vocab_sha256") if metadata else None
  if recorded and recorded != io_utils.file_sha256(vocab_file):
    made_with = metadata.get("vocab_file")
    raise ValueError(f"{shard} was made with the vocab {made_with} (sha256 {recorded[:12]}...), "
                     f"not --vocab_file={vocab_file}. Pass the vocab the data was made with, or "
                     "recreate the data with this one.")


def _check_resumable(config: DataConfig, run_config: Dict[str, Any]) -> None:
  """Records the run's flags, or fails if an earlier partial run used different ones."""
  path = os.path.join(_progress_dir(config.output_file), "config.json")
  if gfile.exists(path):
    previous = io_utils.read_json(path)
    if previous != run_config:
      changed = sorted(k for k in set(previous) | set(run_config)
                       if previous.get(k) != run_config.get(k))
      raise ValueError(
          f"{config.output_file} shards were started with other settings ({', '.join(changed)} "
          f"differ; see {path}). Finishing them would mix two datasets. Fix: rerun with the "
          f"same flags, or delete {_progress_dir(config.output_file)} and the shards, or choose "
          "another --output_file.")
  else:
    io_utils.write_json_atomic(path, run_config)


def _windows(files: Sequence[str], clean: str, size: int) -> Iterator[List[List[str]]]:
  window: List[List[str]] = []
  for document in read_documents(files, clean):
    window.append(document)
    if len(window) == size:
      yield window
      window = []
  if window:
    yield window


def create_pretraining_data(config: DataConfig, num_workers: int = 1,
                            beam_options: Optional[Any] = None) -> Dict[str, Any]:
  """Writes the shards and OUTPUT_FILE.metadata.json; returns the metadata.

  With `beam_options` (apache_beam PipelineOptions, see bert_tf.beam_pipelines), the documents
  are counted and the windows and shards made by Beam pipelines instead of local processes; the
  output is the same.
  """
  config.check()
  tokenization.check_vocab(config.vocab_file, (*tokenization.SPECIAL_TOKENS, "[MASK]"))
  files = io_utils.list_files(config.input_file)
  io_utils.check_writable(os.path.dirname(config.output_file), "output_file",
                          config.output_file)
  beam = None
  if beam_options is not None:
    from bert_tf import beam_pipelines  # pylint: disable=import-outside-toplevel  (imports Beam)
    beam = beam_pipelines.PretrainingRun(config, files, beam_options)
  shape = beam.count_documents() if beam else corpus_shape(files, config.clean)
  num_documents = shape["documents"]
  if not num_documents:
    raise ValueError(f"No text in {config.input_file}: expected one sentence a line, a blank "
                     "line between documents.")
  if shape["documents_cut"]:
    logging.info("%s: %d document(s) longer than %d lines were cut into %d pieces of at most "
                 "that many lines (each a document from here on), so that a window's memory "
                 "stays bounded.", config.input_file, shape["documents_cut"], MAX_DOCUMENT_LINES,
                 shape["pieces"])
  per_shard, num_shards = shard_layout(config, num_documents)
  run_config = {**dataclasses.asdict(config), "documents_per_shard": per_shard,
                "num_shards": num_shards, "window_documents": window_documents(config, per_shard),
                "vocab_sha256": io_utils.file_sha256(config.vocab_file)}
  metadata = records.cached_records(
      _metadata_path(config.output_file), run_config,
      lambda: _make_shards(config, run_config, files, shape, num_workers, beam))
  report_structure(config, metadata["counts"])
  return metadata


def shard_layout(config: DataConfig, num_documents: int) -> Tuple[int, int]:
  """(documents a shard's share of the corpus comes to, number of shards) for a corpus of
  `num_documents`."""
  per_shard = config.documents_per_shard
  if config.num_output_shards:
    per_shard = math.ceil(num_documents / config.num_output_shards)
  return per_shard, math.ceil(num_documents / per_shard)


def window_documents(config: DataConfig, per_shard: int) -> int:
  """Documents in a window: a shard's worth, at most --documents_per_shard (which bounds a
  worker's memory also when --num_output_shards makes shards larger)."""
  return min(per_shard, config.documents_per_shard)


# Below these, the input's structure is probably wrong: google-research's data has documents of
# many sentences, and about half of the instances take a random next segment.
_MIN_SENTENCES_PER_DOCUMENT = 2.0
_MAX_RANDOM_NEXT_SHARE = 0.7


def structure_warnings(config: DataConfig, counts: Dict[str, int]) -> List[str]:
  """What looks wrong in the input's structure (one sentence a line, blank lines between
  documents), from the counts of a run."""
  documents, sentences = counts["documents"], counts.get("sentences", 0)
  warnings = []
  if config.num_output_shards and documents < config.num_output_shards:
    warnings.append(
        f"only {documents} document(s) for --num_output_shards={config.num_output_shards}: a "
        "shard holds whole documents, and a document ends at a blank line. Put a blank line "
        "between documents (a text without blank lines is one document).")
  elif config.num_output_shards:
    per_shard, num_shards = shard_layout(config, documents)
    if num_shards != config.num_output_shards:
      warnings.append(
          f"--num_output_shards={config.num_output_shards} made {num_shards} shards: a shard "
          f"holds {per_shard} whole documents of the {documents}. Pick a number of shards that "
          "the document count divides more evenly, or leave the flag out.")
  if sentences and sentences / documents < _MIN_SENTENCES_PER_DOCUMENT:
    cost = ("next-sentence pairs cannot come from it" if config.next_sentence_prediction else
            "an instance (whole sentences of one document) holds one sentence")
    warnings.append(
        f"{sentences / documents:.2f} sentences per document: with a blank line after (nearly) "
        f"every line, each document is one sentence and {cost}. Put one sentence a line and "
        "blank lines only between documents"
        + (" (--clean also ends a document where it drops a line)." if config.clean != "none"
           else "."))
  if (counts.get("document_breaks") == 0 and sentences > 1
      and (counts.get("documents_cut") or documents == 1)):
    if config.next_sentence_prediction:
      learns = ("next-sentence prediction then learns whether two lines are neighbours in the "
                "file (its 'next' segment is the lines that follow, its random one lines of "
                "another piece of the same stretch): for comments, whether two comments sit side "
                "by side, not whether a text goes on. Pass --next_sentence_prediction=false "
                "(masked LM only), or put a blank line between threads (documents)")
    else:
      learns = ("an instance then packs neighbouring lines, whatever text they belong to; put "
                "a blank line between threads (documents) to keep them apart")
    warnings.append(
        f"no blank line in the input: each file is one document (cut into pieces of "
        f"{MAX_DOCUMENT_LINES} lines), and {learns}. (If each file is meant as one document, "
        "this is expected.)")
  share = counts["random_next"] / counts["instances"] if counts["instances"] else 0.0
  if share > _MAX_RANDOM_NEXT_SHARE:
    warnings.append(f"{100 * share:.0f}% of the instances have a random next segment (about "
                    "50% is expected): the documents are too short to give real next segments.")
  return warnings


def report_structure(config: DataConfig, counts: Dict[str, int]) -> None:
  """Logs documents, sentences per document and the next-sentence balance, and warns on what
  looks like a mis-structured input."""
  documents, instances = counts["documents"], counts["instances"]
  logging.info("%s: %d documents, %s sentences (%.1f a document), %d instances, %.0f%% with a "
               "random next segment.", config.input_file, documents,
               counts.get("sentences", "?"), counts.get("sentences", 0) / max(documents, 1),
               instances, 100 * counts["random_next"] / max(instances, 1))
  for warning in structure_warnings(config, counts):
    logging.warning("%s: %s", config.input_file, warning)


def init_worker(config: DataConfig, num_shards: int, scratch: Optional[str] = None) -> None:
  """Sets up this process to make windows (window_blocks, and _make_window's part files in
  `scratch`); forked workers inherit it."""
  tokenizer = tokenization.FullTokenizer(config.vocab_file, config.do_lower_case)
  # Made once a process: they hold only tables of the vocab and the flags (30 ms for a 30k vocab).
  maker = InstanceMaker(config, tokenizer.vocab)
  encoder = ExampleEncoder(len(tokenizer.vocab), config.max_seq_length,
                           config.max_predictions_per_seq, config.next_sentence_prediction)
  _WORKER.update(config=config, num_shards=num_shards, scratch=scratch, tokenizer=tokenizer,
                 maker=maker, encoder=encoder)


def _make_shards(config: DataConfig, run_config: Dict[str, Any], files: Sequence[str],
                 shape: Dict[str, int], num_workers: int, beam: Optional[Any] = None
                 ) -> Dict[str, Any]:
  """Writes the shards that OUTPUT_FILE.progress/ does not record as done (locally, or with
  `beam`, a beam_pipelines.PretrainingRun, by one Beam pipeline); returns the metadata's counts,
  files and record counts."""
  num_shards, window_size = run_config["num_shards"], run_config["window_documents"]
  num_windows = math.ceil(shape["documents"] / window_size)
  _check_resumable(config, run_config)
  output = config.output_file
  todo_shards = [i for i in range(num_shards) if not _shard_done(output, i, num_shards)]
  logging.info("%d documents -> %d window(s) of up to %d documents, each dealt over %d "
               "shard(s); %d shard(s) already done.", shape["documents"], num_windows,
               window_size, num_shards, num_shards - len(todo_shards))
  if not todo_shards and gfile.exists(_counts_path(output)):
    totals = io_utils.read_json(_counts_path(output))
  elif beam is not None:
    totals = beam.make_shards(window_size, num_shards, todo_shards)
    check_instances(config, totals)  # the pipeline writes no shard when there is no instance
    io_utils.write_json_atomic(_counts_path(output), totals)
  else:
    totals = _make_shards_locally(config, scratch_dir(output, run_config), files, num_windows,
                                  window_size, num_shards, todo_shards, num_workers)
  pattern = f"{output}-*-of-{num_shards:05d}"
  logging.info("Wrote %d instances to %d shard(s): %s", totals["instances"], num_shards, pattern)
  names = [os.path.basename(records.shard_name(output, i, num_shards)) for i in range(num_shards)]
  counts = {**totals, **{name: shape[name] for name in ("document_breaks", "documents_cut")}}
  return {"file_pattern": pattern, "counts": counts, "files": names,
          "record_counts": {name: io_utils.read_json(_shard_progress(output, i))["records"]
                            for i, name in enumerate(names)}}


def check_instances(config: DataConfig, totals: Dict[str, int]) -> None:
  if not totals.get("instances"):
    raise ValueError(f"No training instance from {config.input_file}: its text holds no tokens "
                     "(only control characters or spaces?). Expected one sentence a line, a "
                     "blank line between documents.")


def _make_shards_locally(config: DataConfig, scratch: str, files: Sequence[str],
                         num_windows: int, window_size: int, num_shards: int,
                         todo_shards: List[int], num_workers: int) -> Dict[str, int]:
  """The local run: windows -> part files (in parallel), part files -> one spool a shard (one
  sequential pass), spool -> shard (sorted); returns the windows' counts. A rerun skips the
  windows whose part files remain, and the spool pass once it has finished."""
  output = config.output_file
  spooled = os.path.join(scratch, "spooled.json")
  if not (gfile.exists(spooled) and gfile.exists(_counts_path(output)) and
          all(gfile.exists(_spool_path(scratch, shard)) for shard in todo_shards)):
    init_worker(config, num_shards, scratch)
    done = {i for i in range(num_windows) if gfile.exists(_window_counts_path(scratch, i))
            and gfile.exists(_part_path(scratch, i))}
    todo = ((i, window) for i, window in enumerate(_windows(files, config.clean, window_size))
            if i not in done)
    if num_workers <= 1:
      for index, window in todo:
        _make_window(index, window)
        _log_progress("window", index, num_windows)
    else:
      _run_parallel(todo, num_workers)
    totals = sum_counts(io_utils.read_json(_window_counts_path(scratch, i))
                        for i in range(num_windows))
    check_instances(config, totals)
    logging.info("Spooling %d window(s) to %d shard(s).", num_windows, len(todo_shards))
    _spool(scratch, num_windows, todo_shards)
    io_utils.write_json_atomic(_counts_path(output), totals)
    io_utils.write_json_atomic(spooled, {"shards": todo_shards})
    for i in range(num_windows):
      gfile.remove(_part_path(scratch, i))
  totals = io_utils.read_json(_counts_path(output))
  for n, shard in enumerate(todo_shards):
    write_shard(config, shard, num_shards,
                (block for _, block in read_blocks(_spool_path(scratch, shard))))
    gfile.remove(_spool_path(scratch, shard))
    _log_progress("shard", n, len(todo_shards))
  gfile.rmtree(scratch)
  return totals


def _log_progress(what: str, index: int, total: int) -> None:
  """Logs every tenth of the work (and its end)."""
  step = max(1, total // 10)
  if (index + 1) % step == 0 or index + 1 == total:
    logging.info("%s %d of %d done.", what, index + 1, total)


def _run_parallel(todo: Iterator[Tuple[int, List[List[str]]]], num_workers: int) -> None:
  """Runs windows in worker processes, with at most 2 windows per worker in memory at once."""
  context = multiprocessing.get_context("fork")
  with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
    pending = set()
    for index, window in todo:
      if len(pending) >= 2 * num_workers:
        finished, pending = concurrent.futures.wait(
            pending, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in finished:
          future.result()
      pending.add(pool.submit(_make_window, index, window))
    for future in concurrent.futures.as_completed(pending):
      future.result()


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("input_file", None, "Input raw text file (or comma-separated list of "
                      "files/globs; local or gs://).")
  flags.DEFINE_string("output_file", None, "Output TF example file; shards are named "
                      "OUTPUT_FILE-00000-of-000NN.")
  flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained on.")
  flags.DEFINE_bool("do_lower_case", None, "Whether to lower case the input text. Default: "
                    "inferred from the vocab; a contradiction is an error.")
  flags.DEFINE_bool("do_whole_word_mask", False, "Whether to use whole word masking rather than "
                    "per-WordPiece masking.")
  flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")
  flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum number of masked LM predictions "
                       "per sequence.")
  flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
  flags.DEFINE_integer("dupe_factor", 10, "Number of times to duplicate the input data (with "
                       "different masks).")
  flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
  flags.DEFINE_float("short_seq_prob", 0.1, "Probability of creating sequences which are shorter "
                     "than the maximum length.")
  flags.DEFINE_integer("num_output_shards", None, "(bert_tf) Number of output shards; by default "
                       "one per --documents_per_shard documents.")
  flags.DEFINE_integer("documents_per_shard", 2000, "(bert_tf) Documents per shard when "
                       "--num_output_shards is not set; bounds memory per worker.")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "(bert_tf) Worker processes.")
  beam_flags.define_flags()
  flags.DEFINE_enum("clean", "none", ["none", *clean_text.RECIPES], "(bert_tf) Clean each line "
                    "first (see bert_tf.clean_text; duplicates are not removed here).")
  flags.DEFINE_enum("masking", "static", list(MASKING_MODES), "(bert_tf) static: masks drawn "
                    "here, a new one for each of the --dupe_factor copies (google-research); "
                    "dynamic: unmasked records, masked afresh every epoch by run_pretraining.")
  flags.DEFINE_bool("next_sentence_prediction", True, "(bert_tf) false: one-segment instances of "
                    "whole sentences of a document, no next_sentence_labels; run_pretraining "
                    "then trains the masked LM only.")
  flags.mark_flags_as_required(["input_file", "output_file", "vocab_file"])


def main(argv: Sequence[str]) -> None:
  # A bad flag or file: one line, no traceback. Arguments after `--` are Beam's (with --runner).
  with script_errors.user_errors(None if FLAGS.runner else argv):
    beam_options = beam_flags.pipeline_options(argv)
    given = FLAGS.do_lower_case if FLAGS["do_lower_case"].present else None
    config = DataConfig(
        input_file=FLAGS.input_file, output_file=FLAGS.output_file, vocab_file=FLAGS.vocab_file,
        do_lower_case=tokenization.resolve_do_lower_case(FLAGS.vocab_file, given),
        do_whole_word_mask=FLAGS.do_whole_word_mask, max_seq_length=FLAGS.max_seq_length,
        max_predictions_per_seq=FLAGS.max_predictions_per_seq, random_seed=FLAGS.random_seed,
        dupe_factor=FLAGS.dupe_factor, masked_lm_prob=FLAGS.masked_lm_prob,
        short_seq_prob=FLAGS.short_seq_prob, num_output_shards=FLAGS.num_output_shards,
        documents_per_shard=FLAGS.documents_per_shard, clean=FLAGS.clean, masking=FLAGS.masking,
        next_sentence_prediction=FLAGS.next_sentence_prediction)
    create_pretraining_data(config, FLAGS.num_workers, beam_options)


if __name__ == "__main__":
  define_flags()
  app.run(main)
