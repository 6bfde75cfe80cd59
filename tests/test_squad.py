"""Tests for bert_tf.squad: reading, features, TFRecords, the feature cache and post-processing.

The reference is tf-models-official's squad_lib, a port of google-research's run_squad.py, run on
the same inputs. Where the two differ (is_impossible of windows without the answer, eval labels,
padding features) the tests follow google-research and say so.
"""

import json
import logging
import os
import pathlib
import re
import shutil
from typing import Any, Dict, List, Sequence, Tuple

from hypothesis import given, settings, strategies as st
import numpy as np
from official.nlp.data import squad_lib
import pytest
import tensorflow as tf

from bert_tf.data import pipeline as input_pipeline
from bert_tf.data import squad
from bert_tf import tokenization

from conftest import shared_path

# Our own text. Offsets are computed from (answer, occurrence), never typed. Whitespace oddities:
# U+202F (a word break for SQuAD), tabs, newlines, double spaces, and U+00A0 (not a word break
# for SQuAD but one for BERT's tokenizer).
LONG_ENGLISH = (
    "The Kestrel Point lighthouse was designed by Anneliese Varga (1887–1952), an engineer "
    "trained in Icelandic harbours, and first lit on 3\u202fMarch 1911. Its lamp, fuelled by "
    "paraffin until 1934, could be seen 30\u00a0km out to sea.\tKeepers lived in a stone cottage "
    "beside the tower;  their logbooks record storms, shipwrecks and, in one famous winter, a "
    "stranded whale.\nThe Café Müller, opened by the last keeper's daughter, now serves soup to "
    "walkers who climb the 212 steps. Varga's other works include the Northgate swing bridge, "
    "the Old Mill aqueduct and a series of tide gauges that are still read every morning by "
    "volunteers from the coastal society. In 1998 the lighthouse was automated, and the lens was "
    "moved to the maritime museum in Harwick, where it remains on display.")
KOREAN = (
    "바람골 마을의 등대는 1911년에 처음 불을 밝혔다. 설계자는 《바다의 눈》이라는 책을 쓴 "
    "한서윤(1887~1952)이다. 마을 사람들은 매년 가을 ‘등대 축제’를 열고, 아이들은 종이 등불을 "
    "들고 해안길을 따라 걷는다. 축제의 마지막 날에는 어부들이 잡은 고등어로 국을 끓여 나눠 먹는다.")
SHORT = "Tollund."

PARAGRAPHS = [
    (LONG_ENGLISH, [
        ("Who designed the Kestrel Point lighthouse?", "Anneliese Varga", 0, False),
        ("When was Varga born?", "1887", 0, False),
        ("Where was the engineer trained?", "Iceland", 0, False),
        ("When was the lighthouse first lit?", "3\u202fMarch 1911", 0, False),
        ("How far out to sea could the lamp be seen?", "30\u00a0km", 0, False),
        ("What did the lamp burn until 1934?", "paraffin", 0, False),
        ("Where did the keepers live?", "in a stone cottage", 0, False),
        ("What was stranded in one famous winter?", "a stranded whale", 0, False),
        ("Who opened the Café Müller?", "the last keeper's daughter", 0, False),
        ("How many steps are there?", "212", 0, False),
        ("What do volunteers read every morning?", "tide gauges", 0, False),
        ("Where is the lens displayed now, after the automation of the lighthouse in the late "
         "twentieth century and the move of its optics?", "Harwick", 0, False),
        ("Where is the lens?", "the maritime museum in Harwick, where it remains on display.",
         0, False),
        ("What colour is the keeper's dog?", "", 0, True),
    ]),
    (KOREAN, [
        ("등대는 언제 처음 불을 밝혔나?", "1911년", 0, False),
        ("설계자가 쓴 책의 제목은?", "《바다의 눈》", 0, False),
        ("설계자는 누구인가?", "한서윤", 0, False),
        ("축제는 언제 열리나?", "가을", 0, False),
        ("아이들은 무엇을 들고 걷나?", "종이 등불", 0, False),
        ("어부들은 무엇을 잡았나?", "고등어", 0, False),
        ("등대지기의 이름은?", "", 0, True),
    ]),
    (SHORT, [
        ("Which place is named in this very short context, given that the question itself is "
         "much longer than the context and longer than the query limit?", "Tollund", 0, False),
    ]),
]


