"""data.masking: dynamic masks with the static masks' statistics, reproducible per batch."""

import dataclasses
import random

import numpy as np
import pytest
import tensorflow as tf

from benchmarks.pretraining_data import write_korean_corpus
from bert_tf import tokenization
from bert_tf.corpus import create_pretraining_data as cpd
from bert_tf.corpus.instances import DataConfig, InstanceMaker, MaskedBatch
from bert_tf.data import masking
from bert_tf.tasks import pretraining as pretraining_task
from tests.conftest import shared_path
from tests.test_create_pretraining_data import PREDICTIONS, SEQ, TOKENS, english  # noqa: F401

REPEATS = 1000  # masks drawn per instance and mode


def _instances(config):
  """A window's worth of instances of the english corpus, with words of several pieces."""
  vocab = tokenization.load_vocab(config.vocab_file)
  tokenizer = tokenization.FullTokenizer(config.vocab_file, True)
  text = open(config.input_file, encoding="utf-8").read().replace("play", "playing")
  documents = [[[vocab[t] for t in tokenizer.tokenize(line)] for line in document.splitlines()]
               for document in text.split("\n\n") if document.strip()]
  maker = InstanceMaker(config, vocab)
  rng = random.Random(0)
  instances = [instance for i in range(len(documents))
               for instance in maker.from_document(documents, i, rng)]
  return maker, vocab, instances


def _features(batch: MaskedBatch):
  width = batch.input_ids.shape[1]
  columns = np.arange(width)
  real = columns < batch.lengths[:, None]
  return {"input_ids": tf.constant(batch.input_ids, tf.int32),
          "input_mask": tf.constant(real, tf.int32),
          "segment_ids": tf.constant(real & (columns >= batch.num_a[:, None]), tf.int32)}


def _static_and_dynamic(config):
  """The instances, the vocab, the unmasked batch of REPEATS copies of them, its dynamic
  masking, and which tokens each mode masked ([REPEATS, instances, positions] bools)."""
  maker, vocab, instances = _instances(config)
  repeated = instances * REPEATS
  static = maker.mask_batch(repeated, random.Random(1), np.random.default_rng(1))
  unmasked = maker.pad_batch(repeated)
  masker = masking.DynamicMasker(vocab, config.max_predictions_per_seq, config.masked_lm_prob,
                                 config.do_whole_word_mask)
  dynamic = {k: v.numpy() for k, v in masker(_features(unmasked), tf.constant([1, 2])).items()}
  results = {}
  for name, positions, weights in (
      ("static", static.positions, np.arange(PREDICTIONS) < static.num_masked[:, None]),
      ("dynamic", dynamic["masked_lm_positions"], dynamic["masked_lm_weights"] > 0)):
    masked = np.zeros(unmasked.input_ids.shape, bool)
    masked[np.nonzero(weights)[0], positions[weights]] = True
    results[name] = masked.reshape(REPEATS, len(instances), -1)
  return instances, vocab, unmasked, dynamic, results


@pytest.mark.parametrize("whole_words", [False, True])
def test_dynamic_masks_have_the_static_statistics(english, whole_words):
  """The same instances masked REPEATS times statically (NumPy) and dynamically (in the graph).

  Per instance and position, the masking rate of each mode estimates the same probability p:
  the difference of the two rates has a standard error of sqrt(2 p (1 - p) / REPEATS), and over
  the ~800 (instance, position) cells a |z| above 5 has a chance of about 5e-4 for a correct
  masker (the draws are seeded: the outcome is fixed; measured max |z| 2.9 and 3.2). Masking
  [CLS]/[SEP] or a wrong count moves cells by far more; masking pieces instead of words gives
  |z| 9. The number masked per instance must agree exactly without whole words (it is
  min(num_to_predict, candidates)) and in mean with them.
  """
  config = dataclasses.replace(english, do_whole_word_mask=whole_words, masked_lm_prob=0.2)
  instances, vocab, unmasked, dynamic, results = _static_and_dynamic(config)
  static_rate = results["static"].mean(axis=0)
  dynamic_rate = results["dynamic"].mean(axis=0)
  pooled = (static_rate + dynamic_rate) / 2
  error = np.sqrt(2 * pooled * (1 - pooled) / REPEATS)
  never = pooled == 0
  assert not dynamic_rate[never].any() and not static_rate[never].any()
  z = np.abs(static_rate - dynamic_rate)[~never] / error[~never]
  assert z.max() < 5, z.max()
  # [CLS], both [SEP]s and padding are never masked.
  for i, (tokens, num_a, _) in enumerate(instances):
    assert not dynamic_rate[i, [0, num_a - 1, len(tokens) - 1]].any()
    assert not dynamic_rate[i, len(tokens):].any()
  counts = {name: masked.sum(axis=2) for name, masked in results.items()}
  if whole_words:
    assert abs(counts["static"].mean() - counts["dynamic"].mean()) < 0.05
    subword = np.array([token.startswith("##") for token in vocab])[unmasked.input_ids]
    masked = results["dynamic"].reshape(unmasked.input_ids.shape)
    previous = np.pad(masked[:, :-1], [[0, 0], [1, 0]])
    assert subword.any() and (masked[subword] == previous[subword]).all()  # whole words
  else:
    np.testing.assert_array_equal(counts["static"], counts["dynamic"])
  # Dynamic: ascending positions, labels the original tokens, 80% [MASK] / 10% kept / 10% random.
  weights = dynamic["masked_lm_weights"] > 0
  positions = dynamic["masked_lm_positions"]
  assert (np.diff(np.where(weights, positions, SEQ), axis=1) >= 0).all()
  assert not positions[~weights].any() and not dynamic["masked_lm_ids"][~weights].any()
  originals = np.take_along_axis(unmasked.input_ids, positions, 1)[weights]
  np.testing.assert_array_equal(dynamic["masked_lm_ids"][weights], originals)
  shown = np.take_along_axis(dynamic["input_ids"], positions, 1)[weights]
  as_mask, kept = np.mean(shown == vocab["[MASK]"]), np.mean(shown == originals)
  # Over ~150000 masked tokens, a share's standard error is at most 0.0013: 0.006 is ~5 of them.
  assert abs(as_mask - 0.8) < 0.006 and abs(kept - (0.1 + 0.1 / len(vocab))) < 0.006
  untouched = ~results["dynamic"].reshape(unmasked.input_ids.shape)
  np.testing.assert_array_equal(dynamic["input_ids"][untouched], unmasked.input_ids[untouched])


