"""SQuAD answers from start/end logits: post-processing, the last stage of SQuAD data.

`RawResult`, `write_predictions` and `get_final_text` keep the names and semantics of
google-research/bert's run_squad.py: the n-best spans of each question's windows, their text
projected back onto the original words, and with SQuAD 2.0 the null answer and its odds, written
to predictions.json, nbest_predictions.json and null_odds.json (UTF-8, atomically). It is separate
because it runs after the model, on the examples and features of the earlier stages (from memory
or from squad_records' cache), and needs neither the tokenizer's vocab nor the TFRecords.
"""

import collections
import heapq
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bert_tf import tokenization
from bert_tf.data.squad_examples import SquadExample
from bert_tf.data.squad_features import InputFeatures
from bert_tf.io import files as io_files

RawResult = collections.namedtuple("RawResult", ["unique_id", "start_logits", "end_logits"])


_Candidate = collections.namedtuple(
    "_Candidate", ["feature_index", "start_index", "end_index", "start_logit", "end_logit"])


def _top_indexes(logits: Sequence[float], n_best_size: int) -> List[int]:
  """Indexes of the `n_best_size` largest logits, largest first, ties in index order."""
  return heapq.nlargest(n_best_size, range(len(logits)), key=logits.__getitem__)


def _softmax(scores: Sequence[float]) -> List[float]:
  """Softmax computed the way google-research does (so the probabilities match to the bit)."""
  if not scores:
    return []
  top = max(scores)
  exps = [math.exp(score - top) for score in scores]
  total = 0.0
  for value in exps:
    total += value
  return [value / total for value in exps]


def _strip_spaces(text: str) -> Tuple[str, List[int]]:
  """`text` without spaces, and for each remaining character its index in `text`."""
  kept = [index for index, char in enumerate(text) if char != " "]
  return text.replace(" ", ""), kept


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool,
                   basic_tokenizer: Optional[tokenization.BasicTokenizer] = None) -> str:
  """Projects a de-tokenized prediction back onto the original words' characters.

  `pred_text` is normalized (lowercased, accents stripped, punctuation split) while `orig_text` is
  the original span of whole words: e.g. "steve smith" in "Steve Smith's" gives "Steve Smith". The
  two are aligned character by character after removing spaces; when that is impossible the whole
  `orig_text` is returned, as google-research does.
  """
  basic_tokenizer = basic_tokenizer or tokenization.BasicTokenizer(do_lower_case=do_lower_case)
  tok_text = " ".join(basic_tokenizer.tokenize(orig_text))
  start = tok_text.find(pred_text)
  if start == -1:
    return orig_text
  end = start + len(pred_text) - 1
  orig_ns_text, orig_ns_to_s = _strip_spaces(orig_text)
  tok_ns_text, tok_ns_to_s = _strip_spaces(tok_text)
  if len(orig_ns_text) != len(tok_ns_text):
    return orig_text
  tok_s_to_ns = {s: ns for ns, s in enumerate(tok_ns_to_s)}
  if start not in tok_s_to_ns or end not in tok_s_to_ns:
    return orig_text
  return orig_text[orig_ns_to_s[tok_s_to_ns[start]]:orig_ns_to_s[tok_s_to_ns[end]] + 1]


def _span_text(example: SquadExample, feature: InputFeatures, candidate: _Candidate,
               do_lower_case: bool, basic_tokenizer: tokenization.BasicTokenizer) -> str:
  """The answer text of a non-null candidate, in the original words' spelling."""
  tok_text = " ".join(feature.tokens[candidate.start_index:candidate.end_index + 1])
  tok_text = " ".join(tok_text.replace(" ##", "").replace("##", "").split())
  orig_start = feature.token_to_orig_map[candidate.start_index]
  orig_end = feature.token_to_orig_map[candidate.end_index]
  orig_text = " ".join(example.doc_tokens[orig_start:orig_end + 1])
  return get_final_text(tok_text, orig_text, do_lower_case, basic_tokenizer)


