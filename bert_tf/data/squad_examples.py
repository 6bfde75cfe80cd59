"""Reading SQuAD 1.1 / 2.0 and KorQuAD 1.0 JSON into examples: the first stage of SQuAD data.

`read_squad_examples` and `SquadExample` keep the names and semantics of google-research/bert's
run_squad.py (the same context words, answer positions and skipped answers), so code written
against it keeps working. This stage is the only one that knows the JSON layout, which is why it
stands apart: malformed input fails here, early, with the file, the place and the question id, and
the later stages (squad_features, squad_records, squad_predictions) start from its examples.
"""

import bisect
import dataclasses
import json
import re
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf

from bert_tf.io import files as io_files

# google-research splits contexts on these characters only (not on every Unicode space).
_CONTEXT_WORD = re.compile("[^ \t\r\n\u202f]+")


@dataclasses.dataclass
class SquadExample:
  """One question about one context; for training also its answer as word positions.

  `doc_tokens` is the context split on whitespace; the examples of one paragraph share the list.
  Unanswerable (SQuAD 2.0) training examples have positions -1 and answer text "".
  """
  qas_id: str
  question_text: str
  doc_tokens: List[str]
  orig_answer_text: Optional[str] = None
  start_position: Optional[int] = None
  end_position: Optional[int] = None
  is_impossible: bool = False


def _split_context(context: str) -> Tuple[List[str], List[int]]:
  """Whitespace words of `context` and the character offset where each starts."""
  matches = list(_CONTEXT_WORD.finditer(context))
  return [m.group() for m in matches], [m.start() for m in matches]


def _word_at(word_starts: List[int], char_offset: int) -> int:
  """Index of the word containing `char_offset`, or of the word before it if that is whitespace."""
  return bisect.bisect_right(word_starts, char_offset) - 1


def _require(container: Any, key: str, kind: type, where: str) -> Any:
  """container[key], checked to be a `kind`; a ValueError naming `where` otherwise."""
  if not isinstance(container, dict):
    raise ValueError(f"{where}: expected a JSON object with field {key!r}, got "
                     f"{container!r:.80}.")
  if key not in container:
    raise ValueError(f"{where}: missing field {key!r}.")
  value = container[key]
  if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
    raise ValueError(f"{where}: field {key!r} must be {kind.__name__}, got {value!r:.80}.")
  return value


def _read_dataset(input_file: str) -> Any:
  """The parsed JSON of `input_file`; a ValueError naming the file and line if it is not JSON."""
  if not tf.io.gfile.exists(input_file):
    raise FileNotFoundError(f"{input_file} does not exist.")
  with tf.io.gfile.GFile(input_file, "rb") as f:
    data = f.read()
  try:
    return json.loads(data.decode("utf-8"))
  except UnicodeDecodeError:
    raise io_files.utf8_error(input_file) from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{input_file}, line {e.lineno} column {e.colno}: not valid JSON ({e.msg}). "
                     "A SQuAD file is one JSON object {\"data\": [...]}; check that the file is "
                     "complete (not a truncated download).") from None
  except RecursionError:
    raise ValueError(f"{input_file}: JSON nested too deeply to be a SQuAD file.") from None


