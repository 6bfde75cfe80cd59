"""`InGraphTokenizer`: `FullTokenizer`'s rules as TensorFlow ops, for serving graphs and tf.data.

Its own module so that bert_tf.tokenization imports without TensorFlow; it uses that module's
tables (one source of google-research's rules), never the reverse.
"""

from typing import Optional

import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf.tokenization import _CJK_RANGES, load_vocab

# RE2 patterns for InGraphTokenizer: the same character classes as the tables above.
_RE2_DROPPED = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\p{Cf}\x{FFFD}]"
# U+2028 and U+2029 are not whitespace to google-research, but its `str.split` splits on them.
_RE2_WHITESPACE = r"[\t\n\r\p{Zs}\x{2028}\x{2029}]"
_RE2_CJK = "([" + "".join(f"\\x{{{low:X}}}-\\x{{{high:X}}}" for low, high in _CJK_RANGES) + "])"
_RE2_PUNCTUATION = r"[!-/:-@\[-`{-~]|\p{P}"


class InGraphTokenizer(tf.Module):
  """`FullTokenizer` as TensorFlow ops, for serving graphs and `tf.data` preprocessing.

  `tokenize` maps a batch of strings to WordPiece ids. It applies `BasicTokenizer`'s rules with RE2,
  ICU and TensorFlow Text ops, then TensorFlow Text's FastWordpieceTokenizer on the words. Text's
  own FastBertTokenizer and BertTokenizer are not used because they differ from google-research
  on common text: they turn control characters into spaces instead of deleting them ("a\\x0bb" is
  two words, not "ab"), keep U+FFFD, limit words to `max_bytes_per_word` bytes (by default 100:
  a word of 34 Hangul syllables is [UNK]) instead of 200 characters, and when lowercasing use NFKC
  case folding, not `str.lower` ("ß" -> "ss", "ﬁ" -> "fi", "ℝ" -> "r", "…" -> "...", fullwidth
  letters to ASCII, a final "ς" to "σ").

  Differences from `FullTokenizer` (none on the SQuAD and Korean corpus texts of the tests):
  - Unicode versions. Python 3.11's `unicodedata` is Unicode 14.0; TensorFlow's RE2 tables are
    newer and the ICU behind `tf.strings.lower` older, so characters assigned in between are
    classed differently: U+11B00 (Devanagari Extended-A punctuation, Unicode 15) splits words
    only in-graph; when lowercasing, U+0ECE (a Lao mark, Unicode 15) is dropped only in-graph,
    and a capital sigma before U+0898 (an Arabic mark, Unicode 14) becomes final "ς" only
    in-graph ("σ" in Python).
  tests/test_tokenization.py asserts each of these, and the TensorFlow Text ones above.
  """

  def __init__(self, vocab_file: str, do_lower_case: bool, unk_token: str = "[UNK]",
               max_input_chars_per_word: int = 200, name: Optional[str] = None):
    super().__init__(name=name)
    vocab = load_vocab(vocab_file)
    tokens = list(vocab)
    if list(vocab.values()) != list(range(len(tokens))):
      raise ValueError(f"{vocab_file} lists a token twice: ids are line numbers, which an in-graph "
                       "vocab cannot reproduce. Remove the repeated lines.")
    self.do_lower_case = do_lower_case
    self.unk_token = unk_token
    self.max_input_chars_per_word = max_input_chars_per_word
    self._wordpiece = tf_text.FastWordpieceTokenizer(
        vocab=tokens, suffix_indicator="##", unknown_token=unk_token, token_out_type=tf.int32,
        no_pretokenization=True,
        # Our own check below applies the limit in characters; a character is at most 4 bytes.
        max_bytes_per_word=4 * max_input_chars_per_word)

  def words(self, strings: tf.Tensor) -> tf.RaggedTensor:
    """`BasicTokenizer.tokenize` of each string in a 1-D batch: [batch, (words)] strings."""
    # Drops invalid UTF-8, as `convert_to_unicode` does.
    text = tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="ignore")
    text = tf.strings.regex_replace(text, _RE2_DROPPED, "")
    text = tf.strings.regex_replace(text, _RE2_WHITESPACE, " ")
    text = tf.strings.regex_replace(text, _RE2_CJK, r" \1 ")
    if self.do_lower_case:
      text = tf_text.normalize_utf8(tf.strings.lower(text, encoding="utf-8"), "NFD")
      text = tf.strings.regex_replace(text, r"\p{Mn}", "")
    return tf_text.regex_split(text, " +|" + _RE2_PUNCTUATION, _RE2_PUNCTUATION)

  def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
    """WordPiece ids of each string in a 1-D batch: [batch, (tokens)] int32."""
    words = self.words(strings)
    too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > (
        self.max_input_chars_per_word)
    words = words.with_flat_values(tf.where(too_long, self.unk_token, words.flat_values))
    return self._wordpiece.tokenize(words).merge_dims(1, 2)
