"""google-research's packing of one sentence or a pair, shared by the classifier and
extract_features."""

from bert_tf import tokenization
from bert_tf.data import sentence_pairs

TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "a", "mat", "dog"]


def _tokenizer(tmp_path) -> tokenization.FullTokenizer:
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(t + "\n" for t in TOKENS))
  return tokenization.FullTokenizer(str(vocab), do_lower_case=True)


def test_a_pair_is_packed_truncated_from_the_longer_side_and_padded(tmp_path):
  packed = sentence_pairs.pack(_tokenizer(tmp_path), "the cat sat on the mat", "a dog", 9)
  assert packed.tokens == ["[CLS]", "the", "cat", "sat", "on", "[SEP]", "a", "dog", "[SEP]"]
  assert packed.segment_ids == [0] * 6 + [1] * 3
  packed = sentence_pairs.pack(_tokenizer(tmp_path), "the cat", "a dog", 8)
  assert packed.input_ids == [2, 4, 5, 3, 8, 10, 3, 0]
  assert packed.input_mask == [1] * 7 + [0]
  assert packed.segment_ids == [0, 0, 0, 0, 1, 1, 1, 0]


def test_a_single_sentence_keeps_its_first_tokens(tmp_path):
  packed = sentence_pairs.pack(_tokenizer(tmp_path), "the cat sat on the mat", None, 5)
  assert packed.tokens == ["[CLS]", "the", "cat", "sat", "[SEP]"]
  assert packed.segment_ids == [0] * 5 and packed.input_mask == [1] * 5


def test_truncation_pops_the_longer_list_and_b_on_a_tie():
  a, b = list("abcde"), list("xy")
  sentence_pairs.truncate_seq_pair(a, b, 5)
  assert (a, b) == (list("abc"), list("xy"))
  a, b = list("ab"), list("xy")
  sentence_pairs.truncate_seq_pair(a, b, 3)
  assert (a, b) == (list("ab"), list("x"))
