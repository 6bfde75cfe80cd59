"""WordPiece tokenization with google-research/bert's exact output, but faster.

`FullTokenizer`, `BasicTokenizer` and `WordpieceTokenizer` take the same arguments and give the same
tokens as google-research/bert's tokenization.py for any Unicode text. The speed comes from doing each
pass over the whole text in C (`str.translate`, `str.lower`, `unicodedata.normalize`, `str.split`)
with character classes decided once per code point and cached, a bound on the WordPiece search from
the vocab's longest entry, and a per-word cache in `FullTokenizer`.

Why whole-text passes give the same tokens as google-research's per-token ones: every rule it applies
per character (cleaning, CJK spacing, punctuation splitting, accent dropping) is context free;
`str.lower` is context sensitive only for the Greek final sigma and `unicodedata.normalize` only
within a run of combining marks, and neither context reaches across the spaces that separate tokens.

`resolve_do_lower_case` infers `do_lower_case` from the vocab and refuses settings that contradict
the vocab or a known Google checkpoint name. `InGraphTokenizer` is a TensorFlow Text version for
serving graphs; its docstring lists where it differs from `FullTokenizer`.
"""

import collections
import itertools
import re
import unicodedata
from typing import Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from absl import logging
import tensorflow as tf
import tensorflow_text as tf_text

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
  """First pass: drop controls, whitespace to a space, a space either side of a CJK ideograph.

  U+2028 and U+2029 are not whitespace to google-research, but `str.split` splits on them; making
  them spaces here keeps `str.lower`'s final-sigma context inside one token.
  """
  if _is_dropped(cp):
    return None
  if _is_whitespace(cp) or cp in (0x2028, 0x2029):
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


class _CharTable(dict):
  """A `str.translate` table that classifies each code point on first sight and then remembers it.

  Lookups of seen characters stay in C; the Python classifier runs once per distinct character.
  """

  def __init__(self, classify: Callable[[int], _Replacement]):
    super().__init__()
    self._classify = classify
    for cp in range(128):
      self[cp] = classify(cp)

  def __missing__(self, cp: int) -> _Replacement:
    replacement = self._classify(cp)
    self[cp] = replacement
    return replacement


_CLEAN = _CharTable(_clean)
_DROP_MARKS_SPLIT_PUNCTUATION = _CharTable(_drop_marks_split_punctuation)
_CLEAN_SPLIT_PUNCTUATION = _CharTable(_clean_split_punctuation)


def convert_to_unicode(text: Union[str, bytes]) -> str:
  """Returns `text` as str, decoding bytes as UTF-8 and dropping invalid bytes."""
  if isinstance(text, str):
    return text
  if isinstance(text, bytes):
    return text.decode("utf-8", "ignore")
  raise ValueError(f"Unsupported string type: {type(text)}")


def printable_text(text: Union[str, bytes]) -> str:
  """Returns `text` as str for printing or logging (the same as `convert_to_unicode` on Python 3)."""
  return convert_to_unicode(text)


def load_vocab(vocab_file: str) -> "collections.OrderedDict[str, int]":
  """Reads a vocab file (one token a line, local or gs://) into token -> line number.

  Like google-research: each line is stripped of surrounding whitespace, a blank line is the token
  "", and a repeated token keeps its last line number.
  """
  with tf.io.gfile.GFile(vocab_file, "r") as reader:
    lines = convert_to_unicode(reader.read()).split("\n")
  if lines[-1] == "":
    lines.pop()  # After the final newline, or the whole of an empty file.
  vocab = collections.OrderedDict()
  for index, line in enumerate(lines):
    vocab[line.strip()] = index
  return vocab


def convert_by_vocab(vocab: Mapping, items: Iterable) -> List:
  """Maps each item through `vocab` (tokens to ids or ids to tokens); KeyError if one is missing."""
  return [vocab[item] for item in items]


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


