"""Packing pretraining instances into rows: every instance whole with its masks and label, the
shards packed file by file, deterministic for a seed."""

import numpy as np
import tensorflow as tf

from bert_tf import tokenization
from bert_tf.data import masking, packed_pretraining, packing
from tests.packed_pretraining_data import (instance_of_each_slot, packed_rows, read_instances,
                                           write_short_documents)
from tests.test_run_pretraining import PREDICTIONS, SAMPLE


def test_packing_keeps_every_instance_whole_with_its_masks_and_label(tmp_path):
  pattern = write_short_documents(tmp_path)
  instances = read_instances(pattern)
  rows, packed = packed_rows(tmp_path, pattern)
  count = len(instances["input_ids"])
  assert packed.num_examples == count and packed.num_rows < count / 2
  assert packed.max_examples_per_row > 2
  # The prediction bound is what the data needs, within E x max_predictions_per_seq.
  assert packed.max_predictions_per_row < packed.max_examples_per_row * PREDICTIONS
  assert rows["masked_lm_positions"].shape == (packed.num_rows, packed.max_predictions_per_row)
  slots = instance_of_each_slot(rows, instances)
  assert sorted(index for _, _, index in slots) == list(range(count))
  predictions = {}  # row -> its instances' (position in the row, token, weight), in slot order
  for r, s, index in slots:
    start = int(rows[packing.EXAMPLE_STARTS][r, s])
    length = int(instances["input_mask"][index].sum())
    span = slice(start, start + length)
    np.testing.assert_array_equal(rows["segment_ids"][r, span],
                                  instances["segment_ids"][index, :length])
    np.testing.assert_array_equal(rows[packing.POSITION_IDS][r, span], np.arange(length))
    assert int(rows["next_sentence_labels"][r, s]) == instances["next_sentence_labels"][index]
    real = instances["masked_lm_weights"][index] > 0
    predictions.setdefault(r, []).extend(zip(
        (instances["masked_lm_positions"][index][real] + start).tolist(),
        instances["masked_lm_ids"][index][real].tolist(), [1.0] * int(real.sum())))
  for r, expected in predictions.items():
    width = packed.max_predictions_per_row
    expected += [(0, 0, 0.0)] * (width - len(expected))
    got = list(zip(rows["masked_lm_positions"][r].numpy().tolist(),
                   rows["masked_lm_ids"][r].numpy().tolist(),
                   rows["masked_lm_weights"][r].numpy().tolist()))
    assert got == expected


def test_shards_are_packed_one_by_one_and_deterministically(tmp_path):
  pattern = write_short_documents(tmp_path, shards=2)
  rows, packed = packed_rows(tmp_path / "a", pattern)
  again, _ = packed_rows(tmp_path / "b", pattern)
  other, _ = packed_rows(tmp_path / "c", pattern, seed=4)
  files = sorted(tf.io.gfile.glob(packed.path))
  assert len(files) == 2 and [f.rsplit("/", 1)[1] for f in files] == [
      "train_packed.tf_record-00000-of-00002", "train_packed.tf_record-00001-of-00002"]
  for key, value in rows.items():
    np.testing.assert_array_equal(again[key], value)
  assert not np.array_equal(other["input_ids"], rows["input_ids"])
  # Reused while the inputs are unchanged: the cached shards are not rewritten.
  written = {f: tf.io.gfile.stat(f).mtime_nsec for f in files}
  packed_rows(tmp_path / "a", pattern)
  assert {f: tf.io.gfile.stat(f).mtime_nsec for f in files} == written


def test_masked_lm_only_rows_have_no_next_sentence_labels(tmp_path):
  pattern = write_short_documents(tmp_path, next_sentence=False, shards=1)
  instances = read_instances(pattern, next_sentence=False)
  rows, packed = packed_rows(tmp_path, pattern, next_sentence=False)
  assert "next_sentence_labels" not in rows
  assert packed.num_examples == len(instances["input_ids"]) and packed.max_examples_per_row > 1
  assert rows["masked_lm_weights"].numpy().sum() == instances["masked_lm_weights"].sum()


def test_dynamic_masking_masks_each_packed_instance_as_its_own_row(tmp_path):
  """Unmasked instances packed, then masked batch by batch: each instance gets its own
  num_to_predict masks among its own tokens (never its [CLS] or [SEP]s), the row's predictions
  fit its bound, and the same seed gives the same masks."""
  pattern = write_short_documents(tmp_path, masking="dynamic")
  rows, packed = packed_rows(tmp_path, pattern, masked_lm_prob=0.15)
  assert "masked_lm_positions" not in rows and packed.max_examples_per_row > 2
  masker = packed_pretraining.PackedMasker(
      masking.DynamicMasker(tokenization.load_vocab(str(SAMPLE / "vocab.txt")), PREDICTIONS,
                            0.15, False), packed.max_predictions_per_row)
  seed = tf.constant([5, 0], tf.int64)
  masked = {key: value.numpy() for key, value in masker(rows, seed).items()}
  assert masked["masked_lm_positions"].shape == (packed.num_rows, packed.max_predictions_per_row)
  np.testing.assert_array_equal(masker(rows, seed)["input_ids"], masked["input_ids"])
  assert not np.array_equal(masker(rows, tf.constant([6, 0], tf.int64))["input_ids"],
                            masked["input_ids"])
  original = rows["input_ids"].numpy()
  weights = masked["masked_lm_weights"]
  for r in range(packed.num_rows):
    real = weights[r] > 0
    positions = masked["masked_lm_positions"][r][real]
    assert (masked["masked_lm_positions"][r][~real] == 0).all()
    np.testing.assert_array_equal(masked["masked_lm_ids"][r][real], original[r, positions])
    changed = np.nonzero(masked["input_ids"][r] != original[r])[0]
    assert set(changed) <= set(positions)
    for s in np.nonzero(rows[packing.EXAMPLE_WEIGHTS][r].numpy())[0]:
      start = int(rows[packing.EXAMPLE_STARTS][r, s])
      in_slot = rows[packing.EXAMPLE_IDS][r].numpy() == s + 1
      length = int(in_slot.sum())
      first_segment = int((in_slot & (rows["segment_ids"][r].numpy() == 0)).sum())
      forbidden = {start, start + length - 1, start + first_segment - 1}
      mine = [p for p in positions if start <= p < start + length]
      candidates = length - len(forbidden)
      wanted = packed_pretraining.num_to_predict(np.array([length]), 0.15, PREDICTIONS)[0]
      assert len(mine) == min(wanted, candidates) and not forbidden & set(mine)
