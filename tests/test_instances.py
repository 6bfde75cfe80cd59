"""create_pretraining_data's instances (corpus/instances.py): google-research's masking and
truncation, whole sentences without next-sentence prediction, and the tf.Example encoder."""

import dataclasses
import random

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import tokenization
from bert_tf.corpus import instances
from tests.test_create_pretraining_data import SEQ, english  # noqa: F401  (the fixture)


def test_whole_word_mask_masks_whole_words(english):
  config = dataclasses.replace(english, do_whole_word_mask=True, masked_lm_prob=0.3)
  maker = instances.InstanceMaker(config, tokenization.load_vocab(config.vocab_file))
  vocab = tokenization.load_vocab(config.vocab_file)
  tokens = [vocab[t] for t in "[CLS] the cat play ##ing [SEP] play ##ed a ball [SEP]".split()]
  rng, np_rng = random.Random(3), np.random.default_rng(3)
  for _ in range(50):
    batch = maker.mask_batch([(list(tokens), 6, False)], rng, np_rng)
    positions = batch.positions[0][:batch.num_masked[0]].tolist()
    chosen = set(positions)
    for first, second in ((3, 4), (6, 7)):  # play ##ing, play ##ed
      assert (first in chosen) == (second in chosen)
    assert [tokens[p] for p in positions] == batch.labels[0][:len(positions)].tolist()


def test_truncation_cuts_each_side_as_google_loop_does():
  rng = random.Random(0)
  for _ in range(500):
    a, b = list(range(rng.randrange(1, 60))), list(range(100, 100 + rng.randrange(1, 60)))
    limit = rng.randrange(2, 80)
    loop_a, loop_b = list(a), list(b)  # google-research's truncate_seq_pair, token by token
    while len(loop_a) + len(loop_b) > limit:
      longer = loop_a if len(loop_a) > len(loop_b) else loop_b
      del longer[0 if rng.random() < 0.5 else -1]
    cut_a, cut_b = instances.truncate_pair(a, b, limit, rng)
    assert (len(cut_a), len(cut_b)) == (len(loop_a), len(loop_b))
    for cut, whole in ((cut_a, a), (cut_b, b)):  # a contiguous run of the original
      assert not cut or whole[whole.index(cut[0]):whole.index(cut[0]) + len(cut)] == cut


def test_truncation_keeps_pairs_within_max_length(english):
  maker = instances.InstanceMaker(english, tokenization.load_vocab(english.vocab_file))
  rng = random.Random(0)
  long_document = [[5] * 30, [6] * 40, [7] * 50]
  for _ in range(20):
    for tokens, num_a, _ in maker.from_document([long_document, [[8] * 70]], 0, rng):
      assert len(tokens) <= SEQ and num_a >= 3 and len(tokens) - num_a >= 2


def test_encoder_matches_protobuf_serialization():
  encoder = instances.ExampleEncoder(30000, 8, 3)
  batch = instances.MaskedBatch(
      input_ids=np.array([[2, 29999, 4, 3, 200, 3, 0, 0], [2, 5, 3, 16384, 3, 0, 0, 0]]),
      lengths=np.array([6, 5]), num_a=np.array([4, 3]),
      positions=np.array([[2, 4, 0], [1, 0, 0]]), labels=np.array([[17, 130, 0], [9, 0, 0]]),
      num_masked=np.array([2, 1]), is_random_next=np.array([1, 0]))
  records = encoder.encode_batch(batch)
  feature = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))  # noqa: E731
  weights = lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v))  # noqa: E731
  expected = [
      {"input_ids": feature([2, 29999, 4, 3, 200, 3, 0, 0]),
       "input_mask": feature([1] * 6 + [0, 0]), "segment_ids": feature([0] * 4 + [1, 1, 0, 0]),
       "masked_lm_positions": feature([2, 4, 0]), "masked_lm_ids": feature([17, 130, 0]),
       "masked_lm_weights": weights([1, 1, 0]), "next_sentence_labels": feature([1])},
      {"input_ids": feature([2, 5, 3, 16384, 3, 0, 0, 0]),
       "input_mask": feature([1] * 5 + [0] * 3), "segment_ids": feature([0] * 3 + [1, 1, 0, 0, 0]),
       "masked_lm_positions": feature([1, 0, 0]), "masked_lm_ids": feature([9, 0, 0]),
       "masked_lm_weights": weights([1, 0, 0]), "next_sentence_labels": feature([0])}]
  assert [tf.train.Example.FromString(r) for r in records] == [
      tf.train.Example(features=tf.train.Features(feature=f)) for f in expected]


def test_full_sentences_pack_whole_sentences_of_one_document(english):
  config = dataclasses.replace(english, short_seq_prob=0.0, next_sentence_prediction=False)
  maker = instances.InstanceMaker(config, tokenization.load_vocab(config.vocab_file))
  document = [[5] * 10, [6] * 20, [7] * 30, [8] * 70, [9] * 5, [10] * 3]
  made = maker.full_sentences(document, random.Random(0))
  cls, sep = maker.cls_id, maker.sep_id
  # SEQ - 2 = 62 tokens: 10 + 20 + 30 fit, the 70 are cut to 62 alone, then 5 + 3.
  assert [(tokens, num_a, random_next) for tokens, num_a, random_next in made] == [
      ([cls, *[5] * 10, *[6] * 20, *[7] * 30, sep], 62, False), ([cls, *[8] * 62, sep], 64, False),
      ([cls, *[9] * 5, *[10] * 3, sep], 10, False)]


def test_encoder_writes_unmasked_and_label_free_examples():
  encoder = instances.ExampleEncoder(30000, 6, 2, next_sentence_prediction=False)
  batch = instances.MaskedBatch(input_ids=np.array([[2, 300, 5, 3, 0, 0]]), lengths=np.array([4]),
                                num_a=np.array([4]), positions=None, labels=None, num_masked=None,
                                is_random_next=np.array([0]))
  feature = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))  # noqa: E731
  assert tf.train.Example.FromString(encoder.encode_batch(batch)[0]) == tf.train.Example(
      features=tf.train.Features(feature={
          "input_ids": feature([2, 300, 5, 3, 0, 0]), "input_mask": feature([1] * 4 + [0] * 2),
          "segment_ids": feature([0] * 6)}))


def test_unknown_masking_mode_is_an_error(english):
  with pytest.raises(ValueError, match="--masking=random: use one of static, dynamic"):
    dataclasses.replace(english, masking="random").check()
