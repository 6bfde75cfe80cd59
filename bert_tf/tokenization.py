"""WordPiece tokenization with google-research/bert's exact output, but faster.

`FullTokenizer`, `BasicTokenizer` and `WordpieceTokenizer` take the same arguments and give the
same tokens as google-research/bert's tokenization.py for any Unicode text. `FullTokenizer` runs
in C (bert_tf/_wordpiece.c, built by `make install`) when that module is built: one pass over
the text applying the character classes of `_compiled_flags`, which are decided here, in
Python, once per code point. Without it, and in `BasicTokenizer` and `WordpieceTokenizer`, the
Python below is fast another way: each pass over the whole text runs in C (`str.translate`,
`str.lower`, `unicodedata.normalize`, `str.split`) with character classes cached per code point,
the WordPiece search tries no piece longer than the vocab's longest one with the same first
character, and `FullTokenizer` caches words and chunks (text between whitespace).

Why whole-text passes give the same tokens as google-research's per-token ones: every rule it
applies per character (cleaning, CJK spacing, punctuation splitting, accent dropping) is context
free; `str.lower` is context sensitive only for the Greek final sigma and `unicodedata.normalize`
only within a run of combining marks, and neither context reaches across the whitespace between
tokens.

`resolve_do_lower_case` infers `do_lower_case` from the vocab and refuses settings that contradict
the vocab or a known Google checkpoint name; `vocab_coverage` and `warn_if_vocab_misfits` measure
on sample texts how many words a vocab loses to [UNK] or to Hangul jamo (an uncased English vocab
on Korean) and warn loudly. `InGraphTokenizer` (bert_tf.serving.in_graph_tokenization) is a
TensorFlow Text version for serving graphs; its docstring lists where it differs from
`FullTokenizer`.

Importing this module does not import TensorFlow, so that command-line tools which only tokenize
start in a fraction of a second: TensorFlow is imported for gs:// vocab files, on first use.
"""

import collections
import dataclasses
import itertools
import re
import unicodedata
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from absl import logging

from bert_tf.io import files as io_files

try:  # Built by `make install` (setup.py build_ext --inplace); the Python below is the fallback.
  from bert_tf import _wordpiece
except ImportError:  # pragma: no cover (CI builds it; tests/test_tokenization.py checks that)
  _wordpiece = None

# What str.translate accepts as a replacement: None deletes, an int or a str replaces.
_Replacement = Union[None, int, str]

_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_ASCII_PUNCTUATION_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))
_SPECIAL_TOKEN = re.compile(r"\[[^\[\]]*\]")


def _is_whitespace(cp: int) -> bool:
  """google-research's whitespace: space, tab, newline, carriage return and category Zs."""
  return cp in (0x20, 0x09, 0x0A, 0x0D) or unicodedata.category(chr(cp)) == "Zs"


def _is_dropped(cp: int) -> bool:
  """Characters google-research deletes: NUL, U+FFFD and controls (Cc, Cf) other than tab/LF/CR."""
  if cp in (0x09, 0x0A, 0x0D):
    return False
  return cp in (0, 0xFFFD) or unicodedata.category(chr(cp)) in ("Cc", "Cf")


def _is_cjk(cp: int) -> bool:
  """CJK ideographs, which google-research makes one token each (Hangul and kana are not CJK)."""
  return any(low <= cp <= high for low, high in _CJK_RANGES)


def _is_punctuation(cp: int) -> bool:
  """Non-alphanumeric printable ASCII or any Unicode P* category."""
  return (any(low <= cp <= high for low, high in _ASCII_PUNCTUATION_RANGES) or
          unicodedata.category(chr(cp)).startswith("P"))


def _clean(cp: int) -> _Replacement:
  """First pass: drop controls, whitespace to a space, a space either side of a CJK ideograph."""
  if _is_dropped(cp):
    return None
  if _is_whitespace(cp):
    return " "
  if _is_cjk(cp):
    return f" {chr(cp)} "
  return cp


def _split_punctuation(cp: int) -> _Replacement:
  """Last pass: a space either side of punctuation, so that `str.split` makes it its own token."""
  return f" {chr(cp)} " if _is_punctuation(cp) else cp


