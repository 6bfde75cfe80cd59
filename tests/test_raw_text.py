"""serving.raw_text: the in-graph pre- and post-processing equal the Python path on the same logits.

The reference is the scripts' own code: data/classifier.convert_single_example for the classifier,
data/squad_features.convert_examples_to_features and squad_predictions.write_predictions for QA,
run on the same texts with FullTokenizer. A stand-in model gives logits from each token and
position, rounded so that many candidates tie (which exercises the tie order), or not.
"""

import itertools
import json
import pathlib
from typing import Dict, List

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_tf import modeling, tokenization
from bert_tf.checkpoints import configs
from bert_tf.data import classifier as classifier_data
from bert_tf.data import sentence_pairs
from bert_tf.data import squad_examples, squad_features, squad_predictions
from bert_tf.serving import raw_text

from conftest import PROJECT_ROOT, shared_path

SAMPLE_VOCAB = PROJECT_ROOT / "sample_data" / "vocab.txt"  # cased, 378 tokens
FEATURE_NAMES = raw_text.INPUT_NAMES

# Our own texts with what get_final_text and the windows must get right: accents and capitals
# (lowercasing changes them), punctuation inside words, U+00A0 (a break for BERT, not for SQuAD),
# U+202F/tabs/newlines/double spaces (breaks for both), a control character (dropped by the
# tokenizer, so the alignment fails and the whole word is the answer), CJK, a 210-letter word
# ([UNK]) and words out of the vocab.
CONTEXTS = [
    "Steve Smith's café opened in 1911; its naïve résumé-writing class costs $5.50 a week.",
    "The  lighthouse\twas lit on 3\u202fMarch 1911.\nIts lamp could be seen 30\u00a0km out.",
    "Control\x0bcharacters vanish: ab\x0bcd is one word, and 中文字符 are split per character.",
    "A " + "x" * 210 + " word is unknown, as is Þórsmörk, but Who Why and When are not.",
    " ".join(f"Word{i} is followed by item-{i}, costing {i * 7 % 100} coins." for i in range(40)),
]
QUESTIONS = ["Who opened the café?", "When was it lit?", "What vanishes?", "What is unknown?",
             "What does the twentieth word cost, and who said so in the long question here?"]


class TokenLogits(tf.Module):
  """A stand-in span model: logits from a random table of token ids plus a wave over positions."""

  def __init__(self, vocab_size: int, seed: int, rounded: bool):
    super().__init__()
    rng = np.random.default_rng(seed)
    self.table = tf.constant(rng.normal(0, 2, (vocab_size, 2)), tf.float32)
    self.rounded = rounded

  def __call__(self, features: Dict[str, tf.Tensor], training: bool = False):
    logits = tf.gather(self.table, features["input_ids"])
    positions = tf.cast(tf.range(tf.shape(features["input_ids"])[1]), tf.float32)
    logits += tf.stack([tf.sin(positions * 0.7), tf.cos(positions * 1.3)], axis=-1)[None]
    if self.rounded:
      logits = tf.round(logits)
    return dict(start_logits=logits[..., 0], end_logits=logits[..., 1])


# The sample vocab is cased; lowercasing with it still has to give the Python path's answers.
VOCAB_CASES = [(str(SAMPLE_VOCAB), False), (str(SAMPLE_VOCAB), True)]


def _squad_file(path: pathlib.Path, contexts: List[str], questions: List[str]) -> str:
  """A SQuAD file asking every question about every context."""
  paragraphs = [{"context": context, "qas": [{"id": f"{c}-{q}", "question": question}
                                             for q, question in enumerate(questions)]}
                for c, context in enumerate(contexts)]
  path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))
  return str(path)


