"""Tests for bert_tf.data.squad_predictions: answers, n-best lists and null odds from logits.

The reference is tf-models-official's squad_lib (google-research's post-processing), on the same
examples, features and logits; where google-research crashes (only the null answer) we say so.
"""

import json
import pathlib
from typing import Any, Dict, List, Sequence

from official.nlp.data import squad_lib
import pytest

from bert_tf.data import squad_predictions

from tests.squad_data import files, fixture_features, output_paths, random_results, tokenizer


def read_outputs(paths: Sequence[str], version_2: bool) -> List[Any]:
  return [json.loads(pathlib.Path(p).read_text(encoding="utf-8"))
          for p in (paths if version_2 else paths[:2])]


@pytest.mark.parametrize("version_2, threshold", [(False, 0.0), (True, 0.0), (True, -2.5)])
@pytest.mark.parametrize("seed, decimals", [(0, 1), (1, 1), (2, 0)])
def test_write_predictions_matches_tf_models(tmp_path: pathlib.Path, files: Dict[str, str],
                                             tokenizer: Any, version_2: bool, threshold: float,
                                             seed: int, decimals: int) -> None:
  examples, features = fixture_features(files, tokenizer, is_training=False)
  results = random_results(features, seed, decimals)
  ours_paths, their_paths = output_paths(tmp_path / "ours"), output_paths(tmp_path / "theirs")
  (tmp_path / "theirs").mkdir()
  predictions = squad_predictions.write_predictions(examples, features, results, 4, 6, True,
                                                    *ours_paths, version_2, threshold)
  squad_lib.write_predictions(examples, features, results, 4, 6, True, *their_paths,
                              version_2_with_negative=version_2,
                              null_score_diff_threshold=threshold)
  ours, theirs = read_outputs(ours_paths, version_2), read_outputs(their_paths, version_2)
  assert ours == theirs
  assert predictions == ours[0] and list(predictions) == [e.qas_id for e in examples]
  assert len(set(predictions.values())) > 3  # Not all empty: real spans were chosen.
  assert all(0 < len(nbest) <= 4 + version_2 for nbest in ours[1].values())


def test_write_predictions_picks_the_best_span_in_original_spelling(
    tmp_path: pathlib.Path, files: Dict[str, str], tokenizer: Any) -> None:
  examples, features = fixture_features(files, tokenizer, is_training=False)
  # qas id -> (the words to point at, the expected answer).
  wanted = {"q0-8": (["Café", "Müller,"], "Café Müller"),  # Comma dropped, accents back.
            "q0-1": (["(1887–1952),"], "1887"),
            "q1-1": (["《바다의", "눈》이라는"], "《바다의 눈》이라는"),  # No alignment: whole words.
            "q1-3": (["가을"], "가을")}
  results = []
  for feature in features:
    start, end = [0.0] * 40, [0.0] * 40
    qas_id = examples[feature.example_index].qas_id
    if qas_id in wanted:
      words = wanted[qas_id][0]
      doc = examples[feature.example_index].doc_tokens
      first = next(i for i in range(len(doc)) if doc[i:i + len(words)] == words)
      positions = [p for p, o in feature.token_to_orig_map.items()
                   if first <= o < first + len(words)]
      if positions and feature.tokens[positions[0]] == "(":  # Point after a "(" ...
        positions = positions[1:]
      for p in positions:  # ... and stop before the first "–" or ",".
        if feature.tokens[p] in ("–", ","):
          positions = positions[:positions.index(p)]
          break
      if positions and feature.token_is_max_context[positions[0]]:
        start[positions[0]], end[positions[-1]] = 5.0, 5.0
    results.append(squad_predictions.RawResult(feature.unique_id, start, end))
  paths = output_paths(tmp_path)
  predictions = squad_predictions.write_predictions(examples, features, results, 3, 30, True,
                                                    *paths)
  assert {k: predictions[k] for k in wanted} == {k: v[1] for k, v in wanted.items()}
  text = pathlib.Path(paths[0]).read_text(encoding="utf-8")
  assert "《바다의 눈》이라는" in text and "\\u" not in text  # Readable UTF-8.
  assert "Café Müller" in pathlib.Path(paths[1]).read_text(encoding="utf-8")


def test_null_only_nbest_predicts_empty(tmp_path: pathlib.Path, files: Dict[str, str],
                                        tokenizer: Any) -> None:
  """google-research crashes here (best_non_null_entry is None); we predict ""."""
  examples, features = fixture_features(files, tokenizer, is_training=False)
  # Best start and end at [CLS]: with n_best_size 1 no span is valid and only the null remains.
  results = [squad_predictions.RawResult(f.unique_id, [2.0] + [0.0] * 39, [1.5] + [0.0] * 39)
             for f in features]
  paths = output_paths(tmp_path)
  predictions = squad_predictions.write_predictions(examples, features, results, 1, 30, True,
                                                    *paths, version_2_with_negative=True)
  assert set(predictions.values()) == {""}
  null_odds = json.loads(pathlib.Path(paths[2]).read_text())
  assert set(null_odds.values()) == {3.5}
  nbest = json.loads(pathlib.Path(paths[1]).read_text())
  assert nbest["q0-0"] == [{"text": "", "probability": 1.0, "start_logit": 2.0, "end_logit": 1.5}]
  # SQuAD 1.1 has no null answer: with no valid span google-research's "empty" stands in.
  assert set(squad_predictions.write_predictions(examples, features, results, 1, 30, True,
                                                 *paths).values()) == {"empty"}


def test_write_predictions_needs_every_result(tmp_path: pathlib.Path, files: Dict[str, str],
                                              tokenizer: Any) -> None:
  examples, features = fixture_features(files, tokenizer, is_training=False)
  results = random_results(features, seed=0)[:-1]
  with pytest.raises(ValueError, match=r"1 of \d+ features have no result"):
    squad_predictions.write_predictions(examples, features, results, 3, 30, True,
                                        *output_paths(tmp_path))
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("pred_text, orig_text, do_lower_case", [
    ("steve smith", "Steve Smith's", True),
    ("1887", "(1887–1952),", True),
    ("cafe muller", "Café Müller,", True),
    ("30 km", "30\u00a0km", True),
    ("바다의 눈", "《바다의 눈》이라는", False),
    ("nothing", "Something else", True),
    ("Steve", "steve", False),
])
def test_get_final_text_matches_tf_models(pred_text: str, orig_text: str,
                                          do_lower_case: bool) -> None:
  assert (squad_predictions.get_final_text(pred_text, orig_text, do_lower_case) ==
          squad_lib.get_final_text(pred_text, orig_text, do_lower_case))


def test_get_final_text_strips_what_the_prediction_lacks() -> None:
  assert squad_predictions.get_final_text("steve smith", "Steve Smith's", True) == "Steve Smith"
  assert squad_predictions.get_final_text("1887", "(1887–1952),", True) == "1887"