class WordpieceTokenizer:
  """Splits words into the vocab's pieces, greedily taking the longest match first.

  Pieces after the first carry the "##" prefix. A word longer than `max_input_chars_per_word`
  characters, or with any position that no vocab piece matches, becomes the single `unk_token`.
  `vocab` is read once here: changing it afterwards is not supported.
  """

  def __init__(self, vocab: Mapping[str, int], unk_token: str = "[UNK]",
               max_input_chars_per_word: int = 200):
    self.vocab = vocab
    self.unk_token = unk_token
    self.max_input_chars_per_word = max_input_chars_per_word
    # Continuation pieces without their "##", so the search needs no string concatenation.
    self._next_pieces = frozenset(token[2:] for token in vocab if token.startswith("##"))
    # No vocab entry is longer than these, so the search need not try longer pieces.
    self._max_first_piece = max(map(len, vocab), default=0)
    self._max_next_piece = max(map(len, self._next_pieces), default=0)

  def tokenize(self, text: Union[str, bytes]) -> List[str]:
    """Returns the pieces of each whitespace-separated word of `text`, in order."""
    pieces = []
    for word in convert_to_unicode(text).split():
      pieces.extend(self.tokenize_word(word))
    return pieces

  def tokenize_word(self, word: str) -> List[str]:
    """Returns the pieces of one word (a string without whitespace)."""
    length = len(word)
    if length > self.max_input_chars_per_word:
      return [self.unk_token]
    vocab = self.vocab
    if word in vocab:
      return [word]
    end = min(length - 1, self._max_first_piece)
    while end > 0 and word[:end] not in vocab:
      end -= 1
    if end == 0:
      return [self.unk_token]
    pieces = [word[:end]]
    next_pieces = self._next_pieces
    longest = self._max_next_piece
    start = end
    while start < length:
      end = min(length, start + longest)
      while end > start and word[start:end] not in next_pieces:
        end -= 1
      if end == start:
        return [self.unk_token]
      pieces.append("##" + word[start:end])
      start = end
    return pieces


class _WordPieceCache(dict):
  """word -> its WordPiece tokens, computed on first lookup; emptied when it reaches `max_size`."""

  def __init__(self, wordpiece_tokenizer: WordpieceTokenizer, max_size: int):
    super().__init__()
    self._wordpiece_tokenizer = wordpiece_tokenizer
    self._max_size = max_size

  def __missing__(self, word: str) -> Tuple[str, ...]:
    if len(self) >= self._max_size:
      self.clear()
    pieces = tuple(self._wordpiece_tokenizer.tokenize_word(word))
    self[word] = pieces
    return pieces


class FullTokenizer:
  """Text to WordPiece tokens: `BasicTokenizer` then `WordpieceTokenizer`, plus id conversion.

  Remembers the pieces of up to `_WORD_CACHE_SIZE` distinct words, since words repeat.
  """

  _WORD_CACHE_SIZE = 1 << 18

  def __init__(self, vocab_file: str, do_lower_case: bool = True):
    self.vocab = load_vocab(vocab_file)
    self.inv_vocab = {index: token for token, index in self.vocab.items()}
    self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
    self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)
    self._word_pieces = _WordPieceCache(self.wordpiece_tokenizer, self._WORD_CACHE_SIZE)

  def tokenize(self, text: Union[str, bytes]) -> List[str]:
    """Returns the WordPiece tokens of `text`."""
    words = self.basic_tokenizer.tokenize(text)
    return list(itertools.chain.from_iterable(map(self._word_pieces.__getitem__, words)))

  def convert_tokens_to_ids(self, tokens: Iterable[str]) -> List[int]:
    """Maps tokens to vocab ids."""
    return convert_by_vocab(self.vocab, tokens)

  def convert_ids_to_tokens(self, ids: Iterable[int]) -> List[str]:
    """Maps vocab ids to tokens."""
    return convert_by_vocab(self.inv_vocab, ids)
