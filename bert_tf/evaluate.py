"""Official SQuAD 1.1, SQuAD 2.0 and KorQuAD 1.0 metrics, as a library and a command.

  python -m bert_tf.evaluate DATASET.json PREDICTIONS.json [--na-prob-file null_odds.json]
      [--metric squad1|squad2|korquad1] [--na-prob-thresh 1.0]

prints the metrics as JSON. The metric follows the dataset's "version" ("KorQuAD_v1.0..." ->
korquad1, "1.1" -> squad1, "v2.0" -> squad2) unless --metric says otherwise. The numbers equal
those of each benchmark's official evaluation script (written here from their definitions):

- squad1: answers normalized (lowercase, no punctuation, no a/an/the, single spaces); exact match
  and word-level F1, the best over the gold answers, averaged and scaled to 100.
- squad2: the same normalization; an unanswerable question's only gold answer is "". Reports
  exact/f1/total overall and for HasAns/NoAns questions; given no-answer probabilities, answers
  whose probability exceeds --na-prob-thresh count as "" and best_exact/best_f1 report the best
  threshold.
- korquad1: quotes and brackets become spaces first, no article removal, and F1 counts characters
  (of the whitespace-split words) instead of words.

A question without a prediction scores 0 and is counted under "missing" (the official SQuAD 2.0
script would crash; with every prediction present the results are the official ones).
"""

import argparse
import collections
import json
import re
import string
import sys
from typing import (Any, Callable, Dict, Iterator, List, Mapping, NoReturn, Optional, Sequence,
                    Tuple)

import tensorflow as tf
from absl import logging

from bert_tf.cli import flags as cli_flags
from bert_tf.data import squad_examples
from bert_tf.io import files as io_files

METRICS = ("squad1", "squad2", "korquad1")
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_KORQUAD_SPACED = str.maketrans({char: " " for char in "'\"《》<>〈〉()‘’"})


def normalize_squad(text: str) -> str:
  """SQuAD's answer normalization: lowercase, drop punctuation and articles, single spaces."""
  text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_korquad(text: str) -> str:
  """KorQuAD 1.0's: quotes and brackets to spaces, lowercase, drop punctuation, single spaces."""
  text = text.translate(_KORQUAD_SPACED).lower()
  return " ".join("".join(char for char in text if char not in _PUNCTUATION).split())


def _overlap_f1(prediction: Sequence[str], gold: Sequence[str]) -> float:
  """F1 of the multiset overlap of two token sequences (0 when nothing is shared)."""
  common = sum((collections.Counter(prediction) & collections.Counter(gold)).values())
  if common == 0:
    return 0
  precision = 1.0 * common / len(prediction)
  recall = 1.0 * common / len(gold)
  return (2 * precision * recall) / (precision + recall)


def squad1_f1(prediction: str, gold: str) -> float:
  """SQuAD 1.1 F1 over normalized words."""
  return _overlap_f1(normalize_squad(prediction).split(), normalize_squad(gold).split())


def squad2_f1(prediction: str, gold: str) -> float:
  """SQuAD 2.0 F1: as SQuAD 1.1, except that an empty side scores 1 only if both are empty."""
  prediction_words = normalize_squad(prediction).split() if prediction else []
  gold_words = normalize_squad(gold).split() if gold else []
  if not prediction_words or not gold_words:
    return int(prediction_words == gold_words)
  return _overlap_f1(prediction_words, gold_words)


def korquad1_f1(prediction: str, gold: str) -> float:
  """KorQuAD 1.0 F1 over the characters of the normalized words (spaces excluded)."""
  return _overlap_f1([char for word in normalize_korquad(prediction).split() for char in word],
                     [char for word in normalize_korquad(gold).split() for char in word])


def _questions(dataset: Sequence[Mapping[str, Any]]) -> Iterator[Tuple[str, List[str]]]:
  """(id, gold answer texts) of every question in a SQuAD-format "data" list."""
  for article in dataset:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        yield qa["id"], [answer["text"] for answer in qa["answers"]]


def _max_scores(dataset: Sequence[Mapping[str, Any]], predictions: Mapping[str, str],
                normalize: Callable[[str], str], f1: Callable[[str, str], float],
                unanswerable_gold: bool
                ) -> Tuple[Dict[str, float], Dict[str, float], Dict[str, bool], List[str]]:
  """Per question: best exact match and F1 over the gold answers, has-answer, and missing ids.

  With `unanswerable_gold` (SQuAD 2.0) gold answers that normalize to nothing are dropped and a
  question left without any has the single gold answer "".
  """
  exact, f1_scores, has_answer, missing = {}, {}, {}, []
  for qid, golds in _questions(dataset):
    if unanswerable_gold:
      has_answer[qid] = bool(golds)
      golds = [gold for gold in golds if normalize(gold)] or [""]
    if qid not in predictions:
      missing.append(qid)
      exact[qid] = f1_scores[qid] = 0
      continue
    prediction = predictions[qid]
    exact[qid] = max(int(normalize(prediction) == normalize(gold)) for gold in golds)
    f1_scores[qid] = max(f1(prediction, gold) for gold in golds)
  return exact, f1_scores, has_answer, missing


