"""Tests for bert_tf.data.squad_examples: reading SQuAD / KorQuAD JSON into examples.

The reference is tf-models-official's squad_lib (google-research's reading); malformed files must
fail with a ValueError naming the file and the place, whatever they hold (fuzzed).
"""

import json
import logging
import pathlib
from typing import Any, Dict

from hypothesis import given, settings, strategies as st
from official.nlp.data import squad_lib
import pytest

from bert_tf.data import squad_examples

from tests.squad_data import (KOREAN, LONG_ENGLISH, PARAGRAPHS, SHORT, build_dataset, files,
                              our_features, tokenizer, write_json)


@pytest.mark.parametrize("is_training", [True, False])
def test_read_matches_tf_models(files: Dict[str, str], is_training: bool) -> None:
  ours = squad_examples.read_squad_examples(files["data"], is_training,
                                            version_2_with_negative=True)
  theirs = squad_lib.read_squad_examples(files["data"], is_training, True)
  assert [vars(e) for e in ours] == [vars(e) for e in theirs]
  ids = [e.qas_id for e in ours]
  # Training skips "30\u00a0km" as google-research does: str.split() breaks the answer at the
  # no-break space, the context words keep it, so the answer is "not found".
  assert len(ids) == sum(len(questions) for _, questions in PARAGRAPHS) - is_training
  assert ("q0-4" in ids) != is_training
  # U+202F splits words, U+00A0 does not.
  assert "30\u00a0km" in ours[0].doc_tokens and "3" in ours[0].doc_tokens
  if is_training:
    impossible = [e for e in ours if e.is_impossible]
    assert len(impossible) == 2
    assert all((e.start_position, e.end_position, e.orig_answer_text) == (-1, -1, "")
               for e in impossible)