def _example_predictions(example: SquadExample, features: List[InputFeatures],
                         results: List[RawResult], n_best_size: int, max_answer_length: int,
                         do_lower_case: bool, version_2_with_negative: bool,
                         basic_tokenizer: tokenization.BasicTokenizer
                         ) -> Tuple[List[Dict[str, Any]], Optional[_Candidate]]:
  """The n-best answers of one example, and its null candidate (v2: the lowest-scoring [CLS])."""
  candidates = []
  null = None
  for feature_index, (feature, result) in enumerate(zip(features, results)):
    start_logits, end_logits = result.start_logits, result.end_logits
    if version_2_with_negative and (
        null is None or start_logits[0] + end_logits[0] < null.start_logit + null.end_logit):
      null = _Candidate(feature_index, 0, 0, start_logits[0], end_logits[0])
    end_indexes = _top_indexes(end_logits, n_best_size)
    for start in _top_indexes(start_logits, n_best_size):
      if start not in feature.token_to_orig_map or not feature.token_is_max_context.get(start):
        continue
      for end in end_indexes:
        if end in feature.token_to_orig_map and start <= end < start + max_answer_length:
          candidates.append(_Candidate(feature_index, start, end, start_logits[start],
                                       end_logits[end]))
  if version_2_with_negative and null is None:
    null = _Candidate(-1, 0, 0, 0.0, 0.0)  # No windows (an empty context): only "" is possible.
  if null is not None:
    candidates.append(null)
  candidates.sort(key=lambda c: c.start_logit + c.end_logit, reverse=True)

  nbest = []  # (text, start_logit, end_logit)
  seen = set()
  for candidate in candidates:
    if len(nbest) >= n_best_size:
      break
    text = ""
    if candidate.start_index > 0:
      text = _span_text(example, features[candidate.feature_index], candidate, do_lower_case,
                        basic_tokenizer)
      if text in seen:
        continue
    seen.add(text)
    nbest.append((text, candidate.start_logit, candidate.end_logit))
  if null is not None and "" not in seen:
    nbest.append(("", null.start_logit, null.end_logit))
  if not nbest:
    nbest.append(("empty", 0.0, 0.0))
  probabilities = _softmax([start + end for _, start, end in nbest])
  nbest_json = [{"text": text, "probability": probability, "start_logit": start,
                 "end_logit": end}
                for (text, start, end), probability in zip(nbest, probabilities)]
  return nbest_json, null


def write_predictions(all_examples: Sequence[SquadExample], all_features: Sequence[InputFeatures],
                      all_results: Sequence[RawResult], n_best_size: int, max_answer_length: int,
                      do_lower_case: bool, output_prediction_file: str, output_nbest_file: str,
                      output_null_log_odds_file: Optional[str],
                      version_2_with_negative: bool = False,
                      null_score_diff_threshold: float = 0.0) -> Dict[str, str]:
  """compute_predictions, written to google-research's files (UTF-8 JSON, atomically)."""
  if version_2_with_negative and not output_null_log_odds_file:
    raise ValueError("version_2_with_negative needs output_null_log_odds_file.")
  predictions, all_nbest, null_odds = compute_predictions(
      all_examples, all_features, all_results, n_best_size, max_answer_length, do_lower_case,
      version_2_with_negative, null_score_diff_threshold)
  io_files.write_json_atomic(output_prediction_file, predictions)
  io_files.write_json_atomic(output_nbest_file, all_nbest)
  if version_2_with_negative:
    io_files.write_json_atomic(output_null_log_odds_file, null_odds)
  return predictions


def compute_predictions(all_examples: Sequence[SquadExample],
                        all_features: Sequence[InputFeatures], all_results: Sequence[RawResult],
                        n_best_size: int, max_answer_length: int, do_lower_case: bool,
                        version_2_with_negative: bool = False,
                        null_score_diff_threshold: float = 0.0
                        ) -> Tuple[Dict[str, str], Dict[str, List[Dict[str, Any]]],
                                   Dict[str, float]]:
  """Turns start/end logits into answers: (predictions, n-best lists, null odds) by question id.

  google-research's post-processing: the n_best_size best starts and ends of each window, kept when
  both are context tokens, the start has its max context there, and the answer is at most
  max_answer_length tokens; texts are projected onto the original words; duplicates dropped.
  With SQuAD 2.0 the null score is the lowest start[0] + end[0] over the windows, null_odds.json
  holds null score - best non-null score, and the answer is "" when that exceeds
  `null_score_diff_threshold`. Unlike google-research this does not crash when the n-best holds
  only the null answer: the prediction is "" and the null odds are the null score.
  """
  results_by_id = {}
  for result in all_results:
    results_by_id[int(result.unique_id)] = RawResult(
        int(result.unique_id), [float(x) for x in result.start_logits],
        [float(x) for x in result.end_logits])
  missing = [f.unique_id for f in all_features if f.unique_id not in results_by_id]
  if missing:
    raise ValueError(f"{len(missing)} of {len(all_features)} features have no result (first "
                     f"unique_id {missing[0]}); predict over every feature, without dropping a "
                     "partial last batch.")
  features_by_example = collections.defaultdict(list)
  for feature in all_features:
    features_by_example[feature.example_index].append(feature)
  basic_tokenizer = tokenization.BasicTokenizer(do_lower_case=do_lower_case)

  predictions, all_nbest, null_odds = {}, {}, {}
  for example_index, example in enumerate(all_examples):
    features = features_by_example[example_index]
    nbest, null = _example_predictions(
        example, features, [results_by_id[f.unique_id] for f in features], n_best_size,
        max_answer_length, do_lower_case, version_2_with_negative, basic_tokenizer)
    all_nbest[example.qas_id] = nbest
    if not version_2_with_negative:
      predictions[example.qas_id] = nbest[0]["text"]
      continue
    best_non_null = next((entry for entry in nbest if entry["text"]), None)
    null_score = null.start_logit + null.end_logit
    if best_non_null is None:
      null_odds[example.qas_id] = null_score
      predictions[example.qas_id] = ""
      continue
    score_diff = null_score - best_non_null["start_logit"] - best_non_null["end_logit"]
    null_odds[example.qas_id] = score_diff
    predictions[example.qas_id] = "" if score_diff > null_score_diff_threshold else (
        best_non_null["text"])

  return predictions, all_nbest, null_odds