def _python_predictions(model, path: str, vocab_file: str, do_lower_case: bool,
                        settings: Dict, tmp_path: pathlib.Path):
  """run_squad's path: features with FullTokenizer, the model, write_predictions."""
  examples = squad_examples.read_squad_examples(path, is_training=False)
  features: List[squad_features.InputFeatures] = []
  squad_features.convert_examples_to_features(
      examples, tokenization.FullTokenizer(vocab_file, do_lower_case),
      settings["max_seq_length"], settings["doc_stride"], settings["max_query_length"], False,
      features.append)
  logits = model({name: tf.constant([getattr(f, name) for f in features]) for name in
                  FEATURE_NAMES})
  # Over each window's own tokens, as run_squad's default (--length_buckets) prediction gives them.
  results = [squad_predictions.RawResult(f.unique_id,
                                         logits["start_logits"][i].numpy()[:len(f.tokens)],
                                         logits["end_logits"][i].numpy()[:len(f.tokens)])
             for i, f in enumerate(features)]
  v2 = settings["version_2_with_negative"]

  def predict(threshold):
    return squad_predictions.write_predictions(
        examples, features, results, settings["n_best_size"], settings["max_answer_length"],
        do_lower_case, str(tmp_path / "predictions.json"), str(tmp_path / "nbest.json"),
        str(tmp_path / "null_odds.json") if v2 else None, v2, threshold)
  if v2 and settings["null_score_diff_threshold"] is None:  # half the questions answered
    predict(0.0)
    odds = json.loads((tmp_path / "null_odds.json").read_text())
    settings["null_score_diff_threshold"] = float(np.median(list(odds.values())))
  predictions = predict(settings["null_score_diff_threshold"])
  nbest = json.loads((tmp_path / "nbest.json").read_text())
  return examples, features, predictions, nbest


def _served_answers(model, vocab_file, do_lower_case, settings, contexts, questions):
  answerer = raw_text.QuestionAnswerer(model, vocab_file, do_lower_case, **settings)
  pairs = list(itertools.product(range(len(contexts)), range(len(questions))))
  served = answerer.answer(tf.constant([questions[q] for _, q in pairs]),
                           tf.constant([contexts[c] for c, _ in pairs]))
  return pairs, {key: value.numpy() for key, value in served.items()}


def _check_answers(pairs, served, contexts, examples, predictions, nbest, settings):
  """Answers equal predictions.json; characters and score are those of that answer."""
  for row, (c, q) in enumerate(pairs):
    qas_id = f"{c}-{q}"
    answer = served["answer"][row].decode()
    assert answer == predictions[qas_id], (qas_id, contexts[c])
    begin, end = served["start_char"][row], served["end_char"][row]
    if answer in ("", "empty"):
      assert begin == end == -1
      continue
    # The context's characters hold the answer's words, with the context's own whitespace.
    assert " ".join(squad_examples._split_context(contexts[c][begin:end])[0]) == answer
    best = next(entry for entry in nbest[qas_id] if entry["text"] == answer)
    assert served["score"][row] == pytest.approx(best["start_logit"] + best["end_logit"],
                                                 abs=1e-5)


SETTINGS = [
    dict(max_seq_length=48, doc_stride=16, max_query_length=12, n_best_size=20,
         max_answer_length=30, version_2_with_negative=False, null_score_diff_threshold=0.0),
    dict(max_seq_length=40, doc_stride=32, max_query_length=30, n_best_size=5,
         max_answer_length=4, version_2_with_negative=False, null_score_diff_threshold=0.0),
    dict(max_seq_length=64, doc_stride=8, max_query_length=8, n_best_size=3,
         max_answer_length=10, version_2_with_negative=True, null_score_diff_threshold=1.0),
    dict(max_seq_length=64, doc_stride=128, max_query_length=16, n_best_size=20,
         max_answer_length=30, version_2_with_negative=True, null_score_diff_threshold=None),
]


@pytest.mark.parametrize("settings,rounded", list(zip(SETTINGS, [True, False, True, False])))
@pytest.mark.parametrize("vocab_file,do_lower_case", VOCAB_CASES)
def test_answers_equal_write_predictions(tmp_path, vocab_file, do_lower_case, settings, rounded):
  settings = dict(settings)  # None: the median null odds, filled in below
  model = TokenLogits(len(tokenization.load_vocab(vocab_file)), seed=SETTINGS.index(settings),
                      rounded=rounded)
  path = _squad_file(tmp_path / "squad.json", CONTEXTS, QUESTIONS)
  examples, features, predictions, nbest = _python_predictions(
      model, path, vocab_file, do_lower_case, settings, tmp_path)
  assert len(features) > 2 * len(examples)  # long contexts really are split into windows
  pairs, served = _served_answers(model, vocab_file, do_lower_case, settings, CONTEXTS, QUESTIONS)
  _check_answers(pairs, served, CONTEXTS, examples, predictions, nbest, settings)
  answers = list(predictions.values())
  assert len(set(answers)) >= 2  # not one degenerate answer everywhere
  if settings["version_2_with_negative"]:
    assert 0 < answers.count("") < len(answers)