def build_dataset(paragraphs=PARAGRAPHS, version: str = "v2.0") -> Dict[str, Any]:
  """A SQuAD 2.0 style dataset (is_impossible on every question) from (question, answer) lists."""
  data = []
  for p_index, (context, questions) in enumerate(paragraphs):
    qas = []
    for q_index, (question, answer, occurrence, impossible) in enumerate(questions):
      qa = {"id": f"q{p_index}-{q_index}", "question": question, "is_impossible": impossible,
            "answers": []}
      if not impossible:
        start = -1
        for _ in range(occurrence + 1):
          start = context.index(answer, start + 1)
        qa["answers"] = [{"text": answer, "answer_start": start}]
      qas.append(qa)
    data.append({"title": f"t{p_index}", "paragraphs": [{"context": context, "qas": qas}]})
  return {"version": version, "data": data}


def write_json(path: pathlib.Path, obj: Any) -> str:
  path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
  return str(path)


def build_vocab(path: pathlib.Path, do_lower_case: bool = True) -> str:
  """A vocab from the fixture's words: most whole, some only as pieces, a few left out ([UNK])."""
  basic = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
  texts = [context for context, _ in PARAGRAPHS] + [
      q for _, questions in PARAGRAPHS for q, *_ in questions]
  words = sorted({word for text in texts for word in basic.tokenize(text)})
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  for index, word in enumerate(words):
    if index % 13 == 7 and word != "iceland":
      continue
    if index % 4 == 1 and len(word) > 3:
      vocab += [word[:2], "##" + word[2:3], "##" + word[3:]]
    else:
      vocab.append(word)
  vocab += ["##ic", "##ers"]
  path.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
  return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
  root = tmp_path_factory.mktemp("squad")
  return {"data": write_json(root / "fixture.json", build_dataset()),
          "vocab": build_vocab(root / "vocab.txt")}


@pytest.fixture(scope="module")
def tokenizer(files: Dict[str, str]) -> tokenization.FullTokenizer:
  return tokenization.FullTokenizer(files["vocab"], do_lower_case=True)


def reference_features(examples: Sequence[Any], tokenizer: Any, max_seq_length: int,
                       doc_stride: int, max_query_length: int, is_training: bool) -> List[Any]:
  """tf-models' features (it calls output_fn(feature, is_padding) when not training)."""
  features = []
  if is_training:
    squad_lib.convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride,
                                           max_query_length, True, features.append)
  else:
    squad_lib.convert_examples_to_features(
        examples, tokenizer, max_seq_length, doc_stride, max_query_length, False,
        lambda feature, is_padding: features.append(feature), batch_size=1)
  return features


def our_features(examples: Sequence[squad.SquadExample], tokenizer: Any, max_seq_length: int,
                 doc_stride: int, max_query_length: int, is_training: bool,
                 num_workers: int = 0) -> List[squad.InputFeatures]:
  features = []
  count = squad.convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride,
                                             max_query_length, is_training, features.append,
                                             num_workers=num_workers)
  assert count == len(features)
  return features


COMMON_FIELDS = ("unique_id", "example_index", "doc_span_index", "tokens", "token_to_orig_map",
                 "token_is_max_context", "input_ids", "input_mask", "segment_ids")


def assert_same_features(ours: Sequence[squad.InputFeatures], theirs: Sequence[Any],
                         examples: Sequence[squad.SquadExample], is_training: bool) -> None:
  assert len(ours) == len(theirs)
  for mine, reference in zip(ours, theirs):
    for field in COMMON_FIELDS + (("start_position", "end_position") if is_training else ()):
      assert getattr(mine, field) == getattr(reference, field), (field, mine.unique_id)
    # google-research: is_impossible is the example's; tf-models sets it for every window that
    # lacks the answer. Evaluation features carry no labels in google-research (None).
    assert mine.is_impossible == examples[mine.example_index].is_impossible
    if not is_training:
      assert mine.start_position is None and mine.end_position is None


