"""SQuAD 1.1 / 2.0 and KorQuAD 1.0 data: reading, features, TFRecord cache, answer post-processing.

The names and semantics follow google-research/bert's run_squad.py so that code written against it
keeps working: `read_squad_examples`, `convert_examples_to_features` (the same doc-stride windows,
max-context flags and labels, byte for byte), `FeatureWriter`, `RawResult` and `write_predictions`.

What differs is speed and robustness. The conversion tokenizes each paragraph once however many
questions it has, memoizes the tokens of each whitespace-separated word, computes the max-context
flags once per window instead of rescanning every window for every token, and can hand the
tokenizing to worker processes. Malformed input fails early with the file and question id, and
outputs are written atomically.

`prepare_features` adds a cache: the TFRecords plus a metadata JSON recording everything the
features depend on, so a repeated run reuses them and a changed flag, vocab or input rebuilds them.
"""

import array
import bisect
import collections
import contextlib
import dataclasses
import functools
import gc
import heapq
import itertools
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import time
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf

from bert_tf.data import pipeline as input_pipeline
from bert_tf.data import records
from bert_tf.io import files as io_files
from bert_tf import tokenization

FIRST_UNIQUE_ID = 1000000000
EVAL_SIDECAR = "eval_features.jsonl"
# google-research splits contexts on these characters only (not on every Unicode space).
_CONTEXT_WORD = re.compile("[^ \t\r\n\u202f]+")
_METADATA_FORMAT = "bert_tf.squad_features/1"


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


@dataclasses.dataclass
class InputFeatures:
  """One model input: [CLS] question [SEP] a window of the context [SEP], padded.

  `token_to_orig_map` and `token_is_max_context` are keyed by position in `tokens` (context tokens
  only). Positions are labels for training (0/0 at [CLS] when the window lacks the answer) and None
  otherwise, as in google-research. Features read back by `load_eval_data` have the model inputs
  (input_ids, input_mask, segment_ids) set to None: those live in the TFRecords.
  """
  unique_id: int
  example_index: int
  doc_span_index: int
  tokens: List[str]
  token_to_orig_map: Dict[int, int]
  token_is_max_context: Dict[int, bool]
  input_ids: Optional[List[int]]
  input_mask: Optional[List[int]]
  segment_ids: Optional[List[int]]
  start_position: Optional[int] = None
  end_position: Optional[int] = None
  is_impossible: Optional[bool] = None


RawResult = collections.namedtuple("RawResult", ["unique_id", "start_logits", "end_logits"])


# ---------------------------------------------------------------------------------------------
# Reading


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


# ---------------------------------------------------------------------------------------------
# Features


def _int_bytes(values: List[int]) -> bytes:
  return array.array("q", values).tobytes()


def _int_list(packed: bytes) -> List[int]:
  return array.array("q", packed).tolist()


@dataclasses.dataclass
class _TokenizedDoc:
  """A context's WordPiece tokens, their ids, and the maps between words and tokens."""
  tokens: List[str]
  ids: List[int]
  tok_to_orig_index: List[int]
  orig_to_tok_index: List[int]

  def __reduce__(self) -> Tuple[Callable[..., "_TokenizedDoc"], Tuple[Any, ...]]:
    """Pickles as one string and three byte strings, which unpickle ~10x faster than lists.

    (Worker processes send these to the parent.) Joining on spaces is lossless because tokens are
    pieces of whitespace-split words.
    """
    return _TokenizedDoc.unpack, (" ".join(self.tokens), _int_bytes(self.ids),
                                  _int_bytes(self.tok_to_orig_index),
                                  _int_bytes(self.orig_to_tok_index))

  @classmethod
  def unpack(cls, tokens: str, ids: bytes, tok_to_orig_index: bytes,
             orig_to_tok_index: bytes) -> "_TokenizedDoc":
    return cls(tokens.split(" ") if tokens else [], _int_list(ids), _int_list(tok_to_orig_index),
               _int_list(orig_to_tok_index))


