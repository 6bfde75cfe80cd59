"""Tests for bert_tf.tokenization.

The reference for google-research/bert's tokenization is tf-models-official's port of it
(official.nlp.tools.tokenization), with its word limit set back to google-research's 200.
"""

import concurrent.futures
import json
import logging
import random
import string
import subprocess
import sys
import unicodedata
from typing import List

import pytest
import tensorflow as tf
import tensorflow_text as tf_text
from official.nlp.tools import tokenization as reference

from bert_tf import tokenization
from bert_tf.serving import in_graph_tokenization
from conftest import PROJECT_ROOT, shared_path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]"]
FIXTURE_TOKENS = SPECIALS + [
    "the", "hello", "world", "un", "##aff", "##able", "a", "##b", "##c", "b", "c", "d", "e", "x",
    "##x", "i", "##i", "cafe", "##e", "café", "Paris", "paris", "p", "##aris", "istanbul",
    "ab", "##d", "st", "##ra", "##ße", "##sse", "ß", "ss", "fi", "r", "ς", "σ", "##ς", "##σ",
    "α", "##α",
    "한국어", "한", "##국", "##어", "ᄒ", "##ᅡ", "##ᆫ", "中", "文", "㐀", "鿿", "豈", "𠀀",
    "😀", "##😀", "𝐀", "##𝐀", "ℝ", "ﬁ", "ǅ", "ひらがな", "カタカナ", "€", "©", "##€", "##한",
] + list(string.punctuation) + ["¿", "«", "»", "—", "…", "·", "、", "。", "，"]

# One or more strings for each rule of google-research's tokenization.
TRICKY = [
    # Characters that are deleted: NUL, U+FFFD, Cc and Cf controls (tab, newline, CR are spaces).
    "a\x00b", "a\x0bb", "a\x0cb", "a\x1cb", "a\x7fb", "a\x85b", "a\u200bb", "a\u200db",
    "a\ufeffb", "a\ufffdb", "a\U000e0001b", "a\u00adb",
    "a\tb\nc\rd", "a\u00a0b\u3000c\u2009d\u202fe", "a\u2028b\u2029c",
    # CJK ideographs, at each range's ends and just outside; Hangul and kana are not CJK.
    "中文", "a中b", "\u4e00\u9fff\u3400\u4dbf\u4dc0\u33ff",
    "\U00020000\U0002a6df\U0002a700\U0002b73f",
    "\U0002b740\U0002b81f\U0002b820\U0002ceaf\U0002ceb0", "\uf900\ufaff\U0002f800\U0002fa1f",
    "한국어", "한국어를 배웁니다.", "ひらがなカタカナ", "mixed한국어English中文",
    # Lowercasing, NFD and accent removal.
    "café Café CAFÉ naïve ÅNGSTRÖM", "İstanbul", "ΑΣ ΟΔΟΣ. ΑΣ.Α ΑΣ\u00adΑ σίσυφος ΟΔΟΣ中",
    "ΑΣ\x01Α ΑΣ\u2028Α",  # Controls are deleted before lowercasing: the first sigma is not final.
    "straße STRASSE ǅ ﬁ ℝ ＡＢＣ", "e\u0301\u0327 \u0301 a\u0301", "\u1fef\u037e\u0387\u1fee",
    # Punctuation: ASCII non-alphanumerics and Unicode P*; other symbols stay inside words.
    string.punctuation, "don't stop-me $5.00 #tag @user ~ ^ `q` a_b", "¿Qué? «oui» — … · 、。，",
    "5€ ©2024 ±1 ™ 😀 a😀b", "👍🏽 👨\u200d👩\u200d👧 🇰🇷",
    # Special tokens in text are split like any brackets.
    "[CLS] hello [SEP] [unused0]",
    # WordPiece: pieces, unknown words, the 200-character limit.
    "unaffable", "xxxx", "xy", "ab abc abd", "x" * 200, "x" * 201, "𝐀" * 200, "한" * 201,
    # Korean: words over 100 characters (tf.text's byte limit) and at the 200-character limit,
    # controls and zero-width characters inside words, accents on syllables (lowercasing
    # decomposes syllables into jamo), compatibility and conjoining jamo, CJK and fullwidth
    # punctuation beside Hangul.
    "한국어" * 40, "한국어" * 66 + "한한", "한국어" * 67, "한\x0b국어 한\u200b국어 한\ufeff국어\x00",
    "한\u0301국어 한국어\u0327 Ｈ한국어！", "ㅋㅋㅋ ㅠㅠ \u1112\u1161\u11ab \u1112\u1161\u11ab국어",
    "「한국어」、『中文』。 한국어中文한국어 (한국어)… 한국어·中",
    "", "   ", "\t\n",
]