# --- reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("is_training", [True, False])
def test_read_matches_tf_models(files: Dict[str, str], is_training: bool) -> None:
  ours = squad.read_squad_examples(files["data"], is_training, version_2_with_negative=True)
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
    examples = squad.read_squad_examples(path, is_training=True)
  assert [e.qas_id for e in examples] == ["q0-0", "q0-2"]
  warning, = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert path in warning and "1 of 3 training questions" in warning and "'q0-1'" in warning
  assert len(squad.read_squad_examples(path, is_training=False)) == 3


def test_mostly_unfindable_answers_are_an_error(tmp_path: pathlib.Path) -> None:
  """Offsets shifted throughout (e.g. computed on a context later stripped) miss most answers."""
  dataset = build_dataset(PARAGRAPHS[1:2])
  for qa in dataset["data"][0]["paragraphs"][0]["qas"]:
    for answer in qa["answers"]:
      answer["answer_start"] = max(0, answer["answer_start"] - 12)
  path = write_json(tmp_path / "shifted.json", dataset)
  with pytest.raises(ValueError, match=r"shifted.json: the answers of 6 of 7 training questions "
                     "are not in the context words.*'q0-0'.*must count Unicode characters"):
    squad.read_squad_examples(path, is_training=True, version_2_with_negative=True)


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
    squad.read_squad_examples(path, is_training=True, version_2_with_negative=True)
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
    squad.read_squad_examples(path, is_training=False)


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
    squad.read_squad_examples(str(path), is_training=False)
  assert str(path) in str(error.value)


def test_missing_file_is_file_not_found(tmp_path: pathlib.Path) -> None:
  with pytest.raises(FileNotFoundError, match="nothing.json does not exist"):
    squad.read_squad_examples(str(tmp_path / "nothing.json"), is_training=False)


@pytest.mark.parametrize("is_training", [True, False])
def test_duplicate_question_id_names_both_places(tmp_path: pathlib.Path,
                                                 is_training: bool) -> None:
  dataset = build_dataset()
  dataset["data"][1]["paragraphs"][0]["qas"][3]["id"] = "q0-5"
  path = write_json(tmp_path / "dup.json", dataset)
  with pytest.raises(ValueError, match=r"dup.json: data\[1\].paragraphs\[0\].qas\[3\] "
                     r"\(question id 'q0-5' in 't1'\): the question id is also used at .*"
                     r"data\[0\].paragraphs\[0\].qas\[5\]. .*own id"):
    squad.read_squad_examples(path, is_training, version_2_with_negative=True)


@pytest.mark.parametrize("is_training", [True, False])
def test_empty_context_names_the_paragraph(tmp_path: pathlib.Path, is_training: bool) -> None:
  dataset = build_dataset()
  dataset["data"][2]["paragraphs"][0]["context"] = " \n"
  path = write_json(tmp_path / "empty.json", dataset)
  with pytest.raises(ValueError, match=r"empty.json: data\[2\].paragraphs\[0\]: the context is "
                     "empty, so its 1 question"):
    squad.read_squad_examples(path, is_training, version_2_with_negative=True)


def test_empty_question_names_it(tmp_path: pathlib.Path) -> None:
  dataset = build_dataset()
  dataset["data"][0]["paragraphs"][0]["qas"][4]["question"] = ""
  path = write_json(tmp_path / "q.json", dataset)
  with pytest.raises(ValueError, match=r"q.json: .*qas\[4\] \(question id 'q0-4' in 't0'\): "
                     "the question is empty"):
    squad.read_squad_examples(path, is_training=False)


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
        examples = squad.read_squad_examples(str(path), is_training, version_2)
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


# --- features --------------------------------------------------------------------------------


@pytest.mark.parametrize("is_training", [True, False])
@pytest.mark.parametrize("max_seq_length, doc_stride, max_query_length", [
    (32, 5, 8), (40, 13, 12), (64, 128, 16), (384, 128, 64)])
