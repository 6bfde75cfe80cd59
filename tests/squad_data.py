"""The SQuAD fixture the squad_* tests share: our own texts, a dataset and a vocab made from them,
and helpers that run the stages on it (features, results for post-processing).

The reference of those tests is tf-models-official's squad_lib, a port of google-research's
run_squad.py, run on the same inputs. Where the two differ (is_impossible of windows without the
answer, eval labels, padding features) the tests follow google-research and say so.
"""

import json
import pathlib
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import pytest

from bert_tf.data import squad_examples, squad_features, squad_predictions
from bert_tf import tokenization


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


def our_features(examples: Sequence[squad_examples.SquadExample], tokenizer: Any,
                 max_seq_length: int, doc_stride: int, max_query_length: int, is_training: bool,
                 num_workers: int = 0) -> List[squad_features.InputFeatures]:
  features = []
  count = squad_features.convert_examples_to_features(
      examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training,
      features.append, num_workers=num_workers)
  assert count == len(features)
  return features


def fixture_features(files: Dict[str, str], tokenizer: Any, is_training: bool
                     ) -> Tuple[List[squad_examples.SquadExample],
                                List[squad_features.InputFeatures]]:
  examples = squad_examples.read_squad_examples(files["data"], is_training,
                                                version_2_with_negative=True)
  return examples, our_features(examples, tokenizer, 40, 13, 12, is_training)


def random_results(features: Sequence[squad_features.InputFeatures], seed: int,
                   decimals: int = 1) -> List[squad_predictions.RawResult]:
  """Rounded logits, so that ties (and their ordering) are exercised too."""
  rng = np.random.default_rng(seed)
  return [squad_predictions.RawResult(
              f.unique_id, np.round(rng.normal(0, 3.0, len(f.input_ids)), decimals).tolist(),
              np.round(rng.normal(0, 3.0, len(f.input_ids)), decimals).tolist())
          for f in features]


def output_paths(directory: pathlib.Path) -> Tuple[str, str, str]:
  return (str(directory / "predictions.json"), str(directory / "nbest_predictions.json"),
          str(directory / "null_odds.json"))
