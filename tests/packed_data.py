"""Random unpacked features and their packed rows, for the packing, model and trainer tests."""

import numpy as np
import tensorflow as tf

from bert_tf.checkpoints import configs
from bert_tf.data import packing, records

SEQ_LENGTH = 32
NUM_EXAMPLES = 23
TINY = configs.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=32,
                          max_position_embeddings=SEQ_LENGTH, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)
EXAMPLE_KEYS = ("label_ids", "start_positions", "end_positions", "unique_ids")


def unpacked_examples(seed: int = 0, count: int = NUM_EXAMPLES):
  """Random [CLS] a [SEP] b [SEP] features of lengths 3..SEQ_LENGTH, padded as google-research's."""
  rng = np.random.RandomState(seed)
  lengths = rng.randint(3, SEQ_LENGTH + 1, count)
  lengths[:3] = (SEQ_LENGTH, 3, 4)  # a full row, and the shortest
  features = {key: np.zeros((count, SEQ_LENGTH), np.int32)
              for key in ("input_ids", "input_mask", "segment_ids")}
  per_example = {key: np.zeros(count, np.int32) for key in EXAMPLE_KEYS}
  for i, length in enumerate(lengths):
    features["input_ids"][i, :length] = rng.randint(5, TINY.vocab_size, length)
    features["input_ids"][i, 0] = 2  # [CLS]
    features["input_mask"][i, :length] = 1
    features["segment_ids"][i, rng.randint(1, length):length] = 1
    start = rng.randint(0, length)
    per_example["start_positions"][i] = start
    per_example["end_positions"][i] = rng.randint(start, length)
  per_example["label_ids"] = rng.randint(0, 3, count).astype(np.int32)
  per_example["unique_ids"] = np.arange(1, count + 1, dtype=np.int32)
  return {**features, **per_example}


def write_features(path, features) -> None:
  """One tf.Example per example, as the task's feature files hold them."""
  with records.TFRecordWriter(str(path)) as writer:
    for i in range(len(features["input_ids"])):
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          key: records.int64_feature(np.atleast_1d(value[i]).tolist())
          for key, value in features.items()})).SerializeToString())


def packed_rows(tmp_path, features, seed: int = 1):
  """Every packed row of `features`, parsed as training parses them, and the PackedFile."""
  path = tmp_path / "features.tf_record"
  write_features(path, features)
  (tmp_path / "features.json").write_text("{}")
  packed = packing.prepare_packed(str(path), str(tmp_path / "features.json"), SEQ_LENGTH,
                                  EXAMPLE_KEYS, seed, str(tmp_path / "packed.tf_record"))
  dataset = tf.data.TFRecordDataset(packed.path).batch(packed.num_rows).map(
      packing.packed_parser(packed, EXAMPLE_KEYS))
  return next(iter(dataset)), packed


def real_slots(rows):
  """(row, slot, unique id - 1) of every real example in packed `rows`."""
  weights = rows[packing.EXAMPLE_WEIGHTS].numpy()
  ids = rows["unique_ids"].numpy()
  return [(r, s, int(ids[r, s]) - 1) for r, s in zip(*np.nonzero(weights))]
