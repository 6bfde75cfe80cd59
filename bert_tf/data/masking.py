"""Dynamic masking: google-research's masked-LM masks, drawn afresh in the tf.data pipeline.

create_pretraining_data --masking=dynamic writes unmasked instances; training masks each batch
here, so a record read again (the next epoch) gets a new mask, instead of the --dupe_factor
masks fixed when the data was made (RoBERTa's dynamic masking). The semantics are
create_pretraining_data's static ones (InstanceMaker.mask_batch), with other random numbers:
  - candidates: every real token but [CLS] (position 0) and the [SEP]s (the last real token and,
    with two segments, the last token of segment 0), found from input_mask and segment_ids;
  - num_to_predict = min(max_predictions_per_seq, max(1, round(length * masked_lm_prob))), with
    float64 arithmetic and ties to even, as Python's round;
  - without whole-word masking a uniform random subset of num_to_predict candidates (all of them
    when there are fewer); with it google-research's words (a candidate whose token starts with
    ## joins the word of the candidate just before it) in a uniform random order, each taken
    when it still fits in num_to_predict and skipped otherwise;
  - each chosen token becomes [MASK] with probability 0.8, stays with 0.1 and becomes a uniform
    random id of the vocab with 0.1;
  - masked_lm_positions ascending, masked_lm_ids (the original tokens) and masked_lm_weights
    (1.0), zero-padded to max_predictions_per_seq: static shapes, as XLA and TPUs want.
The random numbers are stateless (tf.random.stateless_*) and seeded from (seed, batch index):
the mask of batch k is a pure function of the run's seed and k, so a resumed run, which
re-creates batch k from the record counts (data.pipeline), re-creates its mask too.
The whole batch is masked at once: the only sequential part, whole-word selection, is a scan
over the word slots, vectorised over the batch.
"""

from typing import Callable, Dict

import numpy as np
import tensorflow as tf

Features = Dict[str, tf.Tensor]


def num_to_predict(lengths: tf.Tensor, masked_lm_prob: float,
                    max_predictions_per_seq: int) -> tf.Tensor:
  """google-research's min(max_predictions, max(1, int(round(length * prob)))) per row."""
  rounded = tf.cast(tf.round(tf.cast(lengths, tf.float64) * masked_lm_prob), tf.int32)
  return tf.minimum(max_predictions_per_seq, tf.maximum(1, rounded))


