"""Serving from raw text: run_classifier's and run_squad's pre- and post-processing as TF ops.

`TextClassifier` and `QuestionAnswerer` are tf.Modules holding a model, an `InGraphTokenizer` and
the run's settings; their tf.functions take batches of strings and give what the scripts would
write: class probabilities and label names (test_results.tsv), answer texts (predictions.json).
A SavedModel of them (bert_tf.serving.export) runs with only tensorflow and tensorflow_text
imported.

Equal to the Python path on the same logits, step for step:
- classifier: FullTokenizer ids, google-research's truncation (pop from the longer segment, from
  text_b on a tie; `_pair_lengths` is its closed form) and packing ([CLS] a [SEP] b [SEP]).
- QA: contexts split on squad_examples' whitespace, each word tokenized on its own (so every token
  has its word), the question cut to max_query_length, doc_stride windows with
  squad_features._windows' max-context rule, then write_predictions' choice: the n_best_size best
  starts and ends of each window, kept when both are context tokens, the start has its max context
  there and the span is at most max_answer_length tokens; the best sum of logits wins, ties going to
  the earlier window, start rank, end rank (the order of its stable sort); get_final_text projects
  it onto the words; with SQuAD 2.0 the answer is "" when the lowest [CLS] score beats it by more
  than the threshold.
The one source of difference is the tokenizer's (InGraphTokenizer's docstring lists its cases).
The model runs on the request's inputs cut to its longest one (rounded up to 16 positions), not
on max_seq_length, and QA's n-best looks at each window's own tokens: run_squad's default
--length_buckets path, whose logits equal the padded path's to the bit.
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf
import tf_keras

from bert_tf import tokenization
from bert_tf.data import length_buckets
from bert_tf.serving import in_graph_tokenization

# squad_examples._CONTEXT_WORD's separators: google-research splits contexts on these only.
CONTEXT_SPACES = (0x20, 0x09, 0x0d, 0x0a, 0x202f)
NO_ANSWER = ""  # SQuAD 2.0's answer when the null score wins
EMPTY_ANSWER = "empty"  # write_predictions' text when no span is valid (SQuAD 1.1)
_STRINGS = tf.TensorSpec([None], tf.string)
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")


def features_spec(seq_length: int) -> Dict[str, tf.TensorSpec]:
  """The int32 [batch, seq_length] model inputs, by name (the `serving_features` signature)."""
  return {name: tf.TensorSpec([None, seq_length], tf.int32, name=name)
          for name in INPUT_NAMES}


def _clean_utf8(strings: tf.Tensor) -> tf.Tensor:
  """Drops invalid UTF-8, as InGraphTokenizer does, so character offsets count what it reads."""
  return tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="ignore")


def _packed(parts: Sequence[tf.RaggedTensor], types: Sequence[int], seq_length: int
            ) -> Dict[str, tf.Tensor]:
  """Concatenates ragged [batch, (ids)] parts, zero-padded to seq_length, with their segment ids."""
  ids = tf.concat(list(parts), axis=1)
  segment_ids = tf.concat([tf.ones_like(part) * kind for part, kind in zip(parts, types)], axis=1)
  shape = [None, seq_length]
  return dict(input_ids=ids.to_tensor(0, shape=shape),
              input_mask=tf.ones_like(ids).to_tensor(0, shape=shape),
              segment_ids=segment_ids.to_tensor(0, shape=shape))


def _lengths(values: tf.RaggedTensor) -> tf.Tensor:
  """The int32 length of each row."""
  return tf.cast(values.row_lengths(), tf.int32)


def _column(value: tf.Tensor, batch: tf.Tensor) -> tf.RaggedTensor:
  """A ragged [batch, (1)] of one id, to concatenate with token segments."""
  return tf.RaggedTensor.from_tensor(tf.fill([batch, 1], value))


def _prefix(values: tf.RaggedTensor, lengths: tf.Tensor) -> tf.RaggedTensor:
  """The first `lengths[i]` values of each row of `values`."""
  return tf.gather(values, tf.ragged.range(lengths), batch_dims=1)


def _pair_lengths(len_a: tf.Tensor, len_b: tf.Tensor, max_length: int):
  """Lengths after data/sentence_pairs.truncate_seq_pair (pop the longer, text_b on a tie).

  Popping from the longer side leaves the shorter one whole when it fits in half (rounded up for
  text_a, which loses the tie); otherwise both end at half, text_a keeping the odd token.
  """
  half_a, half_b = (max_length + 1) // 2, max_length // 2
  return (tf.minimum(len_a, tf.maximum(max_length - len_b, half_a)),
          tf.minimum(len_b, tf.maximum(max_length - len_a, half_b)))


def _first_argmax(values: tf.Tensor) -> tf.Tensor:
  """The index of the first largest value along the last axis (tf.argmax leaves ties open)."""
  positions = tf.range(tf.shape(values, out_type=tf.int32)[-1])
  is_max = values >= tf.reduce_max(values, axis=-1, keepdims=True)
  return tf.reduce_min(tf.where(is_max, positions, tf.int32.max), axis=-1)


def _gather_or(values: tf.Tensor, indices: tf.Tensor, valid: tf.Tensor, default) -> tf.Tensor:
  """values[indices] where `valid`, else `default` (also when `values` is empty)."""
  padded = tf.concat([values, tf.fill([1], tf.cast(default, values.dtype))], axis=0)
  return tf.gather(padded, tf.where(valid, indices, tf.shape(values, out_type=indices.dtype)[0]))


class ServingModule(tf.Module):
  """A model and the tokenizer of its vocab, with the special token ids packing needs."""

  def __init__(self, model: tf_keras.Model, vocab_file: str, do_lower_case: bool,
               max_seq_length: int):
    super().__init__()
    # The model's variables, not the model: saving a Keras model also traces every layer's call
    # for Keras' own loader, which serving does not use (most of the export's time).
    self.model_variables = list(model.variables)
    self._model = lambda features: model(features, training=False)
    self.tokenizer = in_graph_tokenization.InGraphTokenizer(vocab_file, do_lower_case)
    self.max_seq_length = max_seq_length
    vocab = tokenization.load_vocab(vocab_file)
    missing = [token for token in ("[CLS]", "[SEP]") if token not in vocab]
    if missing:
      raise ValueError(f"{vocab_file} has no {' or '.join(missing)} token, which the model's "
                       "inputs need.")
    self._vocab = list(vocab)
    self._cls_id, self._sep_id = vocab["[CLS]"], vocab["[SEP]"]

  def _run(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The model on the features cut to the request's longest input, rounded up to a multiple
    of length_buckets.GRANULE: what lies past it is padding in every row, and the outputs of
    the kept positions are those of the full length to the bit (data/length_buckets.py)."""
    granule = length_buckets.GRANULE
    longest = tf.reduce_max(tf.reduce_sum(features["input_mask"], axis=1))
    length = tf.minimum(tf.maximum((longest + granule - 1) // granule * granule, granule),
                        self.max_seq_length)
    return self._model({name: value[:, :length] for name, value in features.items()})


class TextClassifier(ServingModule):
  """run_classifier's prediction from raw text: label names and class probabilities."""

  def __init__(self, model: tf_keras.Model, vocab_file: str, do_lower_case: bool,
               max_seq_length: int, label_names: Sequence[str], pair: bool):
    super().__init__(model, vocab_file, do_lower_case, max_seq_length)
    if max_seq_length < (3 if pair else 2):
      raise ValueError(f"max_seq_length ({max_seq_length}) leaves no room for text.")
    self.pair = pair
    self.label_names = tf.constant(list(label_names))
    self.classify_features = tf.function(self._classify_features, autograph=False,
                                         input_signature=[features_spec(max_seq_length)])
    texts = [_STRINGS] * (2 if pair else 1)
    self.classify = tf.function(self._classify, input_signature=texts, autograph=False)
    self.features = tf.function(self._features, input_signature=texts, autograph=False)

  def _features(self, text_a: tf.Tensor, text_b: Optional[tf.Tensor] = None
                ) -> Dict[str, tf.Tensor]:
    """data/sentence_pairs.pack in TF ops: [CLS] a [SEP] (b [SEP]), truncated and padded."""
    tokens_a = self.tokenizer.tokenize(text_a)
    batch = tokens_a.nrows(out_type=tf.int32)
    len_a = _lengths(tokens_a)
    if text_b is None:
      tokens_b = tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int32),
                                                  tf.zeros([batch], tf.int64))
    else:
      tokens_b = self.tokenizer.tokenize(text_b)
    len_b = _lengths(tokens_b)
    has_b = len_b > 0  # as google-research, an empty text_b is no second segment
    pair_a, pair_b = _pair_lengths(len_a, len_b, self.max_seq_length - 3)
    keep_a = tf.where(has_b, pair_a, tf.minimum(len_a, self.max_seq_length - 2))
    keep_b = tf.where(has_b, pair_b, 0)
    sep = _column(self._sep_id, batch)
    last_sep = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(tf.cast(has_b, tf.int32))],
                                                        self._sep_id), tf.cast(has_b, tf.int64))
    return _packed([_column(self._cls_id, batch), _prefix(tokens_a, keep_a), sep,
                    _prefix(tokens_b, keep_b), last_sep], [0, 0, 0, 1, 1], self.max_seq_length)

  def _classify_features(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    logits = self._run(features)["logits"]
    probabilities = tf.nn.softmax(logits)
    return dict(logits=logits, probabilities=probabilities,
                label=tf.gather(self.label_names, _first_argmax(probabilities)))

  def _classify(self, text_a: tf.Tensor, text_b: Optional[tf.Tensor] = None
                ) -> Dict[str, tf.Tensor]:
    return self._classify_features(self._features(text_a, text_b))


def _context_words(context: tf.Tensor):
  """Each context's whitespace words (squad_examples._split_context) and their [begin, end) chars.

  Returns (words, begins, ends), each ragged [batch, (words)].
  """
  chars = tf.strings.unicode_decode(context, "UTF-8")
  flat = chars.flat_values
  is_space = tf.reduce_any(flat[:, None] == tf.constant(CONTEXT_SPACES), axis=1)
  positions = tf.ragged.range(_lengths(chars))
  first = tf.equal(positions.flat_values, 0)
  last = tf.equal(positions.flat_values + 1,
                  tf.gather(_lengths(chars), chars.value_rowids()))
  after_space = first | tf.concat([[True], is_space[:-1]], axis=0)
  before_space = last | tf.concat([is_space[1:], [True]], axis=0)
  begins = tf.ragged.boolean_mask(positions, chars.with_flat_values(~is_space & after_space))
  ends = tf.ragged.boolean_mask(positions, chars.with_flat_values(~is_space & before_space)) + 1
  words = tf.strings.substr(tf.gather(context, begins.value_rowids()), begins.flat_values,
                            ends.flat_values - begins.flat_values, unit="UTF8_CHAR")
  return begins.with_flat_values(words), begins, ends


def _without_spaces_length(strings: tf.Tensor) -> tf.Tensor:
  """Characters other than " " in each string (get_final_text aligns those)."""
  return tf.strings.length(tf.strings.regex_replace(strings, " ", ""), unit="UTF8_CHAR")


def _find(texts: tf.Tensor, patterns: tf.Tensor):
  """Whether each pattern occurs in its text, and the non-space characters before the first one."""
  def find_one(args):
    text, pattern = args
    pieces = tf.strings.split(text, sep=pattern, maxsplit=1)
    before = tf.concat([pieces, [""]], axis=0)[0]
    return tf.size(pieces) == 2, _without_spaces_length(before)
  found, before = tf.map_fn(find_one, (texts, patterns),
                            fn_output_signature=(tf.bool, tf.int32))
  return found & (tf.strings.length(patterns) > 0), before


class QuestionAnswerer(ServingModule):
  """run_squad's prediction from raw text: the answer, its characters in the context, its score."""

  def __init__(self, model: tf_keras.Model, vocab_file: str, do_lower_case: bool,
               max_seq_length: int, doc_stride: int, max_query_length: int,
               version_2_with_negative: bool = False, n_best_size: int = 20,
               max_answer_length: int = 30, null_score_diff_threshold: float = 0.0):
    super().__init__(model, vocab_file, do_lower_case, max_seq_length)
    if max_seq_length <= max_query_length + 3:
      raise ValueError(f"max_seq_length ({max_seq_length}) must exceed max_query_length "
                       f"({max_query_length}) + 3, to leave room for the context.")
    if min(doc_stride, max_query_length, n_best_size, max_answer_length) < 1:
      raise ValueError("doc_stride, max_query_length, n_best_size and max_answer_length must be "
                       "positive.")
    self.doc_stride = doc_stride
    self.max_query_length = max_query_length
    self.version_2_with_negative = version_2_with_negative
    self.n_best_size = n_best_size
    self.max_answer_length = max_answer_length
    self.null_score_diff_threshold = null_score_diff_threshold
    self.vocab_tokens = tf.constant(self._vocab)
    self.span_logits = tf.function(self._run, input_signature=[features_spec(max_seq_length)],
                                   autograph=False)
    self.answer = tf.function(self._answer, input_signature=[_STRINGS, _STRINGS], autograph=False)

  def _document(self, words: tf.RaggedTensor):
    """Each context's WordPiece ids [batch, (tokens)] and, flat, the word of every token."""
    pieces = self.tokenizer.tokenize(words.flat_values)  # word by word, as squad_features does
    word_in_context = tf.ragged.range(_lengths(words)).flat_values
    return (words.with_flat_values(pieces).merge_dims(1, 2),
            tf.gather(word_in_context, pieces.value_rowids()))

  def _windows(self, question: tf.Tensor, doc_ids: tf.RaggedTensor) -> Dict[str, tf.Tensor]:
    """squad_features._windows over each context as model features: a row per window of any example.

    Besides the features: `windows` ([batch, (windows)] of each window's index in its example),
    and per window its `example`, its first context token `start`, `length` and `offset` (the
    position of its first context token in the features).
    """
    query = self.tokenizer.tokenize(question)[:, :self.max_query_length]
    query_length = _lengths(query)
    room = self.max_seq_length - query_length - 3
    stride = tf.minimum(self.doc_stride, room)  # a window starts at most `room` after the last
    num_tokens = _lengths(doc_ids)
    count = tf.where(num_tokens <= room, tf.minimum(num_tokens, 1),
                     (num_tokens - room + stride - 1) // stride + 1)
    windows = tf.ragged.range(count)
    example = tf.cast(windows.value_rowids(), tf.int32)
    start = windows.flat_values * tf.gather(stride, example)
    length = tf.minimum(tf.gather(num_tokens, example) - start, tf.gather(room, example))
    token_index = (tf.ragged.range(start, start + length)
                   + tf.gather(tf.cast(doc_ids.row_starts(), tf.int32), example)[:, None])
    num_windows = tf.size(example)
    features = _packed(
        [_column(self._cls_id, num_windows), tf.gather(query, example),
         _column(self._sep_id, num_windows), tf.gather(doc_ids.flat_values, token_index),
         _column(self._sep_id, num_windows)], [0, 0, 0, 1, 1], self.max_seq_length)
    return dict(features, windows=windows, example=example, start=start, length=length,
                offset=tf.gather(query_length + 2, example))

  def _is_max_context(self, windows: Dict[str, tf.Tensor], tokens: tf.Tensor) -> tf.Tensor:
    """Whether each window is the max-context window of tokens [windows, k] (context indexes)."""
    def of_example(values):  # [windows, windows of the same example], padded with empty windows
      return tf.gather(windows["windows"].with_flat_values(values), windows["example"]).to_tensor(0)
    other_start = of_example(windows["start"])[:, None, :]
    other_length = of_example(windows["length"])[:, None, :]
    token = tokens[:, :, None]
    score = (tf.cast(tf.minimum(token - other_start, other_start + other_length - 1 - token),
                     tf.float64) + 0.01 * tf.cast(other_length, tf.float64))
    inside = (token >= other_start) & (token < other_start + other_length)
    best = _first_argmax(tf.where(inside, score, -float("inf")))
    return tf.equal(best, windows["windows"].flat_values[:, None])

  def _window_logits(self, logits: Dict[str, tf.Tensor], input_mask: tf.Tensor
                     ) -> Dict[str, tf.Tensor]:
    """Start and end logits [windows, max_seq_length], -inf past each window's own tokens: the
    n-best is chosen among them, as run_squad's length-bucketed prediction chooses it."""
    def restored(values):
      values = tf.pad(values, [[0, 0], [0, self.max_seq_length - tf.shape(values)[1]]],
                      constant_values=-float("inf"))
      return tf.where(input_mask > 0, values, -float("inf"))
    return {name: restored(logits[name]) for name in ("start_logits", "end_logits")}

  def _best_spans(self, logits: Dict[str, tf.Tensor], windows: Dict[str, tf.Tensor]):
    """Each example's best valid span: (score, -inf if none; window; start; end positions)."""
    k = min(self.n_best_size, self.max_seq_length)
    start_logits, start_positions = tf.math.top_k(logits["start_logits"], k)
    end_logits, end_positions = tf.math.top_k(logits["end_logits"], k)
    offset, length = windows["offset"][:, None], windows["length"][:, None]

    def in_context(positions):
      return (positions >= offset) & (positions < offset + length)

    starts_ok = in_context(start_positions) & self._is_max_context(
        windows, windows["start"][:, None] + start_positions - offset)
    starts, ends = start_positions[:, :, None], end_positions[:, None, :]
    valid = (starts_ok[:, :, None] & in_context(end_positions)[:, None, :] & (ends >= starts)
             & (ends < starts + self.max_answer_length))
    sums = (tf.cast(start_logits, tf.float64)[:, :, None]
            + tf.cast(end_logits, tf.float64)[:, None, :])
    sums = tf.reshape(tf.where(valid, sums, -float("inf")), [-1, k * k])
    by_example = windows["windows"].with_flat_values(tf.reduce_max(sums, axis=1))
    by_example = by_example.to_tensor(-float("inf"))
    best = tf.reduce_max(by_example, axis=1)
    found = best > -float("inf")
    window = (tf.cast(windows["windows"].row_starts(), tf.int32)
              + tf.where(found, _first_argmax(by_example), 0))
    choice = _gather_or(_first_argmax(sums), window, found, 0)
    flat = window * k + tf.where(found, choice // k, 0)
    end_flat = window * k + tf.where(found, choice % k, 0)
    return (best, window, _gather_or(tf.reshape(start_positions, [-1]), flat, found, 0),
            _gather_or(tf.reshape(end_positions, [-1]), end_flat, found, -1))

  def _null_scores(self, logits: Dict[str, tf.Tensor], windows: Dict[str, tf.Tensor]):
    """SQuAD 2.0's null score of each example: the lowest [CLS] start + end logit of its windows."""
    null = (tf.cast(logits["start_logits"][:, 0], tf.float64)
            + tf.cast(logits["end_logits"][:, 0], tf.float64))
    lowest = tf.reduce_min(windows["windows"].with_flat_values(null).to_tensor(float("inf")),
                           axis=1)
    return tf.where(windows["windows"].row_lengths() > 0, lowest, 0.0)

  def _final_text(self, doc_ids, tok_to_orig, words, begins, ends, found, first, last):
    """get_final_text of the tokens [first, last] of each context: text and [begin, end) chars.

    The text is of the words joined by single spaces, as write_predictions writes it; the
    characters are the context's own, so they may span other whitespace between the words.
    """
    doc_start = tf.cast(doc_ids.row_starts(), tf.int32)
    first, last = tf.where(found, doc_start + first, 0), tf.where(found, doc_start + last, -1)
    tokens = tf.gather(self.vocab_tokens, tf.gather(doc_ids.flat_values,
                                                    tf.ragged.range(first, last + 1)))
    pred_text = tf.strings.reduce_join(tokens, axis=1, separator=" ")
    pred_text = tf.strings.regex_replace(tf.strings.regex_replace(pred_text, " ##", ""), "##", "")
    word_start = tf.cast(words.row_starts(), tf.int32)
    span_words = tf.ragged.range(word_start + _gather_or(tok_to_orig, first, found, 0),
                                 word_start + _gather_or(tok_to_orig, last, found, -1) + 1)
    orig_text = tf.strings.reduce_join(tf.gather(words.flat_values, span_words), axis=1,
                                       separator=" ")
    # Every non-space character of orig_text: its position in the context, and its word.
    word_chars = tf.ragged.range(tf.gather(begins.flat_values, span_words.flat_values),
                                 tf.gather(ends.flat_values, span_words.flat_values))
    word_of_char = tf.gather(tf.ragged.range(_lengths(span_words)).flat_values,
                             word_chars.value_rowids())
    chars = span_words.with_flat_values(word_chars).merge_dims(1, 2)
    num_chars = _lengths(chars)
    tok_text = tf.strings.reduce_join(self.tokenizer.words(orig_text), axis=1, separator=" ")
    occurs, before = _find(tok_text, pred_text)
    aligned = occurs & tf.equal(_without_spaces_length(tok_text), num_chars)
    # Not aligned: get_final_text returns the whole orig_text.
    first_char = tf.where(aligned, before, 0)
    last_char = tf.where(aligned, before + _without_spaces_length(pred_text) - 1, num_chars - 1)
    char_start = tf.cast(chars.row_starts(), tf.int32)
    has_text = found & (num_chars > 0)
    begin = _gather_or(chars.flat_values, char_start + first_char, has_text, -1)
    end = _gather_or(chars.flat_values, char_start + last_char, has_text, -2) + 1
    text_begin = first_char + _gather_or(word_of_char, char_start + first_char, has_text, 0)
    text_end = last_char + _gather_or(word_of_char, char_start + last_char, has_text, -1) + 1
    text = tf.strings.substr(orig_text, text_begin, text_end - text_begin, unit="UTF8_CHAR")
    return text, begin, end

  def _answer(self, question: tf.Tensor, context: tf.Tensor) -> Dict[str, tf.Tensor]:
    """answer, start_char, end_char (into context, exclusive) and score of each question."""
    context = _clean_utf8(context)
    words, begins, ends = _context_words(context)
    doc_ids, tok_to_orig = self._document(words)
    windows = self._windows(question, doc_ids)
    logits = self._window_logits(self._run({name: windows[name] for name in features_spec(1)}),
                                 windows["input_mask"])
    best, window, start, end = self._best_spans(logits, windows)
    found = best > -float("inf")
    window_offset = _gather_or(windows["start"] - windows["offset"], window, found, 0)
    text, begin, end_char = self._final_text(doc_ids, tok_to_orig, words, begins, ends, found,
                                             window_offset + start, window_offset + end)
    if self.version_2_with_negative:
      null = self._null_scores(logits, windows)
      answered = found & (null - best <= self.null_score_diff_threshold)
      unanswered_text, score = NO_ANSWER, tf.where(answered, best, null)
    else:
      answered = found
      unanswered_text, score = EMPTY_ANSWER, tf.where(found, best, 0.0)
    return dict(answer=tf.where(answered, text, unanswered_text),
                start_char=tf.where(answered, begin, -1), end_char=tf.where(answered, end_char, -1),
                score=tf.cast(score, tf.float32))