def test_features_match_tf_models(files: Dict[str, str], is_training: bool, max_seq_length: int,
                                  doc_stride: int, max_query_length: int) -> None:
  examples = squad.read_squad_examples(files["data"], is_training, version_2_with_negative=True)
  # Each side with its own tokenizer (ours is compared token for token in test_tokenization).
  reference_tokenizer = squad_lib.tokenization.FullTokenizer(files["vocab"], do_lower_case=True)
  theirs = reference_features(examples, reference_tokenizer, max_seq_length, doc_stride,
                              max_query_length, is_training)
  ours = our_features(examples, tokenization.FullTokenizer(files["vocab"], do_lower_case=True),
                      max_seq_length, doc_stride, max_query_length, is_training)
  assert_same_features(ours, theirs, examples, is_training)
  if max_seq_length == 32:
    assert max(f.doc_span_index for f in ours) >= 10  # Many windows: edges and max context.
    if is_training:  # Windows without the answer point at [CLS]; others at the answer.
      assert {(f.start_position, f.end_position) for f in ours if f.start_position} and any(
          f.start_position == 0 and not examples[f.example_index].is_impossible for f in ours)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_workers_give_the_serial_features(files: Dict[str, str], tokenizer: Any,
                                          num_workers: int) -> None:
  examples = squad.read_squad_examples(files["data"], True, version_2_with_negative=True) * 20
  serial = our_features(examples, tokenizer, 32, 7, 8, True)
  assert our_features(examples, tokenizer, 32, 7, 8, True, num_workers=num_workers) == serial
  assert [f.unique_id for f in serial] == list(range(squad.FIRST_UNIQUE_ID,
                                                     squad.FIRST_UNIQUE_ID + len(serial)))


def test_worker_failure_is_raised(files: Dict[str, str], tokenizer: Any) -> None:
  examples = squad.read_squad_examples(files["data"], False) * 20
  examples[-1] = squad.SquadExample("broken", None, examples[-1].doc_tokens)
  with pytest.raises(RuntimeError, match="worker failed"):
    our_features(examples, tokenizer, 32, 7, 8, False, num_workers=2)


def test_bad_flags_fail_early(tokenizer: Any) -> None:
  with pytest.raises(ValueError, match="must exceed max_query_length"):
    our_features([], tokenizer, 64, 16, 61, False)
  with pytest.raises(ValueError, match="doc_stride"):
    our_features([], tokenizer, 64, 0, 8, False)


def test_features_match_tf_models_on_squad_dev() -> None:
  dev = str(shared_path("squad", "dev-v1.1.json"))
  vocab = str(shared_path("vocabs", "bert-base-uncased-vocab.txt"))
  examples = squad.read_squad_examples(dev, is_training=False)[:400]
  theirs = reference_features(
      squad_lib.read_squad_examples(dev, False, False)[:400],
      squad_lib.tokenization.FullTokenizer(vocab, do_lower_case=True), 384, 128, 64, False)
  ours = our_features(examples, tokenization.FullTokenizer(vocab, do_lower_case=True), 384, 128,
                      64, False, num_workers=1)
  assert_same_features(ours, theirs, examples, False)


# --- TFRecords -------------------------------------------------------------------------------


def fixture_features(files: Dict[str, str], tokenizer: Any, is_training: bool
                     ) -> Tuple[List[squad.SquadExample], List[squad.InputFeatures]]:
  examples = squad.read_squad_examples(files["data"], is_training, version_2_with_negative=True)
  return examples, our_features(examples, tokenizer, 40, 13, 12, is_training)


def test_feature_writer_uses_google_names(tmp_path: pathlib.Path, files: Dict[str, str],
                                          tokenizer: Any) -> None:
  _, features = fixture_features(files, tokenizer, is_training=True)
  with squad.FeatureWriter(str(tmp_path / "train.tf_record"), True, num_shards=3) as writer:
    for feature in features:
      writer.process_feature(feature)
  assert sorted(os.listdir(tmp_path)) == [f"train.tf_record-0000{i}-of-00003" for i in range(3)]
  assert writer.num_features == len(features)
  records = [tf.train.Example.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(writer.filenames[0])]
  assert len(records) == len(features[::3])
  for record, feature in zip(records, features[::3]):
    values = {k: list(v.int64_list.value) for k, v in record.features.feature.items()}
    assert values == {"unique_ids": [feature.unique_id], "input_ids": feature.input_ids,
                      "input_mask": feature.input_mask, "segment_ids": feature.segment_ids,
                      "start_positions": [feature.start_position],
                      "end_positions": [feature.end_position],
                      "is_impossible": [int(feature.is_impossible)]}


def test_feature_writer_leaves_nothing_on_error(tmp_path: pathlib.Path) -> None:
  with pytest.raises(ZeroDivisionError):
    with squad.FeatureWriter(str(tmp_path / "eval.tf_record"), False, num_shards=2):
      raise ZeroDivisionError
  assert os.listdir(tmp_path) == []