def _drop_marks_split_punctuation(cp: int) -> _Replacement:
  """Last pass when lowercasing: also drop nonspacing marks (Mn), the accents after NFD."""
  if unicodedata.category(chr(cp)) == "Mn":
    return None
  return _split_punctuation(cp)


def _clean_split_punctuation(cp: int) -> _Replacement:
  """The single pass when not lowercasing: `_clean` then `_split_punctuation`."""
  cleaned = _clean(cp)
  return _split_punctuation(cp) if cleaned == cp else cleaned


def _compiled_flags(cp: int) -> int:
  """The class `_wordpiece` gives a character: deleted, a word boundary, its own word, or none.

  A boundary is anything `str.split` splits on that google-research's cleaning keeps: its own
  whitespace (all of which `str.isspace`) and also U+2028 and U+2029, since it splits the
  cleaned text with `str.split`.
  """
  if _is_dropped(cp):
    return _wordpiece.DROP
  if chr(cp).isspace():
    return _wordpiece.SPACE
  if _is_cjk(cp) or _is_punctuation(cp):
    return _wordpiece.SPLIT
  return 0


class _CharTable(dict):
  """A `str.translate` table that classifies each code point on first sight and then remembers it.

  Lookups of seen characters stay in C; the Python classifier runs once per distinct character.
  """

  def __init__(self, classify: Callable[[int], _Replacement]):
    super().__init__()
    self._classify = classify

  def __missing__(self, cp: int) -> _Replacement:
    replacement = self._classify(cp)
    self[cp] = replacement
    return replacement


_CLEAN = _CharTable(_clean)
_DROP_MARKS_SPLIT_PUNCTUATION = _CharTable(_drop_marks_split_punctuation)
_CLEAN_SPLIT_PUNCTUATION = _CharTable(_clean_split_punctuation)
_DROP_MARKS = _CharTable(lambda cp: None if unicodedata.category(chr(cp)) == "Mn" else cp)


def convert_to_unicode(text: Union[str, bytes]) -> str:
  """Returns `text` as str, decoding bytes as UTF-8 and dropping invalid bytes."""
  if isinstance(text, str):
    return text
  if isinstance(text, bytes):
    return text.decode("utf-8", "ignore")
  raise ValueError(f"Unsupported string type: {type(text)}")


def printable_text(text: Union[str, bytes]) -> str:
  """Returns `text` as str for printing or logging (on Python 3, as `convert_to_unicode`)."""
  return convert_to_unicode(text)


def load_vocab(vocab_file: str) -> "collections.OrderedDict[str, int]":
  """Reads a vocab file (one token a line, local or gs://) into token -> line number.

  Like google-research, which reads with GFile.readline: every "\\r" is dropped, each line is
  stripped of surrounding whitespace, a blank line is the token "", and a repeated token keeps its
  last line number.
  """
  vocab = collections.OrderedDict()
  for index, token in enumerate(_vocab_tokens(vocab_file)):
    vocab[token] = index
  return vocab


def _vocab_tokens(vocab_file: str) -> List[str]:
  """The token of each line of a vocab file, read as `load_vocab` reads it."""
  try:
    with io_files.gfile.GFile(vocab_file, "r") as reader:
      lines = convert_to_unicode(reader.read()).replace("\r", "").split("\n")
  except UnicodeDecodeError:
    raise io_files.utf8_error(vocab_file) from None
  if lines[-1] == "":
    lines.pop()  # After the final newline, or the whole of an empty file.
  return [line.strip() for line in lines]


SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[UNK]")