def _percent(scores: Mapping[str, float], qids: Sequence[str]) -> float:
  return 100.0 * sum(scores[qid] for qid in qids) / len(qids)


def _best_threshold(predictions: Mapping[str, str], scores: Mapping[str, float],
                    na_probs: Mapping[str, float], has_answer: Mapping[str, bool],
                    answered: Sequence[str]) -> Tuple[float, float]:
  """The best score over no-answer thresholds, and that threshold (the official v2 search).

  Starting from "every answered question predicts no answer", questions are switched to their
  answer in increasing order of no-answer probability (equal ones in the order of `na_probs`);
  the best running total wins, the earliest on ties.
  """
  score = sum(1 for qid in answered if not has_answer[qid])
  best_score, best_threshold = score, 0.0
  answered = set(answered)
  for qid in sorted((qid for qid in na_probs if qid in answered), key=na_probs.__getitem__):
    if has_answer[qid]:
      score += scores[qid]
    elif predictions[qid]:
      score -= 1
    if score > best_score:
      best_score, best_threshold = score, na_probs[qid]
  return 100.0 * best_score / len(scores), best_threshold


def _squad2(dataset: Sequence[Mapping[str, Any]], predictions: Mapping[str, str],
            na_probs: Optional[Mapping[str, float]], na_prob_thresh: float) -> Dict[str, Any]:
  exact_raw, f1_raw, has_answer, missing = _max_scores(dataset, predictions, normalize_squad,
                                                       squad2_f1, unanswerable_gold=True)
  answered = [qid for qid in exact_raw if qid in predictions]
  probabilities = na_probs if na_probs is not None else {qid: 0.0 for qid in answered}
  lacking = [qid for qid in answered if qid not in probabilities]
  if lacking:
    raise ValueError(f"The no-answer probabilities lack {len(lacking)} answered questions, e.g. "
                     f"{lacking[0]!r}.")
  exact, f1_scores = dict(exact_raw), dict(f1_raw)
  for qid in answered:
    if probabilities[qid] > na_prob_thresh:
      exact[qid] = f1_scores[qid] = float(not has_answer[qid])
  qids = list(exact)
  results: Dict[str, Any] = {"exact": _percent(exact, qids), "f1": _percent(f1_scores, qids),
                             "total": len(qids)}
  for prefix, wanted in (("HasAns", True), ("NoAns", False)):
    subset = [qid for qid in qids if has_answer[qid] == wanted]
    if subset:
      results.update({f"{prefix}_exact": _percent(exact, subset),
                      f"{prefix}_f1": _percent(f1_scores, subset), f"{prefix}_total": len(subset)})
  if na_probs is not None:
    results["best_exact"], results["best_exact_thresh"] = _best_threshold(
        predictions, exact_raw, probabilities, has_answer, answered)
    results["best_f1"], results["best_f1_thresh"] = _best_threshold(
        predictions, f1_raw, probabilities, has_answer, answered)
  results["missing"] = len(missing)
  _log_missing(missing)
  return results


def _log_missing(missing: List[str]) -> None:
  if missing:
    logging.warning("%d questions have no prediction and score 0, e.g. %s.", len(missing),
                    ", ".join(missing[:5]))


def metric_for_version(version: str) -> str:
  """The metric of a dataset "version" string; a ValueError when it is not a known one."""
  if version.startswith("KorQuAD_v1"):
    return "korquad1"
  if version == "1.1":
    return "squad1"
  if version == "v2.0":
    return "squad2"
  raise ValueError(f"Unknown dataset version {version!r}: choose the metric with --metric "
                   f"({', '.join(METRICS)}).")


# Contexts with at least this share of Hangul among their letters are Korean (_hangul_share).
_KOREAN_SHARE = 0.3


def _hangul_share(dataset: Mapping[str, Any], max_chars: int = 100_000) -> float:
  """The share of Hangul syllables among the letters of the first contexts."""
  text = "".join(paragraph.get("context", "") for article in dataset.get("data", [])
                 for paragraph in article.get("paragraphs", []))[:max_chars]
  letters = [c for c in text if c.isalpha()]
  return sum("\uac00" <= c <= "\ud7a3" for c in letters) / len(letters) if letters else 0.0


def choose_metric(dataset: Mapping[str, Any], metric: Optional[str] = None) -> str:
  """`metric`, else the one of the dataset's "version"; logs which and why, with a warning when
  the contexts are Korean but the version picks a SQuAD metric (KorQuAD's scores differently)."""
  version = str(dataset.get("version", ""))
  if metric:
    logging.info("Metric %s (--metric; the dataset's version is %r).", metric, version)
    return metric
  metric = metric_for_version(version)
  logging.info("Metric %s: the dataset's version is %r (--metric chooses another).", metric,
               version)
  share = _hangul_share(dataset)
  if metric != "korquad1" and share >= _KOREAN_SHARE:
    logging.warning("The contexts are Korean (%.0f%% of their letters are Hangul) but version %r "
                    "picks the SQuAD metric %s. KorQuAD's own metric normalises and scores "
                    "answers character by character: for KorQuAD-style data score with "
                    "`python -m bert_tf.evaluate --metric=korquad1`.", 100 * share, version,
                    metric)
  return metric