def write_records(path: pathlib.Path, features: Sequence[squad.InputFeatures], is_training: bool,
                  num_shards: int) -> str:
  with squad.FeatureWriter(str(path), is_training, num_shards) as writer:
    for feature in features:
      writer.process_feature(feature)
  return str(path) + ("-*" if num_shards > 1 else "")


def test_eval_dataset_round_trip(tmp_path: pathlib.Path, files: Dict[str, str],
                                 tokenizer: Any) -> None:
  _, features = fixture_features(files, tokenizer, is_training=False)
  pattern = write_records(tmp_path / "eval.tf_record", features, False, num_shards=2)
  dataset = squad.make_dataset(pattern, 40, is_training=False, batch_size=8, drop_remainder=False)
  batches = list(dataset.as_numpy_iterator())
  assert set(batches[0]) == {"unique_ids", "input_ids", "input_mask", "segment_ids"}
  assert all(v.dtype == np.int32 for v in batches[0].values())
  rows = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
  assert rows["unique_ids"].tolist() == [f.unique_id for f in features]  # Order restored.
  assert rows["input_ids"].tolist() == [f.input_ids for f in features]
  assert rows["segment_ids"].tolist() == [f.segment_ids for f in features]
  with pytest.raises(ValueError, match="shards training data only"):
    squad.make_dataset(pattern, 40, False, 8, False, tf.distribute.InputContext(2, 0, 2))


def test_training_dataset_round_trip_and_sharding(tmp_path: pathlib.Path, files: Dict[str, str],
                                                  tokenizer: Any) -> None:
  _, features = fixture_features(files, tokenizer, is_training=True)
  by_id = {f.unique_id: f for f in features}
  pattern = write_records(tmp_path / "train.tf_record", features, True, num_shards=2)
  dataset = squad.make_dataset(pattern, 40, is_training=True, batch_size=8, drop_remainder=True)
  assert dataset.element_spec["input_ids"].shape == (8, 40)
  assert dataset.element_spec["start_positions"].shape == (8,)
  seen = set()
  for batch in dataset.take(2 * len(features) // 8 + 1).as_numpy_iterator():
    for row in range(8):
      feature = by_id[int(batch["unique_ids"][row])]
      seen.add(feature.unique_id)
      assert batch["input_ids"][row].tolist() == feature.input_ids
      assert batch["start_positions"][row] == feature.start_position
      assert batch["end_positions"][row] == feature.end_position
      assert batch["is_impossible"][row] == int(feature.is_impossible)
  assert seen == set(by_id)  # Repeats, and covers everything.

  shares = []
  for pipeline in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                         num_replicas_in_sync=2)
    shard = squad.make_dataset(pattern, 40, True, batch_size=8, drop_remainder=True,
                               input_context=context)
    assert shard.element_spec["input_ids"].shape == (4, 40)  # Per-replica batch.
    shares.append({int(u) for b in shard.take(len(features)).as_numpy_iterator()
                   for u in b["unique_ids"]})
  assert not shares[0] & shares[1] and shares[0] | shares[1] == set(by_id)


# --- feature cache ---------------------------------------------------------------------------


def prepare(files: Dict[str, str], tokenizer: Any, output_dir: pathlib.Path, is_training: bool,
            **overrides: Any) -> Dict[str, Any]:
  args = dict(input_file=files["data"], tokenizer=tokenizer, vocab_file=files["vocab"],
              max_seq_length=40, doc_stride=13, max_query_length=12, is_training=is_training,
              version_2_with_negative=True, output_dir=str(output_dir), num_shards=2,
              num_workers=0)
  args.update(overrides)
  return squad.prepare_features(**args)