def check_vocab(vocab_file: str, required: Sequence[str] = SPECIAL_TOKENS) -> None:
  """Fails early, naming the file and line, on a vocab that lacks a `required` token or repeats one.

  A missing special token otherwise fails late, mid-conversion, with a KeyError; a repeated token
  silently takes its last line's id, which means the file was edited or concatenated and no longer
  lines up with the embeddings.
  """
  tokens = _vocab_tokens(vocab_file)
  missing = [token for token in required if token not in tokens]
  if missing:
    raise ValueError(f"{vocab_file} lacks {', '.join(missing)}: BERT needs "
                     f"{', '.join(required)}. Use the vocab.txt that came with the model, or add "
                     "the missing tokens when building a vocab from scratch.")
  first_line: Dict[str, int] = {}
  for line, token in enumerate(tokens, start=1):
    if token in first_line:
      raise ValueError(
          f"{vocab_file}, line {line}: token {token!r} repeats line {first_line[token]}, so line "
          f"{first_line[token]}'s id would never be used. Replace one of them with an unused "
          "placeholder such as [unused999] (deleting a line would shift every later id away "
          "from the embeddings).")
    first_line[token] = line


def convert_by_vocab(vocab: Mapping, items: Iterable) -> List:
  """Maps each item through `vocab` (tokens to ids or ids to tokens); KeyError if one is missing."""
  return list(map(vocab.__getitem__, items))


def whitespace_tokenize(text: str) -> List[str]:
  """Splits `text` on runs of whitespace, with none at either end."""
  return text.split()


class BasicTokenizer:
  """Cleans text and splits it into words: on whitespace, punctuation and around CJK ideographs.

  With `do_lower_case` it also lowercases and removes accents (NFD, then drop category Mn), which
  among other things turns Hangul syllables into their jamo.
  """

  def __init__(self, do_lower_case: bool = True):
    self.do_lower_case = do_lower_case

  def tokenize(self, text: Union[str, bytes]) -> List[str]:
    """Returns the words of `text`."""
    text = convert_to_unicode(text)
    if not self.do_lower_case:
      return text.translate(_CLEAN_SPLIT_PUNCTUATION).split()
    if text.isascii():  # Lowercasing ASCII is per character and NFD leaves it as it is.
      return text.lower().translate(_CLEAN_SPLIT_PUNCTUATION).split()
    text = unicodedata.normalize("NFD", text.translate(_CLEAN).lower())
    return text.translate(_DROP_MARKS_SPLIT_PUNCTUATION).split()


def _longest_by_first_char(pieces: Iterable[str]) -> Dict[str, int]:
  """First character -> length of the longest piece that starts with it."""
  longest = {}
  for piece in pieces:
    if piece and len(piece) > longest.get(piece[0], 0):
      longest[piece[0]] = len(piece)
  return longest


class WordpieceTokenizer:
  """Splits words into the vocab's pieces, greedily taking the longest match first.

  Pieces after the first carry the "##" prefix. A word longer than `max_input_chars_per_word`
  characters, or with any position that no vocab piece matches, becomes the single `unk_token`.
  `vocab`, `unk_token` and `max_input_chars_per_word` are read once here: changing them afterwards
  is not supported.
  """

  def __init__(self, vocab: Mapping[str, int], unk_token: str = "[UNK]",
               max_input_chars_per_word: int = 200):
    self.vocab = vocab
    self.unk_token = unk_token
    self.max_input_chars_per_word = max_input_chars_per_word
    # Continuation pieces without their "##", so the search needs no string concatenation.
    self._next_pieces = frozenset(token[2:] for token in vocab if token.startswith("##"))
    # The longest piece starting with each character: the search need not try longer ones.
    self._longest_first_piece = _longest_by_first_char(vocab)
    self._longest_next_piece = _longest_by_first_char(self._next_pieces)
    self.word_pieces = self._make_word_pieces()

  def tokenize(self, text: Union[str, bytes]) -> List[str]:
    """Returns the pieces of each whitespace-separated word of `text`, in order."""
    pieces = []
    for word in convert_to_unicode(text).split():
      pieces.extend(self.tokenize_word(word))
    return pieces

  def tokenize_word(self, word: str) -> List[str]:
    """Returns the pieces of one word (a string without whitespace)."""
    return list(self.word_pieces(word))

  def _make_word_pieces(self) -> Callable[[str], Tuple[str, ...]]:
    """The WordPiece search as a closure over locals, which Python reads faster than attributes.

    Returns tuples, which `FullTokenizer` caches and shares between words and chunks.
    """
    vocab = frozenset(self.vocab)
    next_pieces = self._next_pieces
    longest_first_piece = self._longest_first_piece.get
    longest_next_piece = self._longest_next_piece.get
    max_chars = self.max_input_chars_per_word
    unknown = (self.unk_token,)

    def word_pieces(word: str) -> Tuple[str, ...]:
      length = len(word)
      if length > max_chars:
        return unknown
      if word in vocab:
        return (word,)
      end = longest_first_piece(word[0], 0)
      if end >= length:
        end = length - 1
      while end > 0 and word[:end] not in vocab:
        end -= 1
      if end == 0:
        return unknown
      pieces = [word[:end]]
      start = end
      while start < length:
        end = start + longest_next_piece(word[start], 0)
        if end > length:
          end = length
        while end > start and word[start:end] not in next_pieces:
          end -= 1
        if end == start:
          return unknown
        pieces.append("##" + word[start:end])
        start = end
      return tuple(pieces)

    return word_pieces