_Window = collections.namedtuple("_Window", ["start", "length", "is_max_context"])


@functools.lru_cache(maxsize=4096)
def _windows(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> Tuple[_Window, ...]:
  """google-research's doc-stride windows over `num_tokens` context tokens, with max-context flags.

  Windows of up to `max_tokens_for_doc` tokens start every `doc_stride` tokens until one reaches
  the end. A token's score in a window is min(left context, right context) + 0.01 * window length
  and the first window with the highest score is its max-context window, as in google-research's
  _check_is_max_context; here every window is scored once instead of all windows per token, and
  the result is shared by every question with the same context and question lengths.
  """
  spans = []
  start = 0
  while start < num_tokens:
    length = min(num_tokens - start, max_tokens_for_doc)
    spans.append((start, length))
    if start + length == num_tokens:
      break
    start += min(length, doc_stride)
  if len(spans) == 1:
    return (_Window(0, num_tokens, (True,) * num_tokens),)
  best_score = [-1.0] * num_tokens
  best_span = [-1] * num_tokens
  for span_index, (start, length) in enumerate(spans):
    end = start + length - 1
    for position in range(start, end + 1):
      score = min(position - start, end - position) + 0.01 * length
      if score > best_score[position]:
        best_score[position] = score
        best_span[position] = span_index
  return tuple(
      _Window(start, length, tuple(best_span[p] == index for p in range(start, start + length)))
      for index, (start, length) in enumerate(spans))


# What the tokenizing stage hands the assembling stage for one example (small to pickle: the
# examples of a paragraph share `doc`).
_Tokenized = collections.namedtuple("_Tokenized",
                                    ["doc", "query_tokens", "query_ids", "answer_span"])


class _Converter:
  """Turns examples into features (without unique_id / example_index, which the caller assigns).

  Two stages: `tokenize` (the costly part, which worker processes can run) and `assemble`. It
  keeps the last paragraph's tokens, so each paragraph is tokenized once for all its questions
  (the tokenizer itself remembers words). Assumes tokenizing depends on the input only (true of
  WordPiece), which makes that cache exact. `tokenizer` is a bert_tf FullTokenizer.
  """

  def __init__(self, tokenizer: Any, max_seq_length: int, doc_stride: int, max_query_length: int,
               is_training: bool):
    self._tokenizer = tokenizer
    self._max_seq_length = max_seq_length
    self._doc_stride = doc_stride
    self._max_query_length = max_query_length
    self._is_training = is_training
    try:
      self._cls_id, self._sep_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    except KeyError as e:
      raise ValueError(f"The vocab has no {e} token, which SQuAD features need.") from None
    self._last_doc: Optional[Tuple[List[str], _TokenizedDoc]] = None

  def _tokenize_doc(self, doc_tokens: List[str]) -> _TokenizedDoc:
    if self._last_doc is not None:
      last_words, last_doc = self._last_doc
      if last_words is doc_tokens or last_words == doc_tokens:
        return last_doc
    # One tokenizer call for the paragraph's words, and the maps built in C (chain, repeat,
    # accumulate): a paragraph of a hundred words costs a few calls rather than a few hundred.
    tokens, ids, lengths = self._tokenizer.tokenize_words(doc_tokens)
    tok_to_orig_index = list(itertools.chain.from_iterable(
        map(itertools.repeat, range(len(doc_tokens)), lengths)))
    orig_to_tok_index = list(itertools.accumulate(lengths[:-1], initial=0)) if lengths else []
    doc = _TokenizedDoc(tokens, ids, tok_to_orig_index, orig_to_tok_index)
    self._last_doc = (doc_tokens, doc)
    return doc

  def _answer_span(self, example: SquadExample, doc: _TokenizedDoc) -> Tuple[int, int]:
    """The answer's token positions, narrowed to the tokens that spell it (_improve_answer_span)."""
    if example.is_impossible:
      return -1, -1
    start = doc.orig_to_tok_index[example.start_position]
    if example.end_position < len(example.doc_tokens) - 1:
      end = doc.orig_to_tok_index[example.end_position + 1] - 1
    else:
      end = len(doc.tokens) - 1
    answer = " ".join(self._tokenizer.tokenize(example.orig_answer_text))
    for new_start in range(start, end + 1):
      for new_end in range(end, new_start - 1, -1):
        if " ".join(doc.tokens[new_start:new_end + 1]) == answer:
          return new_start, new_end
    return start, end

  def tokenize(self, example: SquadExample) -> _Tokenized:
    """First stage: the example's context and question tokens, and its answer's token span."""
    query_tokens = self._tokenizer.tokenize(example.question_text)[:self._max_query_length]
    doc = self._tokenize_doc(example.doc_tokens)
    return _Tokenized(doc, query_tokens, self._tokenizer.convert_tokens_to_ids(query_tokens),
                      self._answer_span(example, doc) if self._is_training else None)

  def assemble(self, example: SquadExample, tokenized: _Tokenized) -> List[InputFeatures]:
    """Second stage: the features of one example, one per window of its context."""
    doc, query_tokens, query_ids, answer_span = tokenized
    doc_offset = len(query_tokens) + 2
    features = []
    windows = _windows(len(doc.tokens), self._max_seq_length - doc_offset - 1, self._doc_stride)
    single_window = len(windows) == 1  # Every token has its max context there.
    for span_index, (start, length, is_max_context) in enumerate(windows):
      num_real = doc_offset + length + 1
      padding = [0] * (self._max_seq_length - num_real)
      positions = range(doc_offset, doc_offset + length)
      feature = InputFeatures(
          unique_id=-1,
          example_index=-1,
          doc_span_index=span_index,
          tokens=["[CLS]", *query_tokens, "[SEP]", *doc.tokens[start:start + length], "[SEP]"],
          token_to_orig_map=dict(zip(positions, doc.tok_to_orig_index[start:start + length])),
          token_is_max_context=(dict.fromkeys(positions, True) if single_window else
                                dict(zip(positions, is_max_context))),
          input_ids=[self._cls_id, *query_ids, self._sep_id, *doc.ids[start:start + length],
                     self._sep_id, *padding],
          input_mask=[1] * num_real + padding,
          segment_ids=[0] * doc_offset + [1] * (length + 1) + padding,
          is_impossible=example.is_impossible)
      if self._is_training:
        feature.start_position, feature.end_position = 0, 0
        if (not example.is_impossible and answer_span[0] >= start and
            answer_span[1] <= start + length - 1):
          feature.start_position = answer_span[0] - start + doc_offset
          feature.end_position = answer_span[1] - start + doc_offset
      features.append(feature)
    return features


# State that forked workers inherit: (converter, examples). Set only while workers run.
_WORKER_STATE: Optional[Tuple[_Converter, Sequence[SquadExample]]] = None


class _WorkerFailure(str):
  """A worker's traceback, sent to the parent in place of a result."""


def _tokenize_chunks(sender: multiprocessing.connection.Connection,
                     chunks: List[Tuple[int, int]]) -> None:
  """Worker process: sends the first stage of examples[begin:end] for each chunk, in order."""
  converter, examples = _WORKER_STATE
  try:
    for begin, end in chunks:
      sender.send([converter.tokenize(example) for example in examples[begin:end]])
  except Exception:  # pylint: disable=broad-except  (reported to the parent, which raises)
    sender.send(_WorkerFailure(traceback.format_exc()))
  finally:
    sender.close()


def _paragraph_chunks(examples: Sequence[SquadExample], target_size: int) -> List[Tuple[int, int]]:
  """[begin, end) ranges of about `target_size` examples that do not split a paragraph."""
  chunks = []
  begin = 0
  for index in range(1, len(examples) + 1):
    if index == len(examples) or (index - begin >= target_size and
                                  examples[index].doc_tokens is not examples[index - 1].doc_tokens):
      chunks.append((begin, index))
      begin = index
  return chunks


def default_num_workers() -> int:
  """One worker per usable core besides this process's own (a value for num_workers flags)."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return max(0, (cores or 1) - 1)


def _tokenized_examples(converter: _Converter, examples: Sequence[SquadExample],
                        num_workers: int) -> Iterator[_Tokenized]:
  """The first stage for each example, in order, from `num_workers` forked processes (0: here).

  Chunks are dealt to the workers in turn and read back in the same turn, which keeps the order
  without a scheduler. No multiprocessing.Pool: its result thread competes for the GIL with the
  busy assembling thread and starved it. Workers return tokens, not finished features, because
  unpickling features costs more than assembling them.
  """
  if num_workers < 1 or len(examples) < 2 or "fork" not in multiprocessing.get_all_start_methods():
    yield from map(converter.tokenize, examples)
    return
  global _WORKER_STATE
  # Forked workers see the examples and the converter without pickling; they only run Python
  # tokenization, never TensorFlow, so forking a process that has TensorFlow loaded is safe.
  _WORKER_STATE = (converter, examples)
  context = multiprocessing.get_context("fork")
  chunks = _paragraph_chunks(examples, max(16, len(examples) // ((num_workers + 1) * 16)))
  num_workers = min(num_workers, len(chunks))
  workers = []
  try:
    for index in range(num_workers):
      receiver, sender = context.Pipe(duplex=False)
      process = context.Process(target=_tokenize_chunks, args=(sender, chunks[index::num_workers]),
                                daemon=True)
      process.start()
      sender.close()
      workers.append((process, receiver))
    _WORKER_STATE = None  # The children have their copy.
    for index in range(len(chunks)):
      process, receiver = workers[index % num_workers]
      try:
        result = receiver.recv()
      except EOFError:
        process.join()
        raise RuntimeError(f"A SQuAD conversion worker died (exit code {process.exitcode}); "
                           "try num_workers=0.") from None
      if isinstance(result, _WorkerFailure):
        raise RuntimeError(f"A SQuAD conversion worker failed:\n{result}")
      yield from result
  finally:
    _WORKER_STATE = None
    for process, receiver in workers:
      receiver.close()
      if process.is_alive():
        process.terminate()
      process.join()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
  """Pauses the cyclic garbage collector (features hold no cycles; reference counting frees them).

  Otherwise it rescans the growing list of features every few thousand allocations, which took
  more than half of the conversion time. Forked workers inherit the pause, which also keeps them
  from touching (and so copying) the parent's memory.
  """
  enabled = gc.isenabled()
  gc.disable()
  try:
    yield
  finally:
    if enabled:
      gc.enable()


def convert_examples_to_features(examples: Sequence[SquadExample], tokenizer: Any,
                                 max_seq_length: int, doc_stride: int, max_query_length: int,
                                 is_training: bool, output_fn: Callable[[InputFeatures], Any],
                                 num_workers: int = 0) -> int:
  """Calls `output_fn` on each feature of `examples`, in order; returns how many there were.

  The features are those of google-research's run_squad.py, byte for byte, with unique_ids counting
  up from 1000000000 in the same order. `tokenizer` is a bert_tf FullTokenizer (tokenize,
  tokenize_words, convert_tokens_to_ids). With `num_workers` > 0, that many forked processes
  tokenize while this one assembles the features and calls `output_fn`. That pays off only when
  tokenizing dominates (a slow tokenizer) and cores are idle: with bert_tf's tokenizer on SQuAD
  dev, 2 shared cores, one worker is slower than none (benchmarks/squad_features.py: 0.80 s vs
  0.47 s), hence the default 0.
  """
  if max_seq_length <= max_query_length + 3:
    raise ValueError(f"max_seq_length ({max_seq_length}) must exceed max_query_length "
                     f"({max_query_length}) + 3, to leave room for the context.")
  if doc_stride < 1 or max_query_length < 1:
    raise ValueError(f"doc_stride ({doc_stride}) and max_query_length ({max_query_length}) must be "
                     "positive.")
  if num_workers < 0:
    raise ValueError(f"num_workers must be at least 0, got {num_workers}.")
  converter = _Converter(tokenizer, max_seq_length, doc_stride, max_query_length, is_training)
  unique_id = FIRST_UNIQUE_ID
  with _gc_paused():
    tokenized = _tokenized_examples(converter, examples, num_workers)
    for example_index, (example, example_tokens) in enumerate(zip(examples, tokenized)):
      for feature in converter.assemble(example, example_tokens):
        feature.unique_id, feature.example_index = unique_id, example_index
        output_fn(feature)
        unique_id += 1
  return unique_id - FIRST_UNIQUE_ID


# ---------------------------------------------------------------------------------------------
# TFRecords


class FeatureWriter:
  """Writes InputFeatures as tf.train.Examples with google-research's feature names.

  Features go round-robin to `num_shards` files, so reading the shards in turn restores their
  order. Files are written under temporary names and renamed by `close`: a crash leaves no file
  that looks complete. Usable as a context manager (which discards the files on an exception).
  """

  def __init__(self, filename_or_pattern: str, is_training: bool, num_shards: int = 1):
    if num_shards < 1:
      raise ValueError(f"num_shards must be at least 1, got {num_shards}.")
    self.filenames = records.shard_names(filename_or_pattern, num_shards)
    self.is_training = is_training
    self.num_features = 0
    directory = os.path.dirname(filename_or_pattern)
    if directory:
      tf.io.gfile.makedirs(directory)
    self._temporary = [io_files.temporary_path(name) for name in self.filenames]
    self._writers = [tf.io.TFRecordWriter(name) for name in self._temporary]

  def process_feature(self, feature: InputFeatures) -> None:
    """Writes one feature."""
    features = {
        "unique_ids": records.int64_feature([feature.unique_id]),
        "input_ids": records.int64_feature(feature.input_ids),
        "input_mask": records.int64_feature(feature.input_mask),
        "segment_ids": records.int64_feature(feature.segment_ids),
    }
    if self.is_training:
      features["start_positions"] = records.int64_feature([feature.start_position])
      features["end_positions"] = records.int64_feature([feature.end_position])
      features["is_impossible"] = records.int64_feature([int(bool(feature.is_impossible))])
    example = tf.train.Example(features=tf.train.Features(feature=features))
    self._writers[self.num_features % len(self._writers)].write(example.SerializeToString())
    self.num_features += 1

  def close(self) -> None:
    """Finishes the files and gives them their final names."""
    for writer in self._writers:
      writer.close()
    for temporary, final in zip(self._temporary, self.filenames):
      tf.io.gfile.rename(temporary, final, overwrite=True)

  def discard(self) -> None:
    """Closes and deletes the unfinished files."""
    for writer in self._writers:
      writer.close()
    for temporary in self._temporary:
      if tf.io.gfile.exists(temporary):
        tf.io.gfile.remove(temporary)

  def __enter__(self) -> "FeatureWriter":
    return self

  def __exit__(self, exc_type, exc_value, traceback) -> None:
    if exc_type is None:
      self.close()
    else:
      self.discard()


def feature_parser(seq_length: int, is_training: bool) -> input_pipeline.Parser:
  """Parses batches of FeatureWriter records into int32 tensors (google-research's names)."""
  lengths = {"input_ids": seq_length, "input_mask": seq_length, "segment_ids": seq_length,
             "unique_ids": 1}
  if is_training:
    lengths.update(start_positions=1, end_positions=1, is_impossible=1)
  return input_pipeline.example_parser(input_pipeline.int_features(lengths))


def make_dataset(file_pattern: str, seq_length: int, is_training: bool, batch_size: int,
                 drop_remainder: bool,
                 input_context: Optional[tf.distribute.InputContext] = None, seed: int = 12345,
                 start_batch: int = 0, files_in_parallel: int = 16) -> tf.data.Dataset:
  """Batches of int32 feature dicts from FeatureWriter files (the input_fn of google-research).

  Keys: input_ids, input_mask, segment_ids ([batch, seq_length]) and unique_ids, plus
  start_positions, end_positions and is_impossible for training. Training data is shuffled (by
  `seed`), repeated and always has full batches, starting after `start_batch` batches (to resume).
  `batch_size` is the global batch: with `input_context` (tf.distribute's
  distribute_datasets_from_function) each input pipeline reads its share of the files and yields
  per-replica batches. Evaluation data is read once, in order.
  """
  parser = feature_parser(seq_length, is_training)
  if is_training:
    if input_context:
      batch_size = input_context.get_per_replica_batch_size(batch_size)
    return input_pipeline.training_dataset(file_pattern, parser, batch_size, seed=seed,
                                           start_batch=start_batch, input_context=input_context,
                                           files_in_parallel=files_in_parallel)
  if input_context:
    raise ValueError("make_dataset shards training data only: for prediction, distribute the "
                     "dataset with strategy.experimental_distribute_dataset instead.")
  return input_pipeline.evaluation_dataset(file_pattern, parser, batch_size,
                                           drop_remainder=drop_remainder)


# ---------------------------------------------------------------------------------------------
# Feature cache


def _split_name(is_training: bool) -> str:
  return "train" if is_training else "eval"


def metadata_path(output_dir: str, is_training: bool) -> str:
  """Where prepare_features records what it cached for training or for evaluation."""
  return os.path.join(output_dir, f"{_split_name(is_training)}_meta.json")


def _write_eval_sidecar(path: str, features: List[InputFeatures]) -> None:
  """One JSON line per feature with what write_predictions needs (not the model inputs)."""
  with io_files.atomic_output(path) as temporary:
    with tf.io.gfile.GFile(temporary, "w") as f:
      for feature in features:
        positions = list(feature.token_to_orig_map)
        f.write(json.dumps({
            "unique_id": feature.unique_id,
            "example_index": feature.example_index,
            "doc_span_index": feature.doc_span_index,
            "tokens": feature.tokens,
            "doc_offset": positions[0] if positions else len(feature.tokens),
            "token_to_orig": [feature.token_to_orig_map[p] for p in positions],
            "max_context": [int(feature.token_is_max_context[p]) for p in positions],
        }, ensure_ascii=False) + "\n")


def _read_eval_sidecar(path: str) -> List[InputFeatures]:
  features = []
  with tf.io.gfile.GFile(path, "r") as f:
    for line in f:
      record = json.loads(line)
      positions = range(record["doc_offset"], record["doc_offset"] + len(record["token_to_orig"]))
      features.append(InputFeatures(
          unique_id=record["unique_id"], example_index=record["example_index"],
          doc_span_index=record["doc_span_index"], tokens=record["tokens"],
          token_to_orig_map=dict(zip(positions, record["token_to_orig"])),
          token_is_max_context=dict(zip(positions, map(bool, record["max_context"]))),
          input_ids=None, input_mask=None, segment_ids=None))
  return features


def prepare_features(input_file: str, tokenizer: Any, vocab_file: str, max_seq_length: int,
                     doc_stride: int, max_query_length: int, is_training: bool,
                     version_2_with_negative: bool, output_dir: str, num_shards: int = 1,
                     num_workers: int = 0) -> Dict[str, Any]:
  """Writes the features of `input_file` to TFRecords in `output_dir` once; returns their metadata.

  The metadata ({train,eval}_meta.json) records the flags, the SHA-256 of the input and the vocab,
  the tokenizer's casing, the files and the counts (num_examples, num_features); its
  `file_pattern` (recorded relative to `output_dir`, returned joined to it) is what make_dataset
  reads. A later call with the same inputs reuses the files, also from a copy of `output_dir`;
  any difference rebuilds them. The metadata is written last, so an interrupted build is redone.

  For evaluation, write_predictions also needs the examples and each feature's tokens and maps.
  They are kept beside the TFRecords in eval_features.jsonl (the examples are re-read from the
  input, whose checksum the metadata holds); `load_eval_data` returns both, so prediction needs
  neither the tokenizer nor a second conversion.
  """
  split = _split_name(is_training)
  meta_path = metadata_path(output_dir, is_training)
  # What the features depend on. The input and vocab are compared by content, not path: files
  # that merely moved are still the same (their paths are recorded for load_eval_data).
  key = {
      "format": _METADATA_FORMAT,
      "split": split,
      "input_sha256": io_files.file_sha256(input_file),
      "vocab_sha256": io_files.file_sha256(vocab_file),
      "do_lower_case": bool(tokenizer.basic_tokenizer.do_lower_case),
      "max_seq_length": max_seq_length,
      "doc_stride": doc_stride,
      "max_query_length": max_query_length,
      "version_2_with_negative": version_2_with_negative,
      "num_shards": num_shards,
  }

  def build() -> Dict[str, Any]:
    started = time.time()
    examples = read_squad_examples(input_file, is_training, version_2_with_negative)
    record_file = os.path.join(output_dir, f"{split}.tf_record")
    eval_features = []
    with FeatureWriter(record_file, is_training, num_shards) as writer:
      def output(feature: InputFeatures) -> None:
        writer.process_feature(feature)
        if not is_training:
          eval_features.append(feature)
      num_features = convert_examples_to_features(examples, tokenizer, max_seq_length,
                                                  doc_stride, max_query_length, is_training,
                                                  output, num_workers)
    files = [os.path.basename(name) for name in writer.filenames]
    if not is_training:
      files.append(EVAL_SIDECAR)
      _write_eval_sidecar(os.path.join(output_dir, EVAL_SIDECAR), eval_features)
    logging.info("Wrote %d %s features of %d examples to %s in %.1f s.", num_features, split,
                 len(examples), output_dir, time.time() - started)
    record_counts = {os.path.basename(name): len(range(i, writer.num_features, num_shards))
                     for i, name in enumerate(writer.filenames)}  # round-robin shards
    return dict(input_file=input_file, vocab_file=vocab_file, files=files,
                num_examples=len(examples), num_features=num_features, record_counts=record_counts,
                file_pattern=records.shard_pattern(os.path.basename(record_file), num_shards))

  metadata = records.cached_records(meta_path, key, build)
  # By name in output_dir: older caches recorded the path as typed, which a copy must not follow.
  return dict(metadata, input_file=input_file, file_pattern=os.path.join(
      output_dir, os.path.basename(metadata["file_pattern"])))


def load_eval_data(output_dir: str, input_file: Optional[str] = None
                   ) -> Tuple[List[SquadExample], List[InputFeatures]]:
  """The evaluation examples and features that prepare_features cached, for write_predictions.

  `input_file` is the predict file as given now (default: the path the cache recorded)."""
  meta_path = metadata_path(output_dir, is_training=False)
  if not tf.io.gfile.exists(meta_path):
    raise FileNotFoundError(f"{meta_path} does not exist: run prepare_features with "
                            "is_training=False first.")
  metadata = io_files.read_json(meta_path)
  input_file = input_file or metadata["input_file"]
  if io_files.file_sha256(input_file) != metadata["input_sha256"]:
    raise ValueError(f"{input_file} changed after its features were written to "
                     f"{output_dir}: run prepare_features again.")
  examples = read_squad_examples(input_file, is_training=False,
                                 version_2_with_negative=metadata["version_2_with_negative"])
  features = _read_eval_sidecar(os.path.join(output_dir, EVAL_SIDECAR))
  return examples, features


# ---------------------------------------------------------------------------------------------
# Predictions


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