def test_prepare_features_reuses_and_rebuilds(tmp_path: pathlib.Path, files: Dict[str, str],
                                              tokenizer: Any, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
  caplog.set_level(logging.INFO)
  out = tmp_path / "features"
  first = prepare(files, tokenizer, out, is_training=True)
  examples, features = fixture_features(files, tokenizer, is_training=True)
  assert (first["num_examples"], first["num_features"]) == (len(examples), len(features))
  assert len(tf.io.gfile.glob(first["file_pattern"])) == 2
  assert first["record_counts"] == {  # what lets a resume skip whole files unread
      os.path.basename(path): input_pipeline.count_records(path)
      for path in tf.io.gfile.glob(first["file_pattern"])}

  convert = squad.convert_examples_to_features
  monkeypatch.setattr(squad, "convert_examples_to_features",
                      lambda *a, **k: pytest.fail("the cache was not reused"))
  assert prepare(files, tokenizer, out, is_training=True) == first
  assert any(re.search("Reusing the cached records of .*train_meta.json", r.getMessage())
             for r in caplog.records)
  monkeypatch.setattr(squad, "convert_examples_to_features", convert)

  changed_flag = prepare(files, tokenizer, out, is_training=True, doc_stride=7)
  assert changed_flag["doc_stride"] == 7 and changed_flag["num_features"] > first["num_features"]
  assert any("doc_stride changed" in r.getMessage() for r in caplog.records)

  vocab = tmp_path / "vocab.txt"
  shutil.copy(files["vocab"], vocab)
  with open(vocab, "a", encoding="utf-8") as f:
    f.write("extra\n")
  changed_vocab = prepare(files, tokenizer, out, is_training=True, doc_stride=7,
                          vocab_file=str(vocab))
  assert changed_vocab["vocab_sha256"] != first["vocab_sha256"]
  assert any("vocab_sha256 changed" in r.getMessage() for r in caplog.records)

  fewer_shards = prepare(files, tokenizer, out, is_training=True, doc_stride=7,
                         vocab_file=str(vocab), num_shards=1)
  assert tf.io.gfile.glob(fewer_shards["file_pattern"]) == [str(out / "train.tf_record")]
  # The old shards are gone and no temporary file is left behind.
  assert sorted(os.listdir(out)) == ["train.tf_record", "train_meta.json"]


def test_a_copied_feature_cache_reads_its_own_files(tmp_path: pathlib.Path,
                                                    files: Dict[str, str], tokenizer: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
  """The metadata names the records relative to its directory and the input by the path given
  now: a copied or synced run directory reuses its own cache, with the original gone."""
  data = tmp_path / "data.json"
  shutil.copy(files["data"], data)
  prepare(dict(files, data=str(data)), tokenizer, tmp_path / "out", is_training=False)
  recorded = json.loads((tmp_path / "out" / "eval_meta.json").read_text())
  assert recorded["file_pattern"] == "eval.tf_record-*-of-00002"
  shutil.copytree(tmp_path / "out", tmp_path / "copy")
  shutil.rmtree(tmp_path / "out")
  data.rename(tmp_path / "moved.json")  # the input moved too (another machine)
  moved = dict(files, data=str(tmp_path / "moved.json"))
  monkeypatch.setattr(squad, "convert_examples_to_features",
                      lambda *a, **k: pytest.fail("the cache was not reused"))
  again = prepare(moved, tokenizer, tmp_path / "copy", is_training=False)
  assert again["file_pattern"] == str(tmp_path / "copy" / "eval.tf_record-*-of-00002")
  assert len(tf.io.gfile.glob(again["file_pattern"])) == 2
  examples, features = squad.load_eval_data(str(tmp_path / "copy"), moved["data"])
  assert len(features) == recorded["num_features"] and examples


def test_prepare_eval_features_and_load_them_back(tmp_path: pathlib.Path, files: Dict[str, str],
                                                  tokenizer: Any) -> None:
  data = tmp_path / "data.json"
  shutil.copy(files["data"], data)
  metadata = prepare(dict(files, data=str(data)), tokenizer, tmp_path, is_training=False)
  assert sorted(os.listdir(tmp_path)) == [
      "data.json", "eval.tf_record-00000-of-00002", "eval.tf_record-00001-of-00002",
      "eval_features.jsonl", "eval_meta.json"]
  examples, features = fixture_features(files, tokenizer, is_training=False)
  loaded_examples, loaded_features = squad.load_eval_data(str(tmp_path))
  assert loaded_examples == examples
  assert metadata["num_features"] == len(loaded_features) == len(features)
  for loaded, feature in zip(loaded_features, features):
    for field in ("unique_id", "example_index", "doc_span_index", "tokens", "token_to_orig_map",
                  "token_is_max_context"):
      assert getattr(loaded, field) == getattr(feature, field)
  # The same predictions from the in-memory and the reloaded features.
  results = random_results(features, seed=3)
  paths = [output_paths(tmp_path / name) for name in ("a", "b")]
  assert (squad.write_predictions(examples, features, results, 5, 10, True, *paths[0], True) ==
          squad.write_predictions(loaded_examples, loaded_features, results, 5, 10, True,
                                  *paths[1], True))

  data.touch()  # Same content: still valid.
  squad.load_eval_data(str(tmp_path))
  with open(data, "a", encoding="utf-8") as f:
    f.write(" ")
  with pytest.raises(ValueError, match="changed after its features were written"):
    squad.load_eval_data(str(tmp_path))


# --- predictions -----------------------------------------------------------------------------


def random_results(features: Sequence[squad.InputFeatures], seed: int,
                   decimals: int = 1) -> List[squad.RawResult]:
  """Rounded logits, so that ties (and their ordering) are exercised too."""
  rng = np.random.default_rng(seed)
  return [squad.RawResult(f.unique_id,
                          np.round(rng.normal(0, 3.0, len(f.input_ids)), decimals).tolist(),
                          np.round(rng.normal(0, 3.0, len(f.input_ids)), decimals).tolist())
          for f in features]


def output_paths(directory: pathlib.Path) -> Tuple[str, str, str]:
  return (str(directory / "predictions.json"), str(directory / "nbest_predictions.json"),
          str(directory / "null_odds.json"))


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
  predictions = squad.write_predictions(examples, features, results, 4, 6, True, *ours_paths,
                                        version_2, threshold)
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
    results.append(squad.RawResult(feature.unique_id, start, end))
  paths = output_paths(tmp_path)
  predictions = squad.write_predictions(examples, features, results, 3, 30, True, *paths)
  assert {k: predictions[k] for k in wanted} == {k: v[1] for k, v in wanted.items()}
  text = pathlib.Path(paths[0]).read_text(encoding="utf-8")
  assert "《바다의 눈》이라는" in text and "\\u" not in text  # Readable UTF-8.
  assert "Café Müller" in pathlib.Path(paths[1]).read_text(encoding="utf-8")


def test_null_only_nbest_predicts_empty(tmp_path: pathlib.Path, files: Dict[str, str],
                                        tokenizer: Any) -> None:
  """google-research crashes here (best_non_null_entry is None); we predict ""."""
  examples, features = fixture_features(files, tokenizer, is_training=False)
  # Best start and end at [CLS]: with n_best_size 1 no span is valid and only the null remains.
  results = [squad.RawResult(f.unique_id, [2.0] + [0.0] * 39, [1.5] + [0.0] * 39)
             for f in features]
  paths = output_paths(tmp_path)
  predictions = squad.write_predictions(examples, features, results, 1, 30, True, *paths,
                                        version_2_with_negative=True)
  assert set(predictions.values()) == {""}
  null_odds = json.loads(pathlib.Path(paths[2]).read_text())
  assert set(null_odds.values()) == {3.5}
  nbest = json.loads(pathlib.Path(paths[1]).read_text())
  assert nbest["q0-0"] == [{"text": "", "probability": 1.0, "start_logit": 2.0, "end_logit": 1.5}]
  # SQuAD 1.1 has no null answer: with no valid span google-research's "empty" stands in.
  assert set(squad.write_predictions(examples, features, results, 1, 30, True, *paths).values()
             ) == {"empty"}


def test_write_predictions_needs_every_result(tmp_path: pathlib.Path, files: Dict[str, str],
                                              tokenizer: Any) -> None:
  examples, features = fixture_features(files, tokenizer, is_training=False)
  results = random_results(features, seed=0)[:-1]
  with pytest.raises(ValueError, match=r"1 of \d+ features have no result"):
    squad.write_predictions(examples, features, results, 3, 30, True, *output_paths(tmp_path))
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
  assert (squad.get_final_text(pred_text, orig_text, do_lower_case) ==
          squad_lib.get_final_text(pred_text, orig_text, do_lower_case))


def test_get_final_text_strips_what_the_prediction_lacks() -> None:
  assert squad.get_final_text("steve smith", "Steve Smith's", True) == "Steve Smith"
  assert squad.get_final_text("1887", "(1887–1952),", True) == "1887"