def test_real_vocab_answers_equal_write_predictions(tmp_path):
  vocab_file = str(shared_path("vocabs", "bert-base-uncased-vocab.txt"))
  model = TokenLogits(len(tokenization.load_vocab(vocab_file)), seed=7, rounded=False)
  settings = SETTINGS[0]
  path = _squad_file(tmp_path / "squad.json", CONTEXTS, QUESTIONS)
  examples, _, predictions, nbest = _python_predictions(model, path, vocab_file, True, settings,
                                                        tmp_path)
  pairs, served = _served_answers(model, vocab_file, True, settings, CONTEXTS, QUESTIONS)
  _check_answers(pairs, served, CONTEXTS, examples, predictions, nbest, settings)


def test_contexts_without_words_give_no_answer(tmp_path):
  contexts = ["", "  \t\n\u202f "]
  for v2, expected in ((False, "empty"), (True, "")):
    settings = dict(SETTINGS[0], version_2_with_negative=v2)
    pairs, served = _served_answers(TokenLogits(378, 0, False), str(SAMPLE_VOCAB), False,
                                    settings, contexts, QUESTIONS[:2])
    assert [a.decode() for a in served["answer"]] == [expected] * len(pairs)
    assert list(served["start_char"]) == [-1] * len(pairs)


def test_windows_equal_convert_examples_to_features(tmp_path):
  settings = dict(max_seq_length=40, doc_stride=7, max_query_length=9)
  tokenizer = tokenization.FullTokenizer(str(SAMPLE_VOCAB), False)
  examples = squad_examples.read_squad_examples(
      _squad_file(tmp_path / "s.json", CONTEXTS, QUESTIONS), is_training=False)
  expected: List[squad_features.InputFeatures] = []
  squad_features.convert_examples_to_features(examples, tokenizer, is_training=False,
                                              output_fn=expected.append, **settings)
  answerer = raw_text.QuestionAnswerer(TokenLogits(378, 0, False), str(SAMPLE_VOCAB), False,
                                       **settings)
  context = raw_text._clean_utf8(tf.constant([e.doc_tokens and " ".join(e.doc_tokens)
                                              for e in examples]))
  words, _, _ = raw_text._context_words(context)
  assert words.to_list() == [[w.encode() for w in e.doc_tokens] for e in examples]
  doc_ids, _ = answerer._document(words)
  windows = answerer._windows(tf.constant([e.question_text for e in examples]), doc_ids)
  assert windows["example"].numpy().tolist() == [f.example_index for f in expected]
  for name in FEATURE_NAMES:
    assert windows[name].numpy().tolist() == [getattr(f, name) for f in expected], name


def test_context_spaces_are_squads():
  breaks = [cp for cp in range(0x110000) if not 0xd800 <= cp < 0xe000
            and squad_examples._CONTEXT_WORD.fullmatch(chr(cp)) is None]
  assert sorted(raw_text.CONTEXT_SPACES) == breaks


def test_context_words_and_characters_follow_squad():
  text = " a\u00a0b  c\td\u202fé\n\nfin "
  words, begins, ends = raw_text._context_words(tf.constant([text, "", "x"]))
  expected, starts = squad_examples._split_context(text)
  assert [w.decode() for w in words[0].numpy()] == expected
  assert begins[0].numpy().tolist() == starts
  assert [text[b:e] for b, e in zip(begins[0].numpy(), ends[0].numpy())] == expected
  assert words.row_lengths().numpy().tolist() == [len(expected), 0, 1]


# ---------------------------------------------------------------------------------------------
# Classifier


def test_pair_lengths_equal_truncate_seq_pair():
  cases = [(a, b, m) for a in range(9) for b in range(9) for m in range(1, 12)]
  for max_length in range(1, 12):
    subset = [(a, b) for a, b, m in cases if m == max_length]
    got_a, got_b = raw_text._pair_lengths(tf.constant([a for a, _ in subset]),
                                          tf.constant([b for _, b in subset]), max_length)
    for (a, b), kept_a, kept_b in zip(subset, got_a.numpy(), got_b.numpy()):
      tokens_a, tokens_b = list(range(a)), list(range(b))
      sentence_pairs.truncate_seq_pair(tokens_a, tokens_b, max_length)
      assert (kept_a, kept_b) == (len(tokens_a), len(tokens_b)), (a, b, max_length)