class _Memo(dict):
  """key -> `compute(key)`, computed on first lookup; emptied when it reaches `max_size`."""

  def __init__(self, compute: Callable[[str], Tuple[str, ...]], max_size: int):
    super().__init__()
    self._compute = compute
    self._max_size = max_size

  def __missing__(self, key: str) -> Tuple[str, ...]:
    if len(self) >= self._max_size:
      self.clear()
    value = self[key] = self._compute(key)
    return value


# Characters that `str.split` splits on but google-research deletes (controls, category Cc), so
# "a\x0bb" is one word to it. Text without them splits into the same words chunk by chunk.
_SPLIT_BUT_DROPPED = re.compile("[\x0b\x0c\x1c-\x1f\x85]")


class FullTokenizer:
  """Text to WordPiece tokens: `BasicTokenizer` then `WordpieceTokenizer`, plus id conversion.

  Tokenizes in C (bert_tf/_wordpiece.c) when that module was built and `compiled` is true, in
  Python otherwise; both give google-research's tokens. Either remembers the tokens of up to
  `_WORD_CACHE_SIZE` distinct words, and as many distinct chunks of text, since both repeat.
  """

  _WORD_CACHE_SIZE = 1 << 18

  def __init__(self, vocab_file: str, do_lower_case: bool = True, compiled: bool = True):
    self.vocab = load_vocab(vocab_file)
    self.inv_vocab = {index: token for token, index in self.vocab.items()}
    self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
    self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)
    self._word_pieces = _Memo(self.wordpiece_tokenizer.word_pieces, self._WORD_CACHE_SIZE)
    self._chunk_pieces: Dict[str, Tuple[str, ...]] = {}
    self._compiled = self._compiled_tokenizer() if compiled else None

  def _compiled_tokenizer(self) -> Optional["_wordpiece.Tokenizer"]:
    """The C tokenizer for this vocab, or None without the module or an [UNK] token to give."""
    unk_token = self.wordpiece_tokenizer.unk_token
    if _wordpiece is None or unk_token not in self.vocab:
      return None
    return _wordpiece.Tokenizer(
        self.vocab, unk_token, self.wordpiece_tokenizer.max_input_chars_per_word,
        self.basic_tokenizer.do_lower_case, _compiled_flags, self.basic_tokenizer.tokenize)

  @property
  def compiled(self) -> bool:
    """Whether this tokenizer runs in C."""
    return self._compiled is not None

  def tokenize(self, text: Union[str, bytes]) -> List[str]:
    """Returns the WordPiece tokens of `text`."""
    text = convert_to_unicode(text)
    if self._compiled is not None:
      return self._compiled.tokenize(text)
    word_pieces = self._word_pieces
    if not text.isprintable() and _SPLIT_BUT_DROPPED.search(text):
      # Deleting these joins the chunks either side of them into one word: whole text at once.
      words = self.basic_tokenizer.tokenize(text)
      return list(itertools.chain.from_iterable(map(word_pieces.__getitem__, words)))
    # Every rule of BasicTokenizer is local to a chunk between whitespace (see the module
    # docstring), and the whitespace it splits on is what `str.split` splits on, less the
    # characters above. So each chunk's tokens are remembered too: a known chunk costs one
    # lookup instead of cleaning, punctuation splitting and a lookup per word. With the
    # closure WordPiece search, a fresh tokenizer on the Korean corpus: 0.42 s -> 0.36 s.
    chunk_pieces = self._chunk_pieces
    tokens = []
    for chunk in text.split():
      pieces = chunk_pieces.get(chunk)
      if pieces is None:
        if len(chunk_pieces) >= self._WORD_CACHE_SIZE:
          chunk_pieces.clear()
        if self.basic_tokenizer.do_lower_case:
          words = self.basic_tokenizer.tokenize(chunk)
        else:
          words = chunk.translate(_CLEAN_SPLIT_PUNCTUATION).split()
        if len(words) == 1:  # Most chunks: share the word's tuple, searched here if new.
          word = words[0]
          if word in word_pieces:
            pieces = word_pieces[word]
          else:
            if len(word_pieces) >= self._WORD_CACHE_SIZE:
              word_pieces.clear()
            pieces = word_pieces[word] = self.wordpiece_tokenizer.word_pieces(word)
        else:
          pieces = tuple(itertools.chain.from_iterable(map(word_pieces.__getitem__, words)))
        chunk_pieces[chunk] = pieces
      tokens += pieces
    return tokens

  def tokenize_to_ids(self, text: Union[str, bytes]) -> List[int]:
    """The vocab ids of `tokenize(text)`, in one call (no token strings in between, in C)."""
    text = convert_to_unicode(text)
    if self._compiled is not None:
      return self._compiled.tokenize_to_ids(text)
    return self.convert_tokens_to_ids(self.tokenize(text))

  def tokenize_words(self, words: Sequence[str]) -> Tuple[List[str], List[int], List[int]]:
    """`tokenize` of each of `words`, joined: (tokens, their ids, how many each word gave).

    What SQuAD features need of a paragraph's whitespace-separated words, in one call.
    """
    if self._compiled is not None:
      return self._compiled.tokenize_words(words)
    pieces = list(map(self.tokenize, words))
    tokens = list(itertools.chain.from_iterable(pieces))
    return tokens, self.convert_tokens_to_ids(tokens), list(map(len, pieces))

  def convert_tokens_to_ids(self, tokens: Iterable[str]) -> List[int]:
    """Maps tokens to vocab ids."""
    return convert_by_vocab(self.vocab, tokens)

  def convert_ids_to_tokens(self, ids: Iterable[int]) -> List[str]:
    """Maps vocab ids to tokens."""
    return convert_by_vocab(self.inv_vocab, ids)


