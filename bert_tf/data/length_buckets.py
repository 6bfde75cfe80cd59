"""Evaluation and prediction by length: each example runs at the shortest of a few static lengths
that holds it, instead of at max_seq_length, and its outputs come back in the original order.

Records are still written at max_seq_length; here they are read once for their lengths (the sum
of input_mask), a handful of bucket lengths is chosen from that histogram (`choose_lengths`:
fewest computed positions), and each bucket is read again, cut to its length and batched, with
its last batch padded: every tensor has a static shape, and a model sees at most
`num_buckets` shapes (one XLA/TPU program each, not one per batch).

Outputs are bit-identical to the padded path's. A padded position changes no real position's
output (its attention weight is exactly 0), but where a cut falls can change the rounding of the
sums over positions: on CPU the kernels add 16 floats at a time (AVX-512), and a cut inside a
block of 16 that holds real tokens moved the last bit of the classifier's logits (measured on
BERT-mini). So every bucket length is a multiple of GRANULE (or max_seq_length itself), which
never cuts such a block; tests/test_length_buckets.py compares both paths to the bit.
"""

from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from bert_tf.data import pipeline
from bert_tf.training import trainer

GRANULE = 16
DEFAULT_NUM_BUCKETS = 4
INDEX = "example_index"  # the record's position in the file, carried through prediction
_READ_BATCH = 1024


def _round_up(lengths: np.ndarray, max_seq_length: int) -> np.ndarray:
  """Each length rounded up to a multiple of GRANULE, at most max_seq_length."""
  return np.minimum(-(-np.asarray(lengths) // GRANULE) * GRANULE, max_seq_length)


def choose_lengths(lengths: Sequence[int], max_seq_length: int,
                   num_buckets: int = DEFAULT_NUM_BUCKETS) -> List[int]:
  """At most `num_buckets` bucket lengths (ascending, the longest holding every example) that
  minimise the positions computed when each example runs at the shortest length that holds it.

  Candidates are multiples of GRANULE and max_seq_length; an exact dynamic programme over them.
  """
  if num_buckets < 1:
    raise ValueError(f"num_buckets={num_buckets} must be at least 1.")
  rounded = _round_up(lengths, max_seq_length)
  candidates, counts = np.unique(rounded, return_counts=True)
  if not len(candidates):
    return [max_seq_length]
  candidates, counts = candidates.tolist(), counts.tolist()
  total = len(candidates)
  prefix = np.concatenate([[0], np.cumsum(counts)])
  # cost[k][j]: fewest positions for the examples up to candidates[j] in k+1 buckets, the
  # longest being candidates[j]; below[k][j]: the index of the bucket under it.
  cost = [[float(prefix[j + 1] * candidates[j]) for j in range(total)]]
  below = [[-1] * total]
  for k in range(1, min(num_buckets, total)):
    row, back = [np.inf] * total, [-1] * total
    for j in range(k, total):
      for i in range(k - 1, j):
        value = cost[k - 1][i] + (prefix[j + 1] - prefix[i + 1]) * candidates[j]
        if value < row[j]:
          row[j], back[j] = value, i
    cost.append(row)
    below.append(back)
  k = min(range(len(cost)), key=lambda k: cost[k][-1])
  chosen, j = [], total - 1
  while k >= 0:
    chosen.append(candidates[j])
    j, k = below[k][j], k - 1
  return sorted(chosen)


def useful_share(lengths: Sequence[int], bucket_lengths: Sequence[int]) -> float:
  """The share of computed positions that hold a token, with these buckets (1 bucket of
  max_seq_length: the padded path's share)."""
  lengths = np.asarray(lengths)
  computed = np.asarray(bucket_lengths)[np.searchsorted(bucket_lengths, lengths)]
  return float(lengths.sum() / computed.sum()) if len(lengths) else 1.0


def record_lengths(file_pattern: str, parser: pipeline.Parser) -> np.ndarray:
  """The number of real tokens (sum of input_mask) of every record, in file order."""
  dataset = pipeline.evaluation_dataset(file_pattern, parser, _READ_BATCH)
  dataset = dataset.map(lambda features: tf.reduce_sum(features["input_mask"], axis=1))
  return np.concatenate([batch.numpy() for batch in dataset] or [np.zeros([0], np.int32)])


def _bucket_dataset(file_pattern: str, parser: pipeline.Parser, sequence_keys: Sequence[str],
                    lengths: Sequence[int], bucket: int, batch_size: int) -> tf.data.Dataset:
  """Bucket `bucket`'s records in file order, cut to its length, in full batches."""
  boundaries = tf.constant(lengths, tf.int32)
  length = lengths[bucket]

  def in_bucket(index, features):
    del index
    found = tf.searchsorted(boundaries, tf.reduce_sum(features["input_mask"])[None])[0]
    return tf.equal(found, bucket)

  def cut(index, features):
    features = {key: value[:length] if key in sequence_keys else value
                for key, value in features.items()}
    return {**features, INDEX: tf.cast(index, tf.int32)}

  dataset = pipeline.evaluation_dataset(file_pattern, parser, _READ_BATCH).unbatch()
  dataset = dataset.enumerate().filter(in_bucket).map(cut).batch(batch_size)
  return pipeline.pad_to_full_batches(dataset, batch_size)


def predict(strategy: tf.distribute.Strategy, model: tf_keras.Model, file_pattern: str,
            parser: pipeline.Parser, max_seq_length: int, batch_size: int,
            output_keys: List[str],
            passthrough_keys: Sequence[str] = (), sequence_keys: Sequence[str] = (
                "input_ids", "input_mask", "segment_ids"),
            num_buckets: int = DEFAULT_NUM_BUCKETS,
            per_position_keys: Sequence[str] = ()) -> Dict[str, object]:
  """trainer.predict over every record of `file_pattern`, bucketed by length; outputs in file
  order, padding dropped. `per_position_keys` (outputs with a value per position, such as span
  logits) come back as one array per record, of the record's own length."""
  lengths = record_lengths(file_pattern, parser)
  if not len(lengths):
    raise ValueError(f"{file_pattern} holds no records to predict.")
  bucket_lengths = choose_lengths(lengths, max_seq_length, num_buckets)
  sizes = np.bincount(np.searchsorted(bucket_lengths, lengths), minlength=len(bucket_lengths))
  keys = [*output_keys, *passthrough_keys]
  collected: Dict[str, List[object]] = {key: [None] * len(lengths) for key in keys}
  for bucket, size in enumerate(sizes):
    if not size:
      continue
    dataset = _bucket_dataset(file_pattern, parser, sequence_keys, bucket_lengths, bucket,
                              batch_size)
    outputs = trainer.predict(strategy, model, dataset, output_keys,
                              passthrough_keys=[*passthrough_keys, INDEX, "is_real_example"])
    real = outputs["is_real_example"].astype(bool)
    for key in keys:
      for index, value in zip(outputs[INDEX][real], outputs[key][real]):
        collected[key][index] = value[:lengths[index]] if key in per_position_keys else value
  if any(value is None for value in collected[keys[0]]):
    raise RuntimeError(f"{file_pattern}: some records got no prediction; the bucketing is "
                       "broken.")
  return {key: values if key in per_position_keys else np.stack(values)
          for key, values in collected.items()}

