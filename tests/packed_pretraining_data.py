"""Pretraining records of short documents, and their packed rows, for the packed pretraining
tests (test_packed_pretraining, test_packed_modeling, test_pretraining_task)."""

import dataclasses
import random

import numpy as np
import tensorflow as tf

from bert_tf import tokenization
from bert_tf.checkpoints import configs
from bert_tf.corpus import create_pretraining_data as cpd
from bert_tf.corpus import instances
from bert_tf.data import packed_pretraining, packing
from bert_tf.tasks import pretraining as pretraining_task
from tests.test_run_pretraining import PREDICTIONS, SAMPLE, SEQ

# The sample config without dropout, so packed and unpacked outputs can be compared.
TINY = dataclasses.replace(configs.BertConfig.from_json_file(str(SAMPLE / "bert_config.json")),
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def write_short_documents(tmp_path, next_sentence: bool = True, shards: int = 2,
                          masking: str = "static") -> str:
  """create_pretraining_data's records of short documents (a few lines of 2 to 6 words of the
  sample vocab), so instances are short and rows hold several; returns the shards' pattern."""
  vocab = [t for t in tokenization.load_vocab(str(SAMPLE / "vocab.txt")) if t.isalpha()][:60]
  rng = random.Random(0)
  docs = ["\n".join(" ".join(rng.sample(vocab, rng.randint(2, 6)))
                    for _ in range(rng.randint(2, 4))) for _ in range(40)]
  (tmp_path / "short.txt").write_text("\n\n".join(docs) + "\n")
  return cpd.create_pretraining_data(instances.DataConfig(
      input_file=str(tmp_path / "short.txt"), output_file=str(tmp_path / "data" / "short"),
      vocab_file=str(SAMPLE / "vocab.txt"), do_lower_case=False, max_seq_length=SEQ,
      max_predictions_per_seq=PREDICTIONS, dupe_factor=2, num_output_shards=shards,
      next_sentence_prediction=next_sentence, masking=masking))["file_pattern"]


def read_instances(pattern: str, next_sentence: bool = True):
  """Every instance of the records, in file order, as arrays (run_pretraining's parser)."""
  spec = pretraining_task.feature_spec(SEQ, PREDICTIONS, pretraining_task.DataFormat(
      next_sentence_prediction=next_sentence))
  dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)).batch(10000).map(
      lambda serialized: tf.io.parse_example(serialized, spec))
  return {key: value.numpy() for key, value in next(iter(dataset)).items()}


def packed_rows(tmp_path, pattern: str, next_sentence: bool = True, seed: int = 3,
                masked_lm_prob=None):
  """Every packed row of the records, parsed as training parses them, and the packed file."""
  packed = packed_pretraining.prepare_packed(
      sorted(tf.io.gfile.glob(pattern)), SEQ, PREDICTIONS, next_sentence, seed,
      str(tmp_path / "packed" / "train_packed.tf_record"), masked_lm_prob)
  dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(packed.path)).batch(packed.num_rows).map(
      packed_pretraining.packed_parser(packed))
  return next(iter(dataset)), packed


def instance_of_each_slot(rows, instances):
  """(row, slot, index of the instance in `instances`) of every real slot of `rows`, found by
  the instance's tokens (a --dupe_factor copy may repeat them: its masks tell them apart)."""
  lengths = instances["input_mask"].sum(axis=1)
  found, taken = [], set()
  for r, s in zip(*np.nonzero(rows[packing.EXAMPLE_WEIGHTS].numpy())):
    start = int(rows[packing.EXAMPLE_STARTS][r, s])
    length = int((rows[packing.EXAMPLE_IDS][r].numpy() == s + 1).sum())
    tokens = rows["input_ids"][r, start:start + length].numpy()
    index = next(i for i in range(len(lengths)) if i not in taken and lengths[i] == length
                 and (instances["input_ids"][i, :length] == tokens).all())
    taken.add(index)
    found.append((r, s, index))
  return found