def evaluate(dataset: Mapping[str, Any], predictions: Mapping[str, str],
             metric: Optional[str] = None, na_probs: Optional[Mapping[str, float]] = None,
             na_prob_thresh: float = 1.0) -> Dict[str, Any]:
  """Scores `predictions` (question id -> answer text) against a SQuAD-format dataset.

  `metric` defaults to the one of `dataset["version"]`. `na_probs` (question id -> no-answer
  probability or null odds) applies to squad2 only.
  """
  metric = choose_metric(dataset, metric)
  if metric not in METRICS:
    raise ValueError(f"Unknown metric {metric!r}; expected one of {', '.join(METRICS)}.")
  if na_probs is not None and metric != "squad2":
    raise ValueError(f"No-answer probabilities apply to squad2 only, not {metric}.")
  if metric == "squad2":
    return _squad2(dataset["data"], predictions, na_probs, na_prob_thresh)
  normalize, f1 = ((normalize_squad, squad1_f1) if metric == "squad1" else
                   (normalize_korquad, korquad1_f1))
  exact, f1_scores, _, missing = _max_scores(dataset["data"], predictions, normalize, f1,
                                             unanswerable_gold=False)
  _log_missing(missing)
  qids = list(exact)
  return {"exact_match": _percent(exact, qids), "f1": _percent(f1_scores, qids),
          "total": len(qids), "missing": len(missing)}


def evaluate_files(dataset_file: str, prediction_file: str, na_prob_file: Optional[str] = None,
                   output_file: Optional[str] = None, metric: Optional[str] = None,
                   na_prob_thresh: float = 1.0) -> Optional[Dict[str, Any]]:
  """`evaluate` on files (local or gs://), optionally writing the metrics to `output_file`.

  Returns None, with a warning, for a dataset whose questions carry no "answers" (an unlabeled
  test file), which has nothing to score against.
  """
  for name, path in (("dataset_file", dataset_file), ("prediction_file", prediction_file),
                     ("--na-prob-file", na_prob_file)):
    if path and not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"{name} {path} does not exist. run_squad.py --do_predict writes "
                              "predictions.json (and null_odds.json with "
                              "--version_2_with_negative) to its --output_dir.")
  squad_examples.read_squad_examples(dataset_file, is_training=False)  # a clear error if malformed
  dataset = io_files.read_json(dataset_file)
  if not any("answers" in qa for article in dataset["data"] for paragraph in article["paragraphs"]
             for qa in paragraph["qas"]):
    logging.warning("%s has no answers: nothing to evaluate.", dataset_file)
    return None
  predictions = _read_mapping(prediction_file, (str,), "an answer string")
  na_probs = _read_mapping(na_prob_file, (int, float), "a number") if na_prob_file else None
  results = evaluate(dataset, predictions, metric, na_probs, na_prob_thresh)
  if output_file:
    io_files.write_json_atomic(output_file, results)
  return results


def _read_mapping(path: str, value_types: Tuple[type, ...], what: str) -> Dict[str, Any]:
  """A JSON object of question id -> value, checked, with errors naming the file."""
  try:
    mapping = io_files.read_json(path)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e}).") from None
  if not isinstance(mapping, dict):
    raise ValueError(f"{path}: expected a JSON object of question id -> {what}.")
  for qid, value in mapping.items():
    if not isinstance(value, value_types) or isinstance(value, bool):
      raise ValueError(f"{path}: the value for {qid!r} should be {what}, got {value!r:.80}.")
  return mapping


class _ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage errors are one `error:` line with exit status 1, like every tool's."""

  def error(self, message: str) -> NoReturn:
    raise SystemExit(f"error: {message} (see --help)")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Command line entry point: prints the metrics as JSON and returns them."""
  parser = _ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("dataset_file", help="SQuAD-format dataset JSON")
  parser.add_argument("prediction_file", help="JSON object: question id -> answer text")
  parser.add_argument("--na-prob-file", help="squad2: JSON object of question id -> no-answer "
                      "probability (e.g. null_odds.json)")
  parser.add_argument("--metric", choices=METRICS, help="default: from the dataset's version")
  parser.add_argument("--na-prob-thresh", type=float, default=1.0,
                      help="squad2: predict no answer above this probability (default 1.0)")
  args = parser.parse_args(argv)
  with cli_flags.user_errors():  # a bad file: one line, no traceback
    results = evaluate_files(args.dataset_file, args.prediction_file, args.na_prob_file,
                             metric=args.metric, na_prob_thresh=args.na_prob_thresh)
    if results is None:
      raise ValueError(f"{args.dataset_file} has no answers to evaluate against.")
  print(json.dumps(results, indent=2, ensure_ascii=False))
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
