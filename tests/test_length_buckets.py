"""Prediction by length buckets: the chosen lengths, static shapes, order, and outputs identical
to the padded path's to the bit."""

import itertools

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_tf import modeling
from bert_tf.checkpoints import configs
from bert_tf.data import classifier as classifier_data
from bert_tf.data import length_buckets, pipeline
from bert_tf.training import trainer

SEQ_LENGTH = 128
BATCH = 8
# Large enough for the CPU kernels' 16-float blocks to matter (see length_buckets' docstring).
CONFIG = configs.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=128,
                            max_position_embeddings=SEQ_LENGTH)


def _brute_force_cost(lengths, max_seq_length, num_buckets):
  """The fewest positions over every choice of bucket lengths (the longest holding all)."""
  rounded = length_buckets._round_up(lengths, max_seq_length)  # pylint: disable=protected-access
  candidates = sorted(set(rounded.tolist()))
  best = None
  for count in range(1, num_buckets + 1):
    for chosen in itertools.combinations(candidates[:-1], count - 1):
      chosen = [*chosen, candidates[-1]]
      cost = sum(chosen[np.searchsorted(chosen, length)] for length in lengths)
      best = cost if best is None else min(best, cost)
  return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=1, max_size=40), st.integers(1, 4),
       st.sampled_from([64, 100, 128]))
def test_chosen_lengths_are_the_cheapest_static_set(lengths, num_buckets, max_seq_length):
  lengths = [min(length, max_seq_length) for length in lengths]
  chosen = length_buckets.choose_lengths(lengths, max_seq_length, num_buckets)
  assert chosen == sorted(set(chosen)) and 1 <= len(chosen) <= num_buckets
  assert all(n % length_buckets.GRANULE == 0 or n == max_seq_length for n in chosen)
  assert max(lengths) <= chosen[-1] <= max_seq_length
  cost = sum(chosen[np.searchsorted(chosen, length)] for length in lengths)
  assert cost == _brute_force_cost(lengths, max_seq_length, num_buckets)


def test_useful_share():
  assert length_buckets.useful_share([10, 30, 60], [128]) == pytest.approx(100 / 384)
  assert length_buckets.useful_share([10, 30, 60], [16, 32, 64]) == pytest.approx(100 / 112)


@pytest.fixture(scope="module")
def feature_file(tmp_path_factory):
  """37 classifier records of random lengths from 3 to 120 (the last batch is partial)."""
  rng = np.random.default_rng(7)
  lengths = rng.integers(3, 121, 37)
  lengths[:3] = [120, 17, 16]  # around a block edge, and the longest
  path = str(tmp_path_factory.mktemp("buckets") / "eval.tf_record")
  with tf.io.TFRecordWriter(path) as writer:
    for index, length in enumerate(lengths):
      ids = [2, *rng.integers(5, 100, length - 2), 3] + [0] * (SEQ_LENGTH - length)
      mask = [1] * length + [0] * (SEQ_LENGTH - length)
      segments = [0] * (length // 2) + [1] * (length - length // 2) + [0] * (SEQ_LENGTH - length)
      writer.write(classifier_data.serialize_features(classifier_data.InputFeatures(
          ids, mask, segments, label_id=index % 2)))
  return path, lengths


def _padded(strategy, model, path, output_keys):
  dataset = pipeline.pad_to_full_batches(pipeline.evaluation_dataset(
      path, classifier_data.feature_parser(SEQ_LENGTH), BATCH), BATCH)
  outputs = trainer.predict(strategy, model, dataset, output_keys,
                            passthrough_keys=["label_ids", "is_real_example"])
  real = outputs["is_real_example"].astype(bool)
  return {key: value[real] for key, value in outputs.items()}


def test_bucketed_classifier_logits_equal_the_padded_ones_in_order(feature_file):
  path, lengths = feature_file
  tf_keras.utils.set_random_seed(1)
  model = modeling.build_model(modeling.BertClassifier(CONFIG, 3))
  strategy = tf.distribute.get_strategy()
  padded = _padded(strategy, model, path, ["logits"])
  bucketed = length_buckets.predict(strategy, model, path,
                                    classifier_data.feature_parser(SEQ_LENGTH), SEQ_LENGTH,
                                    BATCH, ["logits"], passthrough_keys=["label_ids"])
  np.testing.assert_array_equal(bucketed["label_ids"], np.arange(len(lengths)) % 2)
  assert bucketed["logits"].shape == padded["logits"].shape
  assert np.array_equal(bucketed["logits"], padded["logits"])  # to the bit


def test_bucketed_span_logits_per_position_and_static_shapes(feature_file):
  path, lengths = feature_file
  tf_keras.utils.set_random_seed(2)
  model = modeling.build_model(modeling.BertSpanLabeler(CONFIG))
  strategy = tf.distribute.get_strategy()
  padded = _padded(strategy, model, path, ["start_logits", "end_logits"])
  parser = classifier_data.feature_parser(SEQ_LENGTH)
  bucketed = length_buckets.predict(strategy, model, path, parser, SEQ_LENGTH, BATCH,
                                    ["start_logits", "end_logits"], num_buckets=3,
                                    per_position_keys=["start_logits", "end_logits"])
  for key in ("start_logits", "end_logits"):
    assert [len(row) for row in bucketed[key]] == list(lengths)
    for row, full, length in zip(bucketed[key], padded[key], lengths):
      assert np.array_equal(row, full[:length])
  chosen = length_buckets.choose_lengths(lengths, SEQ_LENGTH, 3)
  assert len(chosen) == 3 and chosen[-1] == 128
  for bucket, length in enumerate(chosen):
    dataset = length_buckets._bucket_dataset(  # pylint: disable=protected-access
        path, parser, ("input_ids", "input_mask", "segment_ids"), chosen, bucket, BATCH)
    assert dataset.element_spec["input_ids"].shape.as_list() == [BATCH, length]
    indexes = np.concatenate([b[length_buckets.INDEX].numpy()[b["is_real_example"].numpy() > 0]
                              for b in dataset])
    expected = np.flatnonzero(np.searchsorted(chosen, lengths) == bucket)
    np.testing.assert_array_equal(indexes, expected)  # file order within the bucket
