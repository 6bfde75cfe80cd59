"""Packing training features into rows: every example whole, once, deterministic for a seed."""

import numpy as np
import tensorflow as tf

from bert_tf import tokenization
from bert_tf.data import classifier as classifier_data
from bert_tf.data import packing
from conftest import PROJECT_ROOT
from tests.packed_data import NUM_EXAMPLES, SEQ_LENGTH, packed_rows, real_slots, unpacked_examples


def test_packing_fills_rows_and_keeps_every_example_whole(tmp_path):
  features = unpacked_examples()
  rows, packed = packed_rows(tmp_path, features)
  lengths = features["input_mask"].sum(axis=1)
  assert packed.num_examples == NUM_EXAMPLES
  # Fewer rows than examples, none overfull, and not more than one row of waste over the bound.
  assert packed.num_rows < NUM_EXAMPLES
  assert packed.num_rows <= int(np.ceil(lengths.sum() / SEQ_LENGTH)) + 1
  slots = real_slots(rows)
  assert sorted(index for _, _, index in slots) == list(range(NUM_EXAMPLES))
  for r, s, index in slots:
    start, length = int(rows[packing.EXAMPLE_STARTS][r, s]), int(lengths[index])
    span = slice(start, start + length)
    for key in ("input_ids", "segment_ids"):
      np.testing.assert_array_equal(rows[key][r, span], features[key][index, :length])
    np.testing.assert_array_equal(rows[packing.POSITION_IDS][r, span], np.arange(length))
    assert (rows[packing.EXAMPLE_IDS][r, span].numpy() == s + 1).all()
    for key in ("label_ids", "start_positions", "end_positions"):
      assert int(rows[key][r, s]) == features[key][index]
  assert (rows[packing.EXAMPLE_IDS].numpy() > 0).sum() == lengths.sum()


def test_packing_is_deterministic_for_a_seed():
  lengths = np.random.RandomState(3).randint(2, 60, 500)
  assert packing.pack_lengths(lengths, 64, seed=5) == packing.pack_lengths(lengths, 64, seed=5)
  assert packing.pack_lengths(lengths, 64, seed=5) != packing.pack_lengths(lengths, 64, seed=6)
  for rows in (packing.pack_lengths(lengths, 64, seed=5),):
    assert sorted(i for row in rows for i in row) == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    # Best-fit decreasing wastes little: within 3% of the lower bound here.
    assert len(rows) <= 1.03 * lengths.sum() / 64


def test_rows_per_step_keeps_the_batch_in_examples():
  # 10 examples a row: 32 examples are ~3 rows; 2 replicas x 2 micro-batches need a multiple of 4.
  assert packing.rows_per_step(32, 1000, 100, 1) == 3
  assert packing.rows_per_step(32, 1000, 100, 4) == 4
  assert packing.rows_per_step(4, 1000, 100, 2) == 2  # at least a row each


def test_an_example_longer_than_a_row_is_truncated_as_unpacked_never_split(tmp_path):
  """The classifier's features, packed: a long example is google-research's truncation, whole in
  one row; short ones share rows."""
  tokenizer = tokenization.FullTokenizer(
      str(PROJECT_ROOT / "sample_data" / "classifier" / "vocab.txt"), do_lower_case=False)
  texts = ["짧은 리뷰", "이 영화 정말 재미있어요 " * 20, "좋아요", "별로", "최고의 영화"]
  examples = [classifier_data.InputExample(f"train-{i}", text, None, "1")
              for i, text in enumerate(texts)]
  features = classifier_data.prepare_features(examples, ["0", "1"], 16, tokenizer,
                                              str(tmp_path / "train.tf_record"))
  packed = packing.prepare_packed(features.path, features.path + ".json", 16, ("label_ids",),
                                  seed=3, output_file=str(tmp_path / "packed.tf_record"))
  rows = next(iter(tf.data.TFRecordDataset(packed.path).batch(10).map(
      packing.packed_parser(packed, ("label_ids",)))))
  unpacked = classifier_data.convert_single_example(1, examples[1], ["0", "1"], 16, tokenizer)
  assert sum(unpacked.input_mask) == 16  # truncated to the row
  full = [r for r in range(packed.num_rows)
          if rows["input_ids"].numpy()[r].tolist() == unpacked.input_ids]
  assert len(full) == 1 and rows[packing.EXAMPLE_WEIGHTS].numpy()[full[0]].sum() == 1
  assert packed.num_rows < len(texts) - 1 and packed.max_examples_per_row >= 2