def test_unfindable_answer_is_skipped_with_warning(tmp_path: pathlib.Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
  dataset = build_dataset([(SHORT, [("q?", "Tollund", 0, False)] * 3)])
  dataset["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["text"] = "Tolland"
  path = write_json(tmp_path / "bad.json", dataset)
  with caplog.at_level(logging.WARNING):
    examples = squad_examples.read_squad_examples(path, is_training=True)
  assert [e.qas_id for e in examples] == ["q0-0", "q0-2"]
  warning, = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert path in warning and "1 of 3 training questions" in warning and "'q0-1'" in warning
  assert len(squad_examples.read_squad_examples(path, is_training=False)) == 3


def test_mostly_unfindable_answers_are_an_error(tmp_path: pathlib.Path) -> None:
  """Offsets shifted throughout (e.g. computed on a context later stripped) miss most answers."""
  dataset = build_dataset(PARAGRAPHS[1:2])
  for qa in dataset["data"][0]["paragraphs"][0]["qas"]:
    for answer in qa["answers"]:
      answer["answer_start"] = max(0, answer["answer_start"] - 12)
  path = write_json(tmp_path / "shifted.json", dataset)
  with pytest.raises(ValueError, match=r"shifted.json: the answers of 6 of 7 training questions "
                     "are not in the context words.*'q0-0'.*must count Unicode characters"):
    squad_examples.read_squad_examples(path, is_training=True, version_2_with_negative=True)


def malformed(dataset: Dict[str, Any], change: str) -> Dict[str, Any]:
  qa = dataset["data"][0]["paragraphs"][0]["qas"][0]
  if change == "two answers":
    qa["answers"].append(dict(qa["answers"][0]))
  elif change == "start out of range":
    qa["answers"][0]["answer_start"] = 10_000
  elif change == "negative start":
    qa["answers"][0]["answer_start"] = -1
  elif change == "empty answer":
    qa["answers"][0]["text"] = " "
  elif change == "no is_impossible":
    del qa["is_impossible"]
  elif change == "string start":
    qa["answers"][0]["answer_start"] = "3"
  elif change == "no question":
    del qa["question"]
  return dataset


@pytest.mark.parametrize("change, message", [
    ("two answers", "exactly one answer per question, found 2. Files with several answers per "
                    "question are dev sets, for evaluation: pass this file as --predict_file and "
                    r"the training set \(e.g. train-v1.1.json\) as --train_file\.$"),
    ("start out of range", "falls outside the"),
    ("negative start", "falls outside the"),
    ("empty answer", "answer text is empty"),
    ("no is_impossible", "missing field 'is_impossible'"),
    ("string start", "'answer_start' must be int"),
    ("no question", "missing field 'question'"),
])
def test_malformed_entries_name_file_and_question(tmp_path: pathlib.Path, change: str,
                                                  message: str) -> None:
  path = write_json(tmp_path / "bad.json", malformed(build_dataset(), change))
  with pytest.raises(ValueError, match=message) as error:
    squad_examples.read_squad_examples(path, is_training=True, version_2_with_negative=True)
  assert path in str(error.value) and "'q0-0'" in str(error.value)
  assert "is_training" not in str(error.value)  # a command-line fix, not an API call


@pytest.mark.parametrize("delete, place", [
    ("data", "top level"),
    ("paragraphs", r"data\[1\]"),
    ("context", r"data\[1\].paragraphs\[0\]"),
    ("qas", r"data\[1\].paragraphs\[0\]"),
    ("id", r"data\[1\].paragraphs\[0\].qas\[2\]"),
])
def test_missing_field_names_the_place(tmp_path: pathlib.Path, delete: str, place: str) -> None:
  dataset = build_dataset()
  container = {"data": dataset, "paragraphs": dataset["data"][1],
               "context": dataset["data"][1]["paragraphs"][0],
               "qas": dataset["data"][1]["paragraphs"][0],
               "id": dataset["data"][1]["paragraphs"][0]["qas"][2]}[delete]
  del container[delete]
  path = write_json(tmp_path / "bad.json", dataset)
  with pytest.raises(ValueError, match=rf"bad.json: {place}: missing field '{delete}'"):
    squad_examples.read_squad_examples(path, is_training=False)


@pytest.mark.parametrize("content, message", [
    (b'{"data": [', r"line 1 column 11: not valid JSON"),
    (b'{"version": "v2.0"}\n{"data": []}', r"line 2 column 1: not valid JSON \(Extra data\)"),
    (b"", r"line 1 column 1: not valid JSON"),
    ('{"data": [{"title": "\ub098"}]}'.encode("euc-kr"), r"line 1: not valid UTF-8"),
    (b"[" * 100_000, r"nested too deeply"),
    (b"[]", r"top level: expected a JSON object with field 'data', got \[\]"),
    (b'{"data": [3]}', r"data\[0\]: expected a JSON object with field 'paragraphs', got 3"),
    (b'{"data": {}}', r"top level: field 'data' must be list, got \{\}"),
    (b'{"data": []}', r"holds no questions"),
])
def test_not_a_squad_file_names_the_file(tmp_path: pathlib.Path, content: bytes,
                                         message: str) -> None:
  path = tmp_path / "dev.json"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=message) as error:
    squad_examples.read_squad_examples(str(path), is_training=False)
  assert str(path) in str(error.value)


def test_missing_file_is_file_not_found(tmp_path: pathlib.Path) -> None:
  with pytest.raises(FileNotFoundError, match="nothing.json does not exist"):
    squad_examples.read_squad_examples(str(tmp_path / "nothing.json"), is_training=False)


@pytest.mark.parametrize("is_training", [True, False])
def test_duplicate_question_id_names_both_places(tmp_path: pathlib.Path,
                                                 is_training: bool) -> None:
  dataset = build_dataset()
  dataset["data"][1]["paragraphs"][0]["qas"][3]["id"] = "q0-5"
  path = write_json(tmp_path / "dup.json", dataset)
  with pytest.raises(ValueError, match=r"dup.json: data\[1\].paragraphs\[0\].qas\[3\] "
                     r"\(question id 'q0-5' in 't1'\): the question id is also used at .*"
                     r"data\[0\].paragraphs\[0\].qas\[5\]. .*own id"):
    squad_examples.read_squad_examples(path, is_training, version_2_with_negative=True)


@pytest.mark.parametrize("is_training", [True, False])
def test_empty_context_names_the_paragraph(tmp_path: pathlib.Path, is_training: bool) -> None:
  dataset = build_dataset()
  dataset["data"][2]["paragraphs"][0]["context"] = " \n"
  path = write_json(tmp_path / "empty.json", dataset)
  with pytest.raises(ValueError, match=r"empty.json: data\[2\].paragraphs\[0\]: the context is "
                     "empty, so its 1 question"):
    squad_examples.read_squad_examples(path, is_training, version_2_with_negative=True)


def test_empty_question_names_it(tmp_path: pathlib.Path) -> None:
  dataset = build_dataset()
  dataset["data"][0]["paragraphs"][0]["qas"][4]["question"] = ""
  path = write_json(tmp_path / "q.json", dataset)
  with pytest.raises(ValueError, match=r"q.json: .*qas\[4\] \(question id 'q0-4' in 't0'\): "
                     "the question is empty"):
    squad_examples.read_squad_examples(path, is_training=False)


# Fuzzing: whatever the file holds, reading (and converting what was read) either works or raises
# a ValueError that names the file; never another exception.
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)
SQUAD_KEYS = ["data", "paragraphs", "context", "qas", "id", "question", "answers", "text",
              "answer_start", "is_impossible", "title", "version"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=False) |
    st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(SQUAD_KEYS) | st.text(max_size=3), children, max_size=4),
    max_leaves=20)