def read_squad_examples(input_file: str, is_training: bool,
                        version_2_with_negative: bool = False) -> List[SquadExample]:
  """Reads a SQuAD-format JSON file (local or gs://) into examples, as google-research does.

  For training each question needs exactly one answer (or `is_impossible` with SQuAD 2.0); an
  answer whose words do not contain its text is skipped with a warning, like google-research.
  Malformed data (missing fields, repeated question ids, an empty context or question, answers
  outside the context) is a ValueError naming the file, the place and the question id.
  """
  articles = _require(_read_dataset(input_file), "data", list, f"{input_file}: top level")
  examples = []
  skipped = []
  first_place: Dict[str, str] = {}  # question id -> where it first appeared
  for article_index, article in enumerate(articles):
    where = f"{input_file}: data[{article_index}]"
    title = article.get("title") if isinstance(article, dict) else None
    for paragraph_index, paragraph in enumerate(_require(article, "paragraphs", list, where)):
      paragraph_place = f"data[{article_index}].paragraphs[{paragraph_index}]"
      paragraph_where = f"{input_file}: {paragraph_place}"
      context = _require(paragraph, "context", str, paragraph_where)
      questions = _require(paragraph, "qas", list, paragraph_where)
      if questions and not context.strip():
        raise ValueError(f"{paragraph_where}: the context is empty, so its {len(questions)} "
                         "question(s) cannot be answered. Fill in the context or remove the "
                         "paragraph.")
      doc_tokens, word_starts = _split_context(context)
      for qa_index, qa in enumerate(questions):
        place = f"{paragraph_place}.qas[{qa_index}]"
        qas_id = _require(qa, "id", str, f"{input_file}: {place}")
        qa_where = f"{input_file}: {place} (question id {qas_id!r}" + (
            f" in {title!r})" if isinstance(title, str) else ")")
        if qas_id in first_place:
          raise ValueError(f"{qa_where}: the question id is also used at {first_place[qas_id]}. "
                           "Predictions are keyed by id, so one answer would silently replace "
                           "the other: give every question its own id.")
        first_place[qas_id] = place
        question = _require(qa, "question", str, qa_where)
        if not question.strip():
          raise ValueError(f"{qa_where}: the question is empty. Fill it in or remove it.")
        example = SquadExample(qas_id=qas_id, question_text=question, doc_tokens=doc_tokens)
        if is_training:
          unfound = _label_training_example(example, qa, context, word_starts,
                                            version_2_with_negative, qa_where)
          if unfound:
            skipped.append(f"{place} (id {qas_id!r}): {unfound}")
            continue
        examples.append(example)
  _check_skipped(input_file, skipped, len(skipped) + len(examples))
  if not examples:
    raise ValueError(f"{input_file} holds no questions.")
  return examples


def _check_skipped(input_file: str, skipped: List[str], total: int) -> None:
  """Warns about training answers not found in their context; fails when most are not.

  google-research skips such questions, and so do we: a few quirks in a large file (stray
  whitespace or punctuation around an answer) should not stop a run. But when most answers
  cannot be found, answer_start is systematically wrong (counted in bytes or UTF-16 units
  instead of characters, or shifted), and training on what is left would silently learn from a
  fraction of the data: that is an error.
  """
  if not skipped:
    return
  shown = "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
  message = (f"{input_file}: the answers of {len(skipped)} of {total} training questions are not "
             f"in the context words at their answer_start: {shown}")
  if 2 * len(skipped) > total:
    raise ValueError(f"{message}. Most answers missing means answer_start is wrong throughout: "
                     "it must count Unicode characters of the context (not bytes or UTF-16 "
                     "units) from 0.")
  logging.warning("%s. Skipped them, as google-research does.", message)


def _label_training_example(example: SquadExample, qa: Dict[str, Any], context: str,
                            word_starts: List[int], version_2_with_negative: bool,
                            where: str) -> Optional[str]:
  """Sets the answer of a training example; when its text cannot be found, says so (skip it)."""
  if version_2_with_negative:
    example.is_impossible = _require(qa, "is_impossible", bool, where)
  if example.is_impossible:
    example.orig_answer_text, example.start_position, example.end_position = "", -1, -1
    return None
  answers = _require(qa, "answers", list, where)
  if len(answers) != 1:
    raise ValueError(
        f"{where}: training needs exactly one answer per question, found {len(answers)}. "
        "Files with several answers per question are dev sets, for evaluation: pass this file "
        "as --predict_file and the training set (e.g. train-v1.1.json) as --train_file"
        + ("." if version_2_with_negative else
           "; for SQuAD 2.0 data add --version_2_with_negative=true."))
  answer_where = f"{where}: answers[0]"
  text = _require(answers[0], "text", str, answer_where)
  answer_start = _require(answers[0], "answer_start", int, answer_where)
  if not text.strip():
    raise ValueError(f"{answer_where}: the answer text is empty; mark unanswerable questions with "
                     "is_impossible (SQuAD 2.0) instead.")
  if answer_start < 0 or answer_start + len(text) > len(context):
    raise ValueError(f"{answer_where}: answer_start {answer_start} with a {len(text)}-character "
                     f"answer falls outside the {len(context)}-character context.")
  start = _word_at(word_starts, answer_start)
  end = _word_at(word_starts, answer_start + len(text) - 1)
  actual_text = " ".join(example.doc_tokens[start:end + 1])
  if start < 0 or actual_text.find(" ".join(text.split())) == -1:
    return f"answer {text!r:.60} but context words {actual_text!r:.60}"
  example.orig_answer_text, example.start_position, example.end_position = text, start, end
  return None
