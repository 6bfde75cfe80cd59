"""Tests for bert_tf.evaluate: the official SQuAD 1.1 / 2.0 and KorQuAD 1.0 metrics."""

import json
import logging
import pathlib
import re
from typing import Any, Dict, Sequence

from official.nlp.tools import squad_evaluate_v1_1
from official.nlp.tools import squad_evaluate_v2_0
import pytest

from bert_tf import evaluate

from conftest import shared_path
from tests import processes


def dataset(version: str, questions: Sequence[Any]) -> Dict[str, Any]:
  """A SQuAD-format dataset: one paragraph with (id, [gold answer texts]) questions."""
  qas = [{"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0} for t in golds]}
         for qid, golds in questions]
  return {"version": version, "data": [{"title": "t", "paragraphs": [{"context": "c",
                                                                      "qas": qas}]}]}


def write(path: pathlib.Path, obj: Any) -> str:
  path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
  return str(path)


# --- SQuAD 1.1 on real leaderboard predictions ------------------------------------------------


@pytest.mark.parametrize("name, exact, f1, missing", [
    ("v1.1_BERT_ensemble_Google.json", 86.2062, 92.1956, 0),
    ("v1.1_LogReg_baseline_Stanford.json", 40.1419, 50.9815, 13),
])
def test_squad1_reference_predictions(name: str, exact: float, f1: float, missing: int) -> None:
  dev = shared_path("squad", "dev-v1.1.json")
  predictions_file = shared_path("squad", "reference_predictions", name)
  data = json.loads(dev.read_text(encoding="utf-8"))
  predictions = json.loads(predictions_file.read_text(encoding="utf-8"))
  results = evaluate.evaluate(data, predictions)  # The version "1.1" picks squad1.
  assert abs(results["exact_match"] - exact) < 5e-5
  assert abs(results["f1"] - f1) < 5e-5
  assert (results["total"], results["missing"]) == (10570, missing)
  reference = squad_evaluate_v1_1.evaluate(data["data"], predictions)
  assert abs(results["exact_match"] - 100 * reference["exact_match"]) < 1e-9
  assert abs(results["f1"] - 100 * reference["final_f1"]) < 1e-9


def test_command_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
  dev = str(shared_path("squad", "dev-v1.1.json"))
  predictions = str(shared_path("squad", "reference_predictions",
                                "v1.1_BERT_ensemble_Google.json"))
  results = evaluate.main([dev, predictions])
  assert json.loads(capsys.readouterr().out) == results
  assert abs(results["f1"] - 92.1956) < 5e-5
  # --metric overrides the version: SQuAD 2.0 metrics on an all-answerable set.
  results = evaluate.main([dev, predictions, "--metric", "squad2"])
  assert abs(results["exact"] - 86.2062) < 5e-5 and results["HasAns_total"] == 10570


# --- SQuAD 2.0 -------------------------------------------------------------------------------

V2_QUESTIONS = [("q1", ["the Cat", "a dog"]), ("q2", []), ("q3", []),
                ("q4", ["big red barn"]), ("q5", ["!!"])]
V2_PREDICTIONS = {"q1": "cat", "q2": "", "q3": "something", "q4": "red house", "q5": ""}
V2_NA_PROBS = {"q1": 0.1, "q2": 0.9, "q3": 0.8, "q4": 0.3, "q5": 0.3}


def test_squad2_by_hand() -> None:
  """q1 right (articles dropped), q2 right (no answer), q3 wrong, q4 F1 0.4 (1 of 2 predicted
  words, 1 of 3 gold), q5's only answer normalizes to "" so "" is right; but it has an answer
  for the HasAns/NoAns split, as in the official script."""
  data = dataset("v2.0", V2_QUESTIONS)
  results = evaluate.evaluate(data, V2_PREDICTIONS)
  assert results == pytest.approx({
      "exact": 60.0, "f1": 68.0, "total": 5,
      "HasAns_exact": 200 / 3, "HasAns_f1": 240 / 3, "HasAns_total": 3,
      "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2, "missing": 0}, abs=1e-12)
  with_probs = evaluate.evaluate(data, V2_PREDICTIONS, na_probs=V2_NA_PROBS, na_prob_thresh=0.5)
  # q2 and q3 are above the threshold and become "": q3 is now right.
  assert with_probs["exact"] == pytest.approx(80.0) and with_probs["f1"] == pytest.approx(88.0)
  # Threshold search over q1 (0.1, +1), q4 and q5 (0.3, +0 / +0.4 and +1), q3 (0.8, -1), q2 (0.9).
  assert (with_probs["best_exact"], with_probs["best_exact_thresh"]) == (80.0, 0.3)
  assert with_probs["best_f1"] == pytest.approx(88.0) and with_probs["best_f1_thresh"] == 0.3


@pytest.mark.parametrize("thresh", [0.0, 0.5, 1.0])
def test_squad2_matches_reference(thresh: float) -> None:
  data = dataset("v2.0", V2_QUESTIONS)
  ours = evaluate.evaluate(data, V2_PREDICTIONS, na_probs=V2_NA_PROBS, na_prob_thresh=thresh)
  reference = squad_evaluate_v2_0.evaluate(data["data"], V2_PREDICTIONS, V2_NA_PROBS)
  if thresh == 1.0:  # tf-models' copy applies the official default threshold, 1.0.
    for key in ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"):
      assert abs(ours[key] - reference[key]) < 1e-9, key
  for key in ("exact", "f1"):  # The threshold search does not depend on it.
    assert abs(ours[f"best_{key}"] - reference[f"final_{key}"]) < 1e-9
    assert ours[f"best_{key}_thresh"] == reference[f"final_{key}_thresh"]


def test_squad2_missing_prediction_scores_zero() -> None:
  data = dataset("v2.0", V2_QUESTIONS)
  predictions = {k: v for k, v in V2_PREDICTIONS.items() if k != "q2"}
  results = evaluate.evaluate(data, predictions)
  assert results["missing"] == 1 and results["total"] == 5
  assert results["exact"] == pytest.approx(40.0) and results["NoAns_exact"] == 0.0
  with pytest.raises(ValueError, match="lack 1 answered questions, e.g. 'q4'"):
    evaluate.evaluate(data, V2_PREDICTIONS,
                      na_probs={k: v for k, v in V2_NA_PROBS.items() if k != "q4"})


# --- KorQuAD 1.0 -----------------------------------------------------------------------------


def test_korquad_normalization() -> None:
  assert evaluate.normalize_korquad("《바다의 눈》") == "바다의 눈"
  assert evaluate.normalize_korquad("‘등대 축제’") == "등대 축제"
  assert evaluate.normalize_korquad("〈A〉 (B) <C>") == "a b c"
  # Quotes become spaces (SQuAD just drops them) and articles stay.
  assert evaluate.normalize_korquad("O'Neil said \"the end\"") == "o neil said the end"
  assert evaluate.normalize_squad("O'Neil said \"the end\"") == "oneil said end"


def test_korquad_character_f1_by_hand() -> None:
  # 4 shared characters of 5 predicted and 4 gold: P 0.8, R 1.
  assert evaluate.korquad1_f1("종이 등불을", "종이 등불") == pytest.approx(2 * 0.8 / 1.8)
  # Characters, not words: "the cat" has t twice, "cat" once -> 3 shared of 6 and 3.
  assert evaluate.korquad1_f1("the cat", "cat") == pytest.approx(2 * 0.5 / 1.5)
  assert evaluate.squad1_f1("the cat", "cat") == 1.0
  assert evaluate.korquad1_f1("", "cat") == 0


def test_korquad_dataset_by_hand() -> None:
  data = dataset("KorQuAD_v1.0_dev", [
      ("k1", ["《바다의 눈》"]), ("k2", ["종이 등불", "등불"]), ("k3", ["the cat"]),
      ("k4", ["고등어"])])
  predictions = {"k1": "바다의 눈", "k2": "종이 등불을", "k3": "cat"}
  results = evaluate.evaluate(data, predictions)  # "KorQuAD_v1.0_dev" picks korquad1.
  f1 = [1.0, 2 * 0.8 / 1.8, 2 * 0.5 / 1.5, 0.0]
  assert results == pytest.approx({"exact_match": 25.0, "f1": 100 * sum(f1) / 4, "total": 4,
                                   "missing": 1})


# --- choosing the metric, files, errors ------------------------------------------------------


@pytest.mark.parametrize("version, metric", [
    ("1.1", "squad1"), ("v2.0", "squad2"), ("KorQuAD_v1.0_dev", "korquad1"),
    ("KorQuAD_v1.0_train", "korquad1")])
def test_metric_for_version(version: str, metric: str) -> None:
  assert evaluate.metric_for_version(version) == metric


def test_unknown_version_asks_for_metric() -> None:
  with pytest.raises(ValueError, match="Unknown dataset version 'v3'.*--metric"):
    evaluate.evaluate(dataset("v3", [("q", ["a"])]), {"q": "a"})
  assert evaluate.evaluate(dataset("v3", [("q", ["b"])]), {"q": "b"}, "squad1")["f1"] == 100.0


def test_na_probs_only_for_squad2() -> None:
  with pytest.raises(ValueError, match="squad2 only"):
    evaluate.evaluate(dataset("1.1", [("q", ["a"])]), {"q": "a"}, na_probs={"q": 0.0})


def test_evaluate_files_writes_results(tmp_path: pathlib.Path) -> None:
  data = write(tmp_path / "dev.json", dataset("v2.0", V2_QUESTIONS))
  predictions = write(tmp_path / "predictions.json", V2_PREDICTIONS)
  na_probs = write(tmp_path / "null_odds.json", V2_NA_PROBS)
  output = tmp_path / "out" / "eval.json"
  results = evaluate.evaluate_files(data, predictions, na_probs, output_file=str(output))
  assert json.loads(output.read_text()) == results and "best_f1" in results
  unlabeled = dataset("v2.0", [])
  unlabeled["data"][0]["paragraphs"][0]["qas"] = [{"id": "q", "question": "?"}]
  assert evaluate.evaluate_files(write(tmp_path / "test.json", unlabeled), predictions) is None


@pytest.mark.parametrize("content, message", [
    (["a list"], "expected a JSON object of question id -> an answer string"),
    ({"q1": 3}, "the value for 'q1' should be an answer string"),
])
def test_bad_prediction_file(tmp_path: pathlib.Path, content: Any, message: str) -> None:
  data = write(tmp_path / "dev.json", dataset("1.1", [("q1", ["a"])]))
  predictions = write(tmp_path / "predictions.json", content)
  with pytest.raises(SystemExit) as exit_info:
    evaluate.main([data, predictions])
  error = str(exit_info.value.code)
  assert error.startswith("error: ") and predictions in error and message in error


@pytest.mark.parametrize("content, message", [
    ('{"data": [', r"line 1 column 11: not valid JSON"),
    ({"data": [{"title": "t"}]}, r"data\[0\]: missing field 'paragraphs'"),
    (dataset("1.1", [("q1", ["a"]), ("q1", ["b"])]), r"question id 'q1'.*also used at"),
])
def test_bad_dataset_file(tmp_path: pathlib.Path, content: Any, message: str) -> None:
  data = tmp_path / "dev.json"
  if isinstance(content, str):
    data.write_text(content, encoding="utf-8")
  else:
    write(data, content)
  predictions = write(tmp_path / "predictions.json", {"q1": "a"})
  with pytest.raises(SystemExit) as exit_info:
    evaluate.main([str(data), predictions])
  error = str(exit_info.value.code)
  assert str(data) in error and re.search(message, error), error


def test_missing_files_are_one_error_line(tmp_path: pathlib.Path) -> None:
  data = write(tmp_path / "dev.json", dataset("1.1", [("q1", ["a"])]))
  error = processes.user_error("-m", "bert_tf.evaluate", data, str(tmp_path / "predictions.json"))
  assert f"prediction_file {tmp_path / 'predictions.json'} does not exist" in error
  assert "run_squad.py --do_predict" in error
  with pytest.raises(SystemExit, match=r"^error: the following arguments are required"):
    evaluate.main([data])


def test_the_chosen_metric_is_logged_and_korean_data_under_a_squad_version_warned(
    caplog: pytest.LogCaptureFixture) -> None:
  caplog.set_level(logging.INFO)
  korean = dataset("1.1", [("k1", ["고등어"])])
  korean["data"][0]["paragraphs"][0]["context"] = "어부가 잡은 고등어는 시장에서 팔렸다."
  evaluate.evaluate(korean, {"k1": "고등어"})
  assert "Metric squad1: the dataset's version is '1.1' (--metric chooses another)." in caplog.text
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and warnings[0].startswith(
      "The contexts are Korean (100% of their letters are Hangul) but version '1.1' picks the "
      "SQuAD metric squad1.")
  assert "--metric=korquad1" in warnings[0]
  caplog.clear()
  evaluate.evaluate(korean, {"k1": "고등어"}, "korquad1")
  assert "Metric korquad1 (--metric; the dataset's version is '1.1')." in caplog.text
  korean["version"] = "KorQuAD_v1.0_dev"
  evaluate.evaluate(korean, {"k1": "고등어"})
  english = dataset("1.1", [("q", ["the cat"])])  # context "c": not Korean
  evaluate.evaluate(english, {"q": "cat"})
  assert not [r for r in caplog.records if r.levelno == logging.WARNING]