def test_masks_are_a_pure_function_of_the_seed_and_the_batch(english):
  _, vocab, instances = _instances(english)
  maker = InstanceMaker(english, vocab)
  features = _features(maker.pad_batch(instances[:8]))
  masker = masking.DynamicMasker(vocab, PREDICTIONS, 0.15, False)
  seeds = masking.batch_seeds(5, 0)
  first, again = masker(features, seeds(3)), masker(features, seeds(3))
  other_batch, other_stream = masker(features, seeds(4)), masker(features,
                                                                 masking.batch_seeds(5, 1)(3))
  for name in first:
    np.testing.assert_array_equal(first[name], again[name])
  for other in (other_batch, other_stream):
    assert not np.array_equal(first["masked_lm_positions"], other["masked_lm_positions"])
  # Masking from batch k on (a resume) gives the batches masked from the start, from k on.
  dataset = tf.data.Dataset.from_tensors(features).repeat(6)
  whole = list(masking.mask_dataset(dataset, masker, 5, 0).as_numpy_iterator())
  resumed = list(masking.mask_dataset(dataset.skip(4), masker, 5, 0, first_batch=4)
                 .as_numpy_iterator())
  for got, want in zip(resumed, whole[4:], strict=True):
    for name in want:
      np.testing.assert_array_equal(got[name], want[name])


def test_more_predictions_than_positions_keep_static_shapes():
  vocab = {t: i for i, t in enumerate(TOKENS)}
  masker = masking.DynamicMasker(vocab, 12, 0.5, True)
  features = {"input_ids": tf.constant([[2, 5, 14, 15, 3, 6, 3, 0]]),
              "input_mask": tf.constant([[1] * 7 + [0]]),
              "segment_ids": tf.constant([[0] * 5 + [1, 1, 0]])}
  out = masker(features, tf.constant([0, 0]))
  assert out["masked_lm_positions"].shape == out["masked_lm_weights"].shape == (1, 12)
  # Candidates: the, play ##ing (one word), cat; round(7 * 0.5) = 4 (ties to even) takes all.
  assert out["masked_lm_positions"].numpy().tolist() == [[1, 2, 3, 5] + [0] * 8]
  assert out["masked_lm_ids"].numpy().tolist() == [[5, 14, 15, 6] + [0] * 8]
  assert out["masked_lm_weights"].numpy().tolist() == [[1.0] * 4 + [0.0] * 8]


def test_statistics_of_dynamic_korean_data(tmp_path):
  """Dynamic data of real Korean text, masked by the pipeline's masker: the statistics the static
  data meets (test_create_pretraining_data.test_statistics_on_real_korean_text)."""
  corpus = shared_path("corpus_ko")
  vocab_file = shared_path("vocabs", "kcbert-base-vocab.txt")
  write_korean_corpus(str(tmp_path / "ko.txt"), max_lines=6000, corpus=corpus)
  config = DataConfig(input_file=str(tmp_path / "ko.txt"), output_file=str(tmp_path / "ko"),
                      vocab_file=str(vocab_file), do_lower_case=False, dupe_factor=1,
                      documents_per_shard=200, masking="dynamic")
  metadata = cpd.create_pretraining_data(config)
  data_format = pretraining_task.check_data_shapes(metadata["file_pattern"], 128, 20)
  assert data_format.dynamic and data_format.next_sentence_prediction
  spec = pretraining_task.feature_spec(128, 20, data_format)
  vocab = tokenization.load_vocab(str(vocab_file))
  masker = masking.DynamicMasker(vocab, 20, data_format.masked_lm_prob,
                                 data_format.do_whole_word_mask)
  dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(metadata["file_pattern"])).batch(512).map(
      lambda s: {k: tf.cast(v, tf.int32) for k, v in tf.io.parse_example(s, spec).items()})
  batches = list(masking.mask_dataset(dataset, masker, 1, 0).as_numpy_iterator())
  data = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert len(data["input_ids"]) == metadata["counts"]["instances"]
  masked = data["masked_lm_weights"].sum()
  assert 0.13 < masked / data["input_mask"].sum() < 0.16
  weights = data["masked_lm_weights"] > 0
  at_positions = np.take_along_axis(data["input_ids"], data["masked_lm_positions"], 1)[weights]
  originals = data["masked_lm_ids"][weights]
  as_mask = np.mean(at_positions == vocab["[MASK]"])
  kept = np.mean(at_positions == originals)
  assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.02
  assert abs((1 - as_mask - kept) - 0.1) < 0.02
  assert 0.48 < data["next_sentence_labels"].mean() < 0.62
