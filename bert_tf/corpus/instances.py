"""google-research's pretraining instances on token ids, for create_pretraining_data: the
settings (DataConfig), making and masking the instances of a window (InstanceMaker) and encoding
them straight to tf.Example bytes (ExampleEncoder). create_pretraining_data.py's docstring
describes the whole run.
"""

import collections
import dataclasses
import itertools
import random
import struct
from typing import Dict, List, Optional, Tuple

import numpy as np

from bert_tf.corpus import cleaning

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
    if self.clean not in ("none", *cleaning.RECIPES):
      raise ValueError(f"--clean={self.clean}: use none or one of {cleaning.RECIPES}.")
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