class ConstantLogits(tf.Module):
  """A stand-in classifier: logits from the mean of a random table over the real tokens."""

  def __init__(self, vocab_size: int, num_labels: int):
    super().__init__()
    self.table = tf.constant(np.random.default_rng(3).normal(0, 1, (vocab_size, num_labels)),
                             tf.float32)

  def __call__(self, features, training=False):
    mask = tf.cast(features["input_mask"], tf.float32)[..., None]
    logits = tf.reduce_sum(tf.gather(self.table, features["input_ids"]) * mask, axis=1)
    return dict(logits=logits / tf.reduce_sum(mask, axis=1))


@pytest.mark.parametrize("pair", [False, True])
@pytest.mark.parametrize("max_seq_length", [5, 16])
def test_classifier_features_equal_convert_single_example(pair, max_seq_length):
  texts = CONTEXTS + QUESTIONS + ["", "One", "Two words"]
  pairs = [(a, b if pair else None) for a in texts for b in (texts if pair else [None])]
  tokenizer = tokenization.FullTokenizer(str(SAMPLE_VOCAB), False)
  expected = [classifier_data.convert_single_example(
      10, classifier_data.InputExample("g", a, b), ["x"], max_seq_length, tokenizer)
      for a, b in pairs]
  classifier = raw_text.TextClassifier(ConstantLogits(378, 3), str(SAMPLE_VOCAB), False,
                                       max_seq_length, ["a", "b", "c"], pair)
  texts_b = [tf.constant([b for _, b in pairs])] if pair else []
  features = classifier.features(tf.constant([a for a, _ in pairs]), *texts_b)
  for name in FEATURE_NAMES:
    assert features[name].numpy().tolist() == [getattr(f, name) for f in expected], name


def test_classifier_labels_are_the_argmax_of_the_probabilities():
  classifier = raw_text.TextClassifier(ConstantLogits(378, 3), str(SAMPLE_VOCAB), False, 32,
                                       ["neg", "neu", "pos"], False)
  outputs = classifier.classify(tf.constant(CONTEXTS + QUESTIONS))
  probabilities = outputs["probabilities"].numpy()
  np.testing.assert_allclose(probabilities, tf.nn.softmax(outputs["logits"]).numpy(), rtol=1e-6)
  labels = [["neg", "neu", "pos"][i] for i in probabilities.argmax(axis=1)]
  assert [label.decode() for label in outputs["label"].numpy()] == labels
  assert len(set(labels)) > 1


class LengthSeen(tf.Module):
  """A stand-in classifier whose first logit is the sequence length it was given."""

  def __call__(self, features, training=False):
    shape = tf.shape(features["input_ids"])
    return dict(logits=tf.stack([tf.fill([shape[0]], tf.cast(shape[1], tf.float32)),
                                 tf.zeros([shape[0]])], axis=1))


@pytest.mark.parametrize("texts", [QUESTIONS[:1], QUESTIONS, CONTEXTS[:3], CONTEXTS])
def test_served_model_runs_at_the_requests_longest_input(texts):
  """Not at max_seq_length: at the longest input of the request, rounded up to 16."""
  classifier = raw_text.TextClassifier(LengthSeen(), str(SAMPLE_VOCAB), False, 100, ["a", "b"],
                                       False)
  longest = classifier.features(tf.constant(texts))["input_mask"].numpy().sum(axis=1).max()
  seen = classifier.classify(tf.constant(texts))["logits"].numpy()[:, 0]
  assert set(seen) == {min(-(-longest // 16) * 16, 100)}


def test_trimmed_classifier_gives_the_full_length_logits_to_the_bit():
  config = configs.BertConfig(vocab_size=378, hidden_size=64, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=128,
                              max_position_embeddings=128)
  tf_keras.utils.set_random_seed(4)
  model = modeling.build_model(modeling.BertClassifier(config, 3))
  classifier = raw_text.TextClassifier(model, str(SAMPLE_VOCAB), False, 128, ["a", "b", "c"],
                                       False)
  texts = tf.constant(QUESTIONS + CONTEXTS[:3])
  features = classifier.features(texts)
  assert features["input_mask"].numpy().sum(axis=1).max() < 100  # trimmed below 128
  # The model at max_seq_length in a graph, as the served function ran it before trimming (a
  # graph's fused kernels round differently from eager calls, trimmed or not).
  full = tf.function(lambda features: model(features, training=False),
                     input_signature=[raw_text.features_spec(128)])(features)["logits"].numpy()
  assert np.array_equal(classifier.classify(texts)["logits"].numpy(), full)
  assert np.array_equal(classifier.classify_features(features)["logits"].numpy(), full)
