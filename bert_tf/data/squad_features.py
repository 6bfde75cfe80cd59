"""SQuAD examples to model features: the doc-stride windows of each context, the second stage.

`convert_examples_to_features` and `InputFeatures` give google-research/bert's run_squad.py
features byte for byte (the same windows, max-context flags, labels and unique_ids). This stage is
separate because it is where the time goes, and so where the speed-ups live: each paragraph is
tokenized once however many questions it has, the tokens of each whitespace-separated word are
memoized, the max-context flags are computed once per window instead of rescanning every window
for every token, and the tokenizing can be handed to worker processes. It neither reads files nor
writes them: squad_examples and squad_records do.
"""

import array
import collections
import contextlib
import dataclasses
import functools
import gc
import itertools
import multiprocessing
import multiprocessing.connection
import os
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from bert_tf.data.squad_examples import SquadExample

FIRST_UNIQUE_ID = 1000000000


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