def _uncased_form(token: str) -> str:
  """What `BasicTokenizer(do_lower_case=True)` does to a token's letters: lower, NFD, drop Mn."""
  return unicodedata.normalize("NFD", token.lower()).translate(_DROP_MARKS)


def cased_vocab_entries(vocab: Iterable[str]) -> List[str]:
  """Vocab entries that lowercasing text could never produce, in vocab order.

  These are entries that lowercasing, NFD and accent dropping would change: uppercase letters,
  accented letters, precomposed Hangul syllables. Bracketed special tokens ([CLS], [unused0]) are
  not counted. Symbols like "ℝ", uppercase but with no lowercase form, are rightly not counted.
  """
  return [token for token in vocab
          if not _SPECIAL_TOKEN.fullmatch(token) and _uncased_form(token) != token]


def vocab_is_cased(vocab: Iterable[str]) -> bool:
  """Whether `vocab` (tokens, or a token -> id mapping) was built from text that kept its case."""
  return bool(cased_vocab_entries(vocab))


# Google's released checkpoints: directory name -> the do_lower_case they were trained with.
_GOOGLE_CHECKPOINT = re.compile(
    r"(?<![A-Za-z])(uncased|multilingual|chinese|multi_cased|cased)_L-\d+_H-\d+_A-\d+")
_GOOGLE_CHECKPOINT_LOWER_CASE = {"uncased": True, "multilingual": True, "chinese": True,
                                 "multi_cased": False, "cased": False}