@pytest.fixture
def vocab_file(tmp_path) -> str:
  """A small vocab with cased and uncased entries, Hangul, jamo, CJK, emoji and punctuation."""
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(FIXTURE_TOKENS) + "\n", encoding="utf-8")
  return str(path)


def reference_tokenizer(vocab_file: str, do_lower_case: bool) -> reference.FullTokenizer:
  """google-research's FullTokenizer (tf-models' port uses a 400-character word limit, not 200)."""
  tokenizer = reference.FullTokenizer(vocab_file, do_lower_case=do_lower_case)
  tokenizer.wordpiece_tokenizer.max_input_chars_per_word = 200
  return tokenizer


def write_vocab(tmp_path, tokens: List[str], name: str = "vocab.txt") -> str:
  path = tmp_path / name
  path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
  return str(path)


def squad_contexts(limit: int) -> List[str]:
  with open(shared_path("squad", "dev-v1.1.json"), encoding="utf-8") as f:
    data = json.load(f)["data"]
  return [p["context"] for article in data for p in article["paragraphs"]][:limit]


def korean_lines(limit: int) -> List[str]:
  """Lines from each Korean corpus (NLI, STS, law, chatbot), evenly spread over `limit`."""
  corpus = shared_path("corpus_ko")
  files = [corpus / "KorNLUDatasets/KorNLI/xnli.dev.ko.tsv",
           corpus / "KorNLUDatasets/KorSTS/sts-dev.tsv",
           corpus / "konlpy_corpus/kolaw/constitution.txt",
           corpus / "Chatbot_data/ChatbotData.csv"]
  lines = []
  for path in files:
    with open(path, encoding="utf-8") as f:
      lines.extend([line for line in f.read().split("\n") if line.strip()][:limit // len(files)])
  return lines


# google-research parity -----------------------------------------------------------------------
# Each parity test runs the C tokenizer (bert_tf/_wordpiece.c) and the Python one.


@pytest.fixture(params=[True, False], ids=["c", "python"])
def compiled(request) -> bool:
  return request.param


def test_the_c_tokenizer_is_built(vocab_file):
  """`make install` builds it; without it every "c" case below would quietly test Python."""
  assert tokenization._wordpiece is not None, "bert_tf/_wordpiece.c is not built: make tokenizer"
  assert tokenization.FullTokenizer(vocab_file).compiled
  assert not tokenization.FullTokenizer(vocab_file, compiled=False).compiled


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_full_tokenizer_matches_reference_on_every_rule(vocab_file, do_lower_case, compiled):
  ours = tokenization.FullTokenizer(vocab_file, do_lower_case=do_lower_case, compiled=compiled)
  ref = reference_tokenizer(vocab_file, do_lower_case)
  for text in TRICKY:
    assert ours.tokenize(text) == ref.tokenize(text), repr(text)
    assert ours.tokenize_to_ids(text) == ref.convert_tokens_to_ids(ref.tokenize(text)), repr(text)
    assert ours.basic_tokenizer.tokenize(text) == ref.basic_tokenizer.tokenize(text), repr(text)
  assert ours.tokenize(" ".join(TRICKY)) == ref.tokenize(" ".join(TRICKY))
  pieces = [ref.tokenize(text) for text in TRICKY]
  tokens = [token for word_tokens in pieces for token in word_tokens]
  assert ours.tokenize_words(TRICKY) == (tokens, ref.convert_tokens_to_ids(tokens),
                                         list(map(len, pieces)))
  assert ours.tokenize("caf\xc3\xa9 \xff!".encode("latin-1")) == ref.tokenize(
      "caf\xc3\xa9 \xff!".encode("latin-1"))


def test_rules_give_google_research_tokens(vocab_file, compiled):
  """A few outputs spelled out, so the rules stay readable here and not only in the reference."""
  uncased = tokenization.FullTokenizer(vocab_file, do_lower_case=True, compiled=compiled)
  cased = tokenization.FullTokenizer(vocab_file, do_lower_case=False, compiled=compiled)
  assert uncased.tokenize("UNAFFABLE") == ["un", "##aff", "##able"]
  assert uncased.tokenize("a\x0bb\u200bc") == ["ab", "##c"]  # Controls are deleted.
  assert uncased.tokenize("a\tb\u3000c") == ["a", "b", "c"]
  assert uncased.tokenize("Café!") == ["cafe", "!"]
  assert cased.tokenize("café!") == ["café", "!"] and cased.tokenize("Café") == ["[UNK]"]
  assert uncased.tokenize("한") == ["ᄒ", "##ᅡ", "##ᆫ"]  # NFD turns the syllable into jamo.
  assert cased.tokenize("한국어") == ["한국어"]
  assert cased.tokenize("a中文b") == ["a", "中", "文", "b"]
  assert uncased.basic_tokenizer.tokenize("ΟΔΟΣ ΑΣ") == ["οδος", "ας"]
  assert cased.tokenize("5€ ^`~") == ["[UNK]", "^", "`", "~"]
  assert cased.tokenize("x" * 200) == ["x"] + ["##x"] * 199
  assert cased.tokenize("x" * 201) == ["[UNK]"]
  assert cased.tokenize("𝐀" * 200) == ["𝐀"] + ["##𝐀"] * 199
  assert cased.tokenize("xq") == ["[UNK]"]  # One unmatched position makes the whole word [UNK].
  # A Korean word of 120 characters (360 UTF-8 bytes) is split; one of 201 characters is [UNK].
  assert cased.tokenize("한국어" * 40) == ["한국어"] + ["##한", "##국", "##어"] * 39
  assert cased.tokenize("한국어" * 67) == ["[UNK]"]
  assert cased.tokenize("한\x0b국어 한\u200b국어") == ["한국어", "한국어"]  # Controls deleted.
  assert cased.tokenize("한\u0301국어") == ["[UNK]"]  # The accent stays when not lowercasing,
  assert uncased.tokenize("한\u0301") == ["ᄒ", "##ᅡ", "##ᆫ"]  # and goes with the syllable's NFD.


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_chunk_path_and_whole_text_path_match_reference(vocab_file, do_lower_case, compiled):
  """FullTokenizer caches the tokens of each whitespace-separated chunk, except in text with a
  control that `str.split` splits on but google-research deletes, which it takes whole."""
  isspace_dropped = "".join(
      chr(cp) for cp in range(0x110000) if chr(cp).isspace() and
      reference.BasicTokenizer()._clean_text(chr(cp)) == "")
  assert isspace_dropped == "\x0b\x0c\x1c\x1d\x1e\x1f\x85"
  assert all(tokenization._SPLIT_BUT_DROPPED.fullmatch(c) for c in isspace_dropped)
  ours = tokenization.FullTokenizer(vocab_file, do_lower_case=do_lower_case, compiled=compiled)
  ref = reference_tokenizer(vocab_file, do_lower_case)
  chunks = ["한국어", "Café!", "a\u200bb", "a\ufffdb", "(한)", "¿Qué?", "«oui»", "a_b", "x-y", "5€",
            "$5.00", "中文b", "a中", "ΑΣ.", "ΟΔΟΣ", "e\u0301", "[CLS]", "unaffable", "xq", "👍🏽"]
  separators = [" ", "\t", "\n", "\r", "\u00a0", "\u3000", "\u2009", "\u2028", "\u2029", "  "]
  rng = random.Random(7)
  for _ in range(300):
    parts = [rng.choice(chunks) for _ in range(rng.randrange(1, 6))]
    text = "".join(p + rng.choice(separators) for p in parts)
    for control in ["", *isspace_dropped]:  # "": all chunks; otherwise the whole-text path.
      joined = text.replace(" ", control, 1) if control else text
      assert ours.tokenize(joined) == ref.tokenize(joined), repr(joined)
  # The same chunk, seen again (cached), beside different neighbours.
  assert ours.tokenize("Café! Café!\x0bCafé!") == ref.tokenize("Café! Café!\x0bCafé!")


def test_wordpiece_tokenizer_matches_reference(vocab_file):
  vocab = tokenization.load_vocab(vocab_file)
  rng = random.Random(0)
  alphabet = "abcdex#"
  for max_chars in (3, 200):
    ours = tokenization.WordpieceTokenizer(vocab, max_input_chars_per_word=max_chars)
    ref = reference.WordpieceTokenizer(vocab, max_input_chars_per_word=max_chars)
    for _ in range(500):
      text = " ".join("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 9)))
                      for _ in range(rng.randrange(0, 4)))
      assert ours.tokenize(text) == ref.tokenize(text), repr(text)


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_random_unicode_matches_reference(tmp_path, do_lower_case, compiled):
  rng = random.Random(1234)
  notable = [0, 0x9, 0xB, 0x20, 0x85, 0xA0, 0xAD, 0x130, 0x3A3, 0x301, 0x37E, 0x1FEF, 0x2028,
             0x200B, 0x3000, 0xFFFD, 0x4E00, 0xF900, 0x2F800, 0xAC00, 0x1100, 0x1F600, 0xE0001]

  def random_char() -> str:
    roll = rng.random()
    if roll < 0.3:
      return chr(rng.randrange(0x20, 0x7F))
    if roll < 0.5:
      return chr(rng.choice(notable))
    if roll < 0.6:
      return chr(rng.randrange(0x370, 0x400))  # Greek and Cyrillic: case and final sigma.
    code_point = rng.randrange(0x80, 0x110000 if roll < 0.8 else 0x3000)
    return "x" if 0xD800 <= code_point < 0xE000 else chr(code_point)

  words = sorted({word for _ in range(2000) for word in
                  reference.BasicTokenizer(do_lower_case).tokenize(random_char() * 2)})
  vocab_file = write_vocab(tmp_path, SPECIALS + words[::2] + ["##" + w for w in words[::3]])
  ours = tokenization.FullTokenizer(vocab_file, do_lower_case=do_lower_case, compiled=compiled)
  ref = reference_tokenizer(vocab_file, do_lower_case)
  for _ in range(3000):
    text = "".join(random_char() for _ in range(rng.randrange(0, 30)))
    assert ours.tokenize(text) == ref.tokenize(text), repr(text)


@pytest.mark.parametrize("vocab_name, do_lower_case", [
    ("bert-base-uncased-vocab.txt", True),
    ("bert-base-cased-vocab.txt", False),
    ("kcbert-base-vocab.txt", False),
])
def test_real_text_matches_reference(vocab_name, do_lower_case, compiled):
  vocab_file = str(shared_path("vocabs", vocab_name))
  texts = squad_contexts(400) + korean_lines(2000)
  ours = tokenization.FullTokenizer(vocab_file, do_lower_case=do_lower_case, compiled=compiled)
  ref = reference_tokenizer(vocab_file, do_lower_case)
  for text in texts:
    assert ours.tokenize(text) == ref.tokenize(text), repr(text)
  assert [ours.tokenize_to_ids(text) for text in texts[::7]] == [
      ref.convert_tokens_to_ids(ref.tokenize(text)) for text in texts[::7]]
  in_graph = in_graph_tokenization.InGraphTokenizer(vocab_file, do_lower_case=do_lower_case)
  assert in_graph.tokenize(tf.constant(texts)).to_list() == [
      ours.convert_tokens_to_ids(ours.tokenize(text)) for text in texts]


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_c_tokenizer_stays_exact_when_its_caches_fill(vocab_file, do_lower_case):
  """More distinct words (and lowercased non-ASCII chunks) than the caches hold (1 << 18)."""
  rng = random.Random(3)
  words = ["".join(rng.choice("abcdexÉé") for _ in range(rng.randrange(6, 10)))
           for _ in range(300_000)]
  text = " ".join(words + words[:1000])  # The first words again, after the caches were emptied.
  c = tokenization.FullTokenizer(vocab_file, do_lower_case=do_lower_case)
  python = tokenization.FullTokenizer(vocab_file, do_lower_case=do_lower_case, compiled=False)
  assert c.compiled and c.tokenize(text) == python.tokenize(text)
  assert c.tokenize(text[:5000]) == python.tokenize(text[:5000])


def test_tokenizer_without_unk_in_its_vocab_runs_in_python(tmp_path):
  no_unk = write_vocab(tmp_path, ["[CLS]", "[SEP]", "a", "##b"], "no_unk.txt")
  tokenizer = tokenization.FullTokenizer(no_unk, do_lower_case=True)
  assert not tokenizer.compiled  # Its "[UNK]" token has no id to give; Python gives the string.
  assert tokenizer.tokenize("ab xy") == reference_tokenizer(no_unk, True).tokenize("ab xy")


def test_c_tokenizer_is_exact_from_several_threads(vocab_file):
  """Lowercased non-ASCII chunks call back into Python, where another thread may run."""
  texts = [f"Café{i} ΟΔΟΣ{i % 7} 한국어{i % 13} x{i}" for i in range(2000)]
  expected = [reference_tokenizer(vocab_file, True).tokenize(text) for text in texts]
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    results = list(pool.map(lambda shard: [tokenizer.tokenize(t) for t in texts[shard::4]],
                            range(4)))
  assert [results[i % 4][i // 4] for i in range(len(texts))] == expected


# Vocab and id conversion ---------------------------------------------------------------------


def test_tokenizing_with_a_local_vocab_does_not_import_tensorflow(vocab_file):
  """Command-line tools that only tokenize start without TensorFlow's seconds of import."""
  code = (
      "import sys\n"
      "from bert_tf import tokenization\n"
      "from bert_tf.tokenization import FullTokenizer, BasicTokenizer, load_vocab\n"
      f"tokenization.check_vocab({vocab_file!r})\n"
      f"tokenizer = FullTokenizer({vocab_file!r}, do_lower_case=True)\n"
      "assert tokenizer.tokenize('Hello, 中文!') == ['hello', ',', '中', '文', '!']\n"
      "print(sorted(m for m in sys.modules if m.split('.')[0] in "
      "('tensorflow', 'tensorflow_text', 'keras', 'tf_keras')))\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.splitlines() == ["[]"]



def test_load_vocab_matches_reference_on_odd_files(tmp_path):
  contents = ["", "\n", "a", "a\n", "a\r\nb\r\n", "a\rb\nc\r", " a \n\n\nb\na\n  \n\tc",
              "x\u2028y\x85z\n", "[PAD]\n한국어\n##어"]
  for i, content in enumerate(contents):
    path = tmp_path / f"vocab{i}.txt"
    path.write_bytes(content.encode("utf-8"))
    ours = tokenization.load_vocab(str(path))
    assert list(ours.items()) == list(reference.load_vocab(str(path)).items()), repr(content)


def test_load_vocab_reads_through_gfile():
  path = "ram://bert_tf_test_tokenization/vocab.txt"
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("[PAD]\n[UNK]\nhello\n")
  assert tokenization.load_vocab(path) == {"[PAD]": 0, "[UNK]": 1, "hello": 2}


@pytest.mark.parametrize("tokens, message", [
    (["[PAD]", "[UNK]", "[SEP]", "a"], r"vocab.txt lacks \[CLS\]: BERT needs \[CLS\], \[SEP\], \[UNK\]"),
    (["[CLS]", "[SEP]", "a"], r"vocab.txt lacks \[UNK\]"),
    ([], r"vocab.txt lacks \[CLS\], \[SEP\], \[UNK\]:"),
    (SPECIALS + ["a", "b", "a"], r"vocab.txt, line 9: token 'a' repeats line 7.*\[unused999\]"),
    (SPECIALS + ["a", "", "b", ""], r"vocab.txt, line 10: token '' repeats line 8"),
])
def test_check_vocab_names_the_file_and_line(tmp_path, tokens, message):
  with pytest.raises(ValueError, match=message):
    tokenization.check_vocab(write_vocab(tmp_path, tokens))


def test_check_vocab_requires_mask_only_when_asked(tmp_path):
  path = write_vocab(tmp_path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])
  tokenization.check_vocab(path)
  with pytest.raises(ValueError, match=r"lacks \[MASK\]"):
    tokenization.check_vocab(path, (*tokenization.SPECIAL_TOKENS, "[MASK]"))


@pytest.mark.parametrize("name", ["bert-base-uncased-vocab.txt", "bert-base-cased-vocab.txt",
                                  "kcbert-base-vocab.txt"])
def test_check_vocab_accepts_real_vocabs(name):
  tokenization.check_vocab(str(shared_path("vocabs", name)),
                           (*tokenization.SPECIAL_TOKENS, "[MASK]"))


def test_ids_round_trip(vocab_file):
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
  ref = reference_tokenizer(vocab_file, True)
  tokens = tokenizer.tokenize("Hello, unaffable world! 中文 [UNK]")
  ids = tokenizer.convert_tokens_to_ids(tokens)
  assert ids == ref.convert_tokens_to_ids(tokens)
  assert ids[0] == FIXTURE_TOKENS.index("hello")
  assert tokenizer.convert_ids_to_tokens(ids) == tokens
  assert tokenizer.convert_ids_to_tokens(range(len(FIXTURE_TOKENS))) == FIXTURE_TOKENS
  with pytest.raises(KeyError):
    tokenizer.convert_tokens_to_ids(["not-in-vocab"])


def test_text_helpers():
  assert tokenization.convert_to_unicode(b"caf\xc3\xa9\xff") == "café"
  assert tokenization.printable_text(b"caf\xc3\xa9") == "café"
  assert tokenization.convert_to_unicode("x") == "x"
  with pytest.raises(ValueError, match="Unsupported string type"):
    tokenization.convert_to_unicode(3)
  assert tokenization.whitespace_tokenize(" a\tb \u3000c\n") == ["a", "b", "c"]
  assert tokenization.whitespace_tokenize("  ") == []
  assert tokenization.convert_by_vocab({"a": 1, "b": 2}, ["b", "a"]) == [2, 1]


# do_lower_case -------------------------------------------------------------------------------


def test_vocab_is_cased():
  assert not tokenization.vocab_is_cased(SPECIALS + ["the", "##ing", "ℝ", "ᄒ", "##ᅡ", "中"])
  assert tokenization.vocab_is_cased(SPECIALS + ["the", "Paris"])
  assert tokenization.vocab_is_cased(["the", "café"])
  assert tokenization.vocab_is_cased(["the", "한국"])
  assert tokenization.vocab_is_cased({"[CLS]": 0, "The": 1})
  assert tokenization.cased_vocab_entries(SPECIALS + ["a", "B", "é", "[unused9]"]) == ["B", "é"]


def test_real_vocabs_casing():
  uncased = tokenization.load_vocab(str(shared_path("vocabs", "bert-base-uncased-vocab.txt")))
  cased = tokenization.load_vocab(str(shared_path("vocabs", "bert-base-cased-vocab.txt")))
  korean = tokenization.load_vocab(str(shared_path("vocabs", "kcbert-base-vocab.txt")))
  assert not tokenization.vocab_is_cased(uncased)
  assert tokenization.vocab_is_cased(cased)
  assert tokenization.vocab_is_cased(korean)


def test_resolve_infers_from_vocab_and_logs(tmp_path, caplog):
  uncased = write_vocab(tmp_path, SPECIALS + ["the", "ℝ"], "uncased.txt")
  cased = write_vocab(tmp_path, SPECIALS + ["the", "The"], "cased.txt")
  with caplog.at_level(logging.INFO):
    assert tokenization.resolve_do_lower_case(uncased, None) is True
    assert tokenization.resolve_do_lower_case(cased, None) is False
  assert f"inferred True from the vocab {uncased}" in caplog.text
  assert f"inferred False from the vocab {cased}" in caplog.text
  assert tokenization.resolve_do_lower_case(uncased, True) is True
  assert tokenization.resolve_do_lower_case(cased, False) is False


def test_resolve_rejects_lowercasing_a_cased_vocab(tmp_path):
  korean = write_vocab(tmp_path, SPECIALS + ["한국어", "Seoul"], "korean.txt")
  with pytest.raises(ValueError) as error:
    tokenization.resolve_do_lower_case(korean, True)
  message = str(error.value)
  for part in ("--do_lower_case=True", korean, "jamo", "accents", "[UNK]", "--do_lower_case=False"):
    assert part in message


def test_resolve_rejects_not_lowercasing_an_uncased_vocab(tmp_path):
  uncased = write_vocab(tmp_path, SPECIALS + ["the", "paris"])
  with pytest.raises(ValueError) as error:
    tokenization.resolve_do_lower_case(uncased, False)
  message = str(error.value)
  for part in ("--do_lower_case=False", uncased, "[UNK]", "--do_lower_case=True"):
    assert part in message


@pytest.mark.parametrize("path, lower_case", [
    ("gs://bucket/uncased_L-12_H-768_A-12/bert_model.ckpt", True),
    ("/models/wwm_uncased_L-24_H-1024_A-16/bert_model.ckpt", True),
    ("uncased_L-2_H-128_A-2/bert_model.ckpt-1000", True),
    ("/m/multilingual_L-12_H-768_A-12/bert_model.ckpt", True),
    ("/m/chinese_L-12_H-768_A-12/bert_model.ckpt", True),
    ("gs://bucket/cased_L-12_H-768_A-12/bert_model.ckpt", False),
    ("/m/wwm_cased_L-24_H-1024_A-16/bert_model.ckpt", False),
    ("/m/multi_cased_L-12_H-768_A-12/bert_model.ckpt", False),
    ("/m/kcbert-base/bert_model.ckpt", None),
    ("/m/encased_L-12_H-768_A-12/model.ckpt", None),
    (None, None),
])
def test_checkpoint_lower_case(path, lower_case):
  assert tokenization.checkpoint_lower_case(path) is lower_case


def test_resolve_rejects_a_checkpoint_of_the_other_case(tmp_path):
  uncased = write_vocab(tmp_path, SPECIALS + ["the"], "uncased.txt")
  cased = write_vocab(tmp_path, SPECIALS + ["The"], "cased.txt")
  cased_checkpoint = "gs://b/multi_cased_L-12_H-768_A-12/bert_model.ckpt"
  uncased_checkpoint = "gs://b/uncased_L-12_H-768_A-12/bert_model.ckpt"
  assert tokenization.resolve_do_lower_case(uncased, True, uncased_checkpoint) is True
  assert tokenization.resolve_do_lower_case(cased, None, cased_checkpoint) is False
  assert tokenization.resolve_do_lower_case(cased, None, "/m/kcbert/bert_model.ckpt") is False
  with pytest.raises(ValueError) as error:
    tokenization.resolve_do_lower_case(uncased, True, cased_checkpoint)
  for part in ("--do_lower_case=True", uncased, cased_checkpoint, "jamo", "--do_lower_case=False"):
    assert part in str(error.value)
  with pytest.raises(ValueError) as error:
    tokenization.resolve_do_lower_case(cased, None, uncased_checkpoint)
  for part in ("--do_lower_case=False", cased, uncased_checkpoint, "--do_lower_case=True"):
    assert part in str(error.value)


def test_lowercasing_korean_for_a_cased_vocab_gives_unknown_tokens():
  """What the mismatch error warns about, on KcBERT's real vocab."""
  vocab_file = str(shared_path("vocabs", "kcbert-base-vocab.txt"))
  text = "한국어 문장을 토큰으로 나눕니다"
  lowercased = tokenization.FullTokenizer(vocab_file, do_lower_case=True).tokenize(text)
  assert set(lowercased) == {"[UNK]"}
  assert "[UNK]" not in tokenization.FullTokenizer(vocab_file, do_lower_case=False).tokenize(text)


# InGraphTokenizer ----------------------------------------------------------------------------


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_in_graph_matches_full_tokenizer(vocab_file, do_lower_case):
  full = tokenization.FullTokenizer(vocab_file, do_lower_case=do_lower_case)
  in_graph = in_graph_tokenization.InGraphTokenizer(vocab_file, do_lower_case=do_lower_case)
  texts = TRICKY + [" ".join(TRICKY)]
  ids = in_graph.tokenize(tf.constant(texts))
  assert ids.dtype == tf.int32 and ids.shape.as_list() == [len(texts), None]
  assert ids.to_list() == [full.convert_tokens_to_ids(full.tokenize(text)) for text in texts]
  invalid_utf8 = [b"caf\xc3\xa9 \xff!", b"\xed\xa0\x80x", b"\xe0Ab", b"\xf0\x9f\x98"]
  assert in_graph.tokenize(tf.constant(invalid_utf8)).to_list() == [
      full.convert_tokens_to_ids(full.tokenize(text)) for text in invalid_utf8]


def test_in_graph_runs_in_graphs(vocab_file):
  in_graph = in_graph_tokenization.InGraphTokenizer(vocab_file, do_lower_case=True)
  texts = ["Hello, world!", "unaffable 中文"]
  expected = in_graph.tokenize(tf.constant(texts)).to_list()
  traced = tf.function(in_graph.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
  assert traced(tf.constant(texts)).to_list() == expected
  dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(in_graph.tokenize)
  assert next(iter(dataset)).to_list() == expected


def test_in_graph_rejects_repeated_vocab_tokens(tmp_path):
  with pytest.raises(ValueError, match="twice"):
    in_graph_tokenization.InGraphTokenizer(write_vocab(tmp_path, SPECIALS + ["a", "b", "a"]), True)


def _words(tokenizer: in_graph_tokenization.InGraphTokenizer, text: str) -> List[str]:
  return [word.decode("utf-8") for word in tokenizer.words(tf.constant([text])).to_list()[0]]


def test_in_graph_documented_unicode_version_differences(vocab_file):
  """The differences InGraphTokenizer's docstring lists: characters new in Unicode 14 or 15."""
  uncased = in_graph_tokenization.InGraphTokenizer(vocab_file, do_lower_case=True)
  cased = in_graph_tokenization.InGraphTokenizer(vocab_file, do_lower_case=False)
  basic_uncased = tokenization.BasicTokenizer(do_lower_case=True)
  basic_cased = tokenization.BasicTokenizer(do_lower_case=False)
  # U+11B00, punctuation since Unicode 15: RE2 knows it, Python 3.11 does not.
  text = "a\U00011b00b"
  assert _words(cased, text) == ["a", "\U00011b00", "b"]
  if unicodedata.category("\U00011b00") == "Cn":
    assert basic_cased.tokenize(text) == [text]
  else:
    assert basic_cased.tokenize(text) == _words(cased, text)
  # U+0ECE, a nonspacing mark since Unicode 15: dropped in-graph when lowercasing.
  text = "a\u0eceb"
  assert _words(uncased, text) == ["ab"]
  if unicodedata.category("\u0ece") == "Cn":
    assert basic_uncased.tokenize(text) == [text]
  else:
    assert basic_uncased.tokenize(text) == ["ab"]
  # U+0898, a nonspacing mark since Unicode 14: the ICU behind tf.strings.lower does not know it
  # is case-ignorable, so the sigma before it looks final.
  text = "aΣ\u0898Σb"
  assert unicodedata.category("\u0898") == "Mn"
  assert basic_uncased.tokenize(text) == ["aσσb"]
  assert _words(uncased, text) == ["aςσb"]


@pytest.mark.parametrize("tf_text_tokenizer", ["FastBertTokenizer", "BertTokenizer"])
def test_tf_text_bert_tokenizer_differences_documented(vocab_file, tf_text_tokenizer):
  """Why InGraphTokenizer does not use TensorFlow Text's BERT tokenizers: its docstring's list."""
  if tf_text_tokenizer == "FastBertTokenizer":
    fast = tf_text.FastBertTokenizer(vocab=list(tokenization.load_vocab(vocab_file)),
                                     token_out_type=tf.string, lower_case_nfd_strip_accents=True)
    tokenize = fast.tokenize
  else:
    bert = tf_text.BertTokenizer(vocab_file, token_out_type=tf.string, lower_case=True)
    tokenize = lambda strings: bert.tokenize(strings).merge_dims(1, 2)
  full = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
  cases = {
      "a\x0bb": ["a", "b"],  # A control character becomes a space instead of being deleted.
      "a\ufffd": ["[UNK]"],  # U+FFFD is kept.
      "x" * 101: ["[UNK]"],  # Over 100 bytes, though within 200 characters.
      # NFKC case folding instead of str.lower:
      "ß": ["ss"], "ﬁ": ["fi"], "ℝ": ["r"], "…": [".", ".", "."], "Ａ": ["a"], "ας": ["α", "##σ"],
  }
  for text, tf_text_tokens in cases.items():
    got = [token.decode("utf-8") for token in tokenize(tf.constant([text])).to_list()[0]]
    assert got == tf_text_tokens, repr(text)
    assert full.tokenize(text) != tf_text_tokens, repr(text)


# Vocab coverage: words lost to [UNK] or to Hangul jamo ---------------------------------------


def test_vocab_coverage_counts_unknown_and_jamo_words(tmp_path):
  vocab_file = write_vocab(tmp_path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "ㅋㅋ",
                                      "\u1112", "##\u1161", "##\u11ab"])
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
  coverage = tokenization.vocab_coverage(tokenizer, ["Hello 한 world", "ㅋㅋ hello"])
  assert (coverage.words, coverage.unknown, coverage.jamo) == (5, 1, 1)
  assert coverage.examples == ["한 -> \u1112 ##\u1161 ##\u11ab", "world -> [UNK]"]
  assert coverage.lost_share == 2 / 5
  assert tokenization.vocab_coverage(tokenizer, ["hello"] * 5 + ["world"], max_texts=5).unknown == 0


@pytest.mark.parametrize("vocab_name, do_lower_case, korean, lost, fix", [
    ("bert-base-uncased-vocab.txt", True, True, 0.5, "a cased Korean or multilingual model"),
    ("kcbert-base-vocab.txt", True, True, 0.5, "--do_lower_case=False"),
    ("bert-base-cased-vocab.txt", False, True, 0.5, "made for this text's language"),
    ("kcbert-base-vocab.txt", False, True, 0.0, None),
    ("bert-base-cased-vocab.txt", False, False, 0.0, None),
])
def test_warn_if_vocab_misfits_on_real_vocabs_and_text(vocab_name, do_lower_case, korean, lost,
                                                       fix, caplog):
  vocab_file = str(shared_path("vocabs", vocab_name))
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case)
  texts = korean_lines(400) if korean else squad_contexts(100)
  with caplog.at_level(logging.WARNING):
    coverage = tokenization.warn_if_vocab_misfits(tokenizer, texts, vocab_file)
  assert coverage.words > 1000
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  if fix is None:  # a vocab that fits its text loses few words, and is not warned of
    assert coverage.lost_share < 0.02 and not warnings, warnings
  else:
    assert coverage.lost_share > lost and len(warnings) == 1
    assert warnings[0].startswith(f"VOCAB DOES NOT FIT THE TEXT: with {vocab_file} "
                                  f"(do_lower_case={do_lower_case})") and fix in warnings[0]


def test_a_cp949_vocab_is_refused_naming_its_line(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_bytes("[PAD]\n[UNK]\n서울\n".encode("cp949"))
  with pytest.raises(ValueError, match=r"vocab.txt, line 3: not valid UTF-8 .*`iconv -f cp949 "
                     r"-t utf-8 .*vocab.txt > .*vocab.utf8.txt`"):
    tokenization.load_vocab(str(vocab))