class DynamicMasker:
  """Masks batches of unmasked pretraining features (input_ids, input_mask, segment_ids)."""

  def __init__(self, vocab: Dict[str, int], max_predictions_per_seq: int,
               masked_lm_prob: float, do_whole_word_mask: bool):
    if not 0 < masked_lm_prob < 1 or max_predictions_per_seq < 1:
      raise ValueError(f"masked_lm_prob={masked_lm_prob} must be in (0, 1) and "
                       f"max_predictions_per_seq={max_predictions_per_seq} at least 1.")
    self.mask_id = vocab["[MASK]"]
    self.vocab_size = len(vocab)  # random tokens are drawn from [0, len(vocab)), as statically
    self.max_predictions_per_seq = max_predictions_per_seq
    self.masked_lm_prob = masked_lm_prob
    self.do_whole_word_mask = do_whole_word_mask
    self.is_subword = np.zeros(max(vocab.values()) + 1, bool)
    for token, index in vocab.items():
      self.is_subword[index] = token.startswith("##")

  def __call__(self, features: Features, seed: tf.Tensor) -> Features:
    """`features` with input_ids masked and the masked_lm_* features added.

    `seed` is a stateless seed (int64 [2]); the same features and seed give the same mask.
    """
    ids = features["input_ids"]
    width = ids.shape[-1]
    most = self.max_predictions_per_seq
    real = tf.cast(features["input_mask"], tf.int32)
    lengths = tf.reduce_sum(real, axis=1)
    num_a = tf.reduce_sum(real * (1 - tf.cast(features["segment_ids"], tf.int32)), axis=1)
    columns = tf.range(width)[None]
    candidate = ((columns >= 1) & (columns < lengths[:, None] - 1)
                 & (columns != num_a[:, None] - 1))
    predictions = num_to_predict(lengths, self.masked_lm_prob, most)
    order_seed, replace_seed, random_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3))
    chosen = self._choose(ids, candidate, predictions, order_seed)
    # The chosen positions in ascending order, padded with `width` (then zeroed).
    keys = tf.where(chosen, columns, width)
    if most > width:
      keys = tf.pad(keys, [[0, 0], [0, most - width]], constant_values=width)
    sorted_keys = tf.sort(keys, axis=1)[:, :most]
    masked = sorted_keys < width
    positions = tf.where(masked, sorted_keys, 0)
    labels = tf.where(masked, tf.gather(ids, positions, batch_dims=1), 0)
    draws = tf.random.stateless_uniform(tf.shape(ids), replace_seed)
    random_ids = tf.random.stateless_uniform(tf.shape(ids), random_seed, minval=0,
                                             maxval=self.vocab_size, dtype=ids.dtype)
    replaced = tf.where(draws < 0.8, tf.cast(self.mask_id, ids.dtype),
                        tf.where(draws < 0.9, ids, random_ids))
    return {**features, "input_ids": tf.where(chosen, replaced, ids),
            "masked_lm_positions": tf.cast(positions, ids.dtype),
            "masked_lm_ids": tf.cast(labels, ids.dtype),
            "masked_lm_weights": tf.cast(masked, tf.float32)}

  def _choose(self, ids: tf.Tensor, candidate: tf.Tensor, num_to_predict: tf.Tensor,
              seed: tf.Tensor) -> tf.Tensor:
    """Which tokens are masked: whole words (single tokens without whole-word masking) in a
    uniform random order, each taken when it still fits in num_to_predict."""
    width = ids.shape[-1]
    starts = candidate
    if self.do_whole_word_mask:
      subword = tf.gather(tf.constant(self.is_subword), ids)
      after_candidate = tf.pad(candidate[:, :-1], [[0, 0], [1, 0]])
      starts = candidate & ~(subword & after_candidate)
    # Word w of a row is the w-th start; its tokens are the candidates up to the next start.
    word = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1
    word = tf.where(candidate, word, width)  # slot `width` collects the non-candidates
    word_lengths = tf.math.bincount(word, minlength=width + 1, maxlength=width + 1,
                                    axis=-1)[:, :width]
    exists = word_lengths > 0
    keys = tf.where(exists, tf.random.stateless_uniform(tf.shape(word_lengths), seed), 2.0)
    order = tf.argsort(keys, axis=1, stable=True)  # a uniform random order of the words
    lengths_in_order = tf.gather(word_lengths, order, batch_dims=1)
    num_words = tf.reduce_sum(tf.cast(exists, tf.int32), axis=1)
    if self.do_whole_word_mask:
      taken_in_order = _fitting_words(lengths_in_order, num_words, num_to_predict, width)
    else:  # one-token words: the first num_to_predict of the random order
      taken_in_order = tf.range(width)[None] < tf.minimum(num_to_predict, num_words)[:, None]
    taken = tf.gather(taken_in_order, tf.argsort(order, axis=1), batch_dims=1)
    taken = tf.pad(taken, [[0, 0], [0, 1]])  # the non-candidates' slot is never taken
    return tf.gather(taken, word, batch_dims=1)


def _fitting_words(lengths: tf.Tensor, num_words: tf.Tensor, num_to_predict: tf.Tensor,
                   width: int) -> tf.Tensor:
  """google-research's loop over the words in order (`lengths` [batch, width], the first
  num_words real): a word is taken when it fits in what is left of num_to_predict, else skipped.
  Vectorised over the rows; the loop ends once every row is full or out of words (about
  num_to_predict words in, not max_seq_length)."""
  columns = tf.range(width)[None]

  def unfinished(j, total, _):
    return (j < width) & tf.reduce_any((total < num_to_predict) & (j < num_words))

  def step(j, total, taken):
    length = lengths[:, j]
    take = (j < num_words) & (total + length <= num_to_predict)
    return j + 1, total + tf.where(take, length, 0), taken | ((columns == j) & take[:, None])

  _, _, taken = tf.while_loop(unfinished, step, (tf.constant(0), tf.zeros_like(num_to_predict),
                                                 tf.zeros_like(lengths, tf.bool)))
  return taken


def batch_seeds(seed: int, stream: int) -> Callable[[tf.Tensor], tf.Tensor]:
  """A function of a batch index giving that batch's stateless seed, for the masks of one
  stream of batches (e.g. one input pipeline's training batches, or the evaluation's)."""
  base = tf.constant([seed, stream], tf.int64)

  def of_batch(index: tf.Tensor) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(base, tf.cast(index, tf.int64))
  return of_batch


def mask_dataset(dataset: tf.data.Dataset, masker: DynamicMasker, seed: int, stream: int,
                 first_batch: int = 0) -> tf.data.Dataset:
  """Batches of `dataset` masked by `masker`, batch k (counting from `first_batch`, the index
  of the dataset's first batch) with the seed of (seed, stream, k)."""
  seeds = batch_seeds(seed, stream)
  dataset = dataset.enumerate(first_batch).map(
      lambda index, features: masker(features, seeds(index)),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.prefetch(tf.data.AUTOTUNE)