_LOWERCASING_HARM = (
    "Lowercasing also applies NFD and strips accents: it turns Hangul syllables into jamo "
    "('한' U+D55C becomes U+1112 U+1161 U+11AB), 'café' into 'cafe' and 'Paris' into 'paris', so "
    "a cased model sees text it was never trained on: its tokens mostly become [UNK] or differ "
    "from the ones it learned.")
_NOT_LOWERCASING_HARM = (
    "Without lowercasing, words with capitals or accents ('The', 'Paris', 'café') are not in an "
    "uncased vocab: they mostly become [UNK] or split into pieces the model never saw together.")


def _harm(do_lower_case: bool) -> str:
  """Why a wrong `do_lower_case` value breaks the model, for error messages."""
  return _LOWERCASING_HARM if do_lower_case else _NOT_LOWERCASING_HARM


def checkpoint_lower_case(init_checkpoint: Optional[str]) -> Optional[bool]:
  """The do_lower_case of a Google checkpoint named in the path (e.g. uncased_L-12_H-768_A-12).

  None when the path names no known Google model.
  """
  match = _GOOGLE_CHECKPOINT.search(init_checkpoint or "")
  return _GOOGLE_CHECKPOINT_LOWER_CASE[match.group(1)] if match else None


def resolve_do_lower_case(vocab_file: str, do_lower_case: Optional[bool],
                          init_checkpoint: Optional[str] = None,
                          flag: str = "init_checkpoint") -> bool:
  """The do_lower_case to tokenize with: the flag's value, or inferred from the vocab when None.

  Fails early, with a ValueError that says what goes wrong and how to fix it, when the value
  contradicts the vocab (a cased vocab needs False, an uncased one True) or the Google checkpoint
  named in `init_checkpoint` (the value of --`flag`), since either mistake silently ruins
  fine-tuning.
  """
  cased_entries = cased_vocab_entries(load_vocab(vocab_file))
  vocab_lower_case = not cased_entries
  if cased_entries:
    vocab_kind = (f"cased: {len(cased_entries)} of its entries, such as "
                  f"{', '.join(map(repr, cased_entries[:3]))}, have capitals, accents or Hangul "
                  "syllables that lowercasing removes")
  else:
    vocab_kind = "uncased: none of its entries has capitals, accents or Hangul syllables"
  how = "inferred" if do_lower_case is None else "given"
  if do_lower_case is None:
    do_lower_case = vocab_lower_case
    logging.info("--do_lower_case not given: inferred %s from the vocab %s, which is %s.",
                 do_lower_case, vocab_file, vocab_kind)
  elif do_lower_case != vocab_lower_case:
    raise ValueError(
        f"--do_lower_case={do_lower_case} does not match the vocab {vocab_file}, which is "
        f"{vocab_kind}. {_harm(do_lower_case)} Fix: pass --do_lower_case={vocab_lower_case}, or "
        "leave the flag out to infer it from the vocab.")
  checkpoint_lower = checkpoint_lower_case(init_checkpoint)
  if checkpoint_lower is not None and checkpoint_lower != do_lower_case:
    model = _GOOGLE_CHECKPOINT.search(init_checkpoint).group(0)
    raise ValueError(
        f"--do_lower_case={do_lower_case} ({how}; it matches the vocab {vocab_file}) does not "
        f"match --{flag}={init_checkpoint}: Google's {model} was pre-trained with "
        f"do_lower_case={checkpoint_lower}. {_harm(do_lower_case)} Fix: use the vocab.txt that "
        f"came with {model} and pass --do_lower_case={checkpoint_lower}.")
  return do_lower_case


# Hangul conjoining jamo (Jamo, Jamo Extended-A and -B): what NFD turns syllables into. Text
# itself writes compatibility jamo (U+3131-U+318E, as in "ㅋㅋ"), which are not among them.
_CONJOINING_JAMO = re.compile("[\u1100-\u11FF\uA960-\uA97F\uD7B0-\uD7FF]")
# Share of the sampled words lost to [UNK] or jamo above which `warn_if_vocab_misfits` warns.
# Measured in tests/test_tokenization.py: KcBERT's vocab on the Korean test lines loses 1.1%
# (circled digits), bert-base-cased's on SQuAD 0%; bert-base-uncased's on the Korean lines 68%.
MISFIT_THRESHOLD = 0.1
_SAMPLE_TEXTS = 1000
_SHOWN_WORDS = 3
_SHOWN_PIECES = 6