TEXT = st.text(st.characters(codec="utf-8"), max_size=30)


@st.composite
def squad_like(draw: Any) -> Dict[str, Any]:
  """SQuAD-shaped data with arbitrary text; most answers are spans of their context."""
  def answer(context: str) -> Dict[str, Any]:
    start = draw(st.integers(-2, len(context) + 2))
    length = draw(st.integers(0, 8))
    text = context[max(start, 0):start + length] if draw(st.booleans()) else draw(TEXT)
    return {"text": text, "answer_start": start}

  def paragraph() -> Dict[str, Any]:
    context = draw(TEXT | st.sampled_from([LONG_ENGLISH, KOREAN, SHORT]))
    return {"context": context, "qas": [
        {"id": draw(st.text("abcdefgh", min_size=1, max_size=3)),
         "question": draw(st.sampled_from(["Who?", "언제?"]) | TEXT),
         "is_impossible": draw(st.booleans()),
         "answers": [answer(context) for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2])))]}
        for _ in range(draw(st.integers(0, 3)))]}

  return {"data": [{"title": draw(TEXT), "paragraphs": [
      paragraph() for _ in range(draw(st.integers(0, 2)))]} for _ in range(draw(st.integers(0, 2)))]}


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
  return tmp_path_factory.mktemp("fuzz") / "fuzz.json"


def read_and_convert(path: pathlib.Path, tokenizer: Any) -> None:
  for is_training in (True, False):
    for version_2 in (True, False):
      try:
        examples = squad_examples.read_squad_examples(str(path), is_training, version_2)
      except ValueError as e:
        assert str(path) in str(e)
        continue
      our_features(examples, tokenizer, 24, 4, 6, is_training)


@FUZZ
@given(content=st.binary(max_size=200) | JSON_VALUES.map(
    lambda value: json.dumps(value).encode()))
def test_fuzz_any_file_reads_or_names_itself(fuzz_file: pathlib.Path, tokenizer: Any,
                                              content: bytes) -> None:
  fuzz_file.write_bytes(content)
  read_and_convert(fuzz_file, tokenizer)


@FUZZ
@given(dataset=squad_like())
def test_fuzz_squad_shaped_file_reads_or_names_itself(fuzz_file: pathlib.Path, tokenizer: Any,
                                                      dataset: Dict[str, Any]) -> None:
  fuzz_file.write_text(json.dumps(dataset, ensure_ascii=False), encoding="utf-8")
  read_and_convert(fuzz_file, tokenizer)