@dataclasses.dataclass
class VocabCoverage:
  """How the words of sample texts fare under a tokenizer."""
  words: int
  unknown: int  # words that became [UNK]
  jamo: int  # words split into single Hangul jamo: lowercasing decomposed their syllables
  examples: List[str]  # a few lost words, "word -> pieces"

  @property
  def lost_share(self) -> float:
    """The share of words that became [UNK] or single jamo."""
    return (self.unknown + self.jamo) / max(self.words, 1)


def _is_single_jamo(piece: str) -> bool:
  return len(piece.removeprefix("##")) == 1 and bool(_CONJOINING_JAMO.match(piece[-1]))


def vocab_coverage(tokenizer: FullTokenizer, texts: Iterable[str],
                   max_texts: int = _SAMPLE_TEXTS) -> VocabCoverage:
  """Counts, over the words (BasicTokenizer's) of the first `max_texts` texts, those whose
  WordPieces hold [UNK] and those split into single Hangul jamo."""
  words = unknown = jamo = 0
  examples = []
  unk_token = tokenizer.wordpiece_tokenizer.unk_token
  for text in itertools.islice(texts, max_texts):
    for word in tokenizer.basic_tokenizer.tokenize(text):
      pieces = tokenizer.wordpiece_tokenizer.word_pieces(word)
      words += 1
      if unk_token in pieces:
        unknown += 1
      elif any(map(_is_single_jamo, pieces)):
        jamo += 1
      else:
        continue
      if len(examples) < _SHOWN_WORDS:
        shown = " ".join(pieces[:_SHOWN_PIECES]) + (" ..." if len(pieces) > _SHOWN_PIECES else "")
        examples.append(f"{unicodedata.normalize('NFC', word)} -> {shown}")
  return VocabCoverage(words, unknown, jamo, examples)


def _misfit_fix(coverage: VocabCoverage, do_lower_case: bool) -> str:
  """The likely fix for a vocab that loses many words, by what they were lost to."""
  if coverage.jamo >= coverage.unknown:
    return ("Lowercasing (do_lower_case=True, as an uncased vocab needs) decomposes Hangul "
            "syllables into jamo, so the model sees letters, not words. Likely fix: a cased "
            "Korean or multilingual model and its vocab (KcBERT, Google's multi_cased_L-12_H-768_"
            "A-12) with --do_lower_case=False.")
  if do_lower_case:
    return ("Likely fix: a vocab and model made for this text's language and script; if the "
            "vocab is cased, --do_lower_case=False (lowercased words miss its cased entries).")
  return ("Likely fix: a vocab and model made for this text's language and script (a cased "
          "multilingual one covers most), or a vocab built from text like it "
          "(bert_tf.corpus.build_vocab).")


def warn_if_vocab_misfits(tokenizer: FullTokenizer, texts: Iterable[str], vocab_file: str,
                          threshold: float = MISFIT_THRESHOLD) -> VocabCoverage:
  """Logs a loud warning, naming `vocab_file`, the numbers and the likely fix, when more than
  `threshold` of the words of the sample `texts` become [UNK] or single jamo: the model would
  learn from noise. Returns the measured coverage."""
  coverage = vocab_coverage(tokenizer, texts)
  if coverage.lost_share > threshold:
    do_lower_case = tokenizer.basic_tokenizer.do_lower_case
    logging.warning(
        "VOCAB DOES NOT FIT THE TEXT: with %s (do_lower_case=%s), %.0f%% of %d words of the "
        "first examples become [UNK] (%d) or single Hangul jamo (%d), e.g. %s. %s",
        vocab_file, do_lower_case, 100 * coverage.lost_share, coverage.words, coverage.unknown,
        coverage.jamo, "; ".join(coverage.examples), _misfit_fix(coverage, do_lower_case))
  return coverage

