"""Fuzzes the C tokenizer (bert_tf/_wordpiece.c) against the Python one, for a time budget.

With --sanitize it first builds the extension with AddressSanitizer and UndefinedBehaviorSanitizer
(gcc) and fuzzes that build with the sanitizer runtimes preloaded into Python: a memory error or
undefined behaviour in the C code aborts with the sanitizer's report. `make sanitize-tokenizer`
runs it for 10 minutes, tests/test_wordpiece_sanitizers.py for a short budget in CI. Any
difference from the Python tokenizer (itself checked against google-research's in
tests/test_tokenization.py) exits 1 with the input that shows it. Cases: random vocabs, random
Unicode (lone surrogates, controls, combining marks, astral planes), long words, empty and
whitespace-only strings, texts of megabytes, caches filled past their limits, and one tokenizer
shared by several threads.

  python tests/wordpiece_fuzz.py --sanitize --seconds 60
"""

import argparse
import concurrent.futures
import importlib.util
import os
import pathlib
import random
import subprocess
import sysconfig
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Code points where google-research's rules change: controls that are deleted or are spaces,
# accents, final sigma, CJK range ends, Hangul syllables and jamo, emoji, tags, surrogates.
NOTABLE = [0, 0x9, 0xA, 0xB, 0xD, 0x1C, 0x20, 0x85, 0xA0, 0xAD, 0x130, 0x3A3, 0x3C2, 0x301,
           0x327, 0x37E, 0x1FEF, 0x2028, 0x2029, 0x200B, 0x200D, 0x3000, 0xFEFF, 0xFFFD,
           0x4E00, 0x9FFF, 0x3400, 0xF900, 0x2F800, 0x20000, 0xAC00, 0xD7A3, 0x1100, 0x11A8,
           0x1F600, 0x1F3FD, 0xE0001, 0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0x10FFFF]


# Cases that once failed, first in every run, on fresh tokenizers (empty buffers and caches):
# a lowercased chunk of combining marks alone has no words (memcpy from NULL, found by UBSan).
REGRESSIONS = ["\u0301", "\u0301 \u0301\u0327 a", "", " ", "\x00", "\x0b", "a" * 201]
CACHE_FILL = 300_000  # Distinct words: more than the C caches' 1 << 18 entries.
SANITIZERS = "-fsanitize=address,undefined"
# Leak checking is off: CPython itself keeps memory to the end that LeakSanitizer would report.
SANITIZER_OPTIONS = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
                     "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def build_sanitized(directory: str) -> str:
  """Compiles bert_tf/_wordpiece.c with the sanitizers into `directory`; returns the .so path."""
  output = os.path.join(directory, "_wordpiece.so")
  subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer", SANITIZERS,
                  "-fno-sanitize-recover=all", "-I" + sysconfig.get_paths()["include"],
                  str(PROJECT_ROOT / "bert_tf" / "_wordpiece.c"), "-o", output], check=True)
  return output


def sanitizer_environment() -> dict:
  """This environment plus the sanitizer runtimes preloaded, as Python itself is not built with
  them, and the options above."""
  runtimes = [subprocess.run(["gcc", f"-print-file-name={name}"], check=True, text=True,
                             capture_output=True).stdout.strip()
              for name in ("libasan.so", "libubsan.so")]
  return {**os.environ, "LD_PRELOAD": " ".join(runtimes), **SANITIZER_OPTIONS}


def load_module(path: str) -> None:
  """Makes `bert_tf._wordpiece` the extension at `path` (e.g. a sanitizer build)."""
  spec = importlib.util.spec_from_file_location("bert_tf._wordpiece", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  sys.modules["bert_tf._wordpiece"] = module


def random_char(rng: random.Random) -> str:
  """A code point, weighted towards ASCII and the ones where the rules change."""
  roll = rng.random()
  if roll < 0.3:
    return chr(rng.randrange(0x20, 0x7F))
  if roll < 0.55:
    return chr(rng.choice(NOTABLE))
  if roll < 0.65:
    return chr(rng.randrange(0x370, 0x400))  # Greek and Cyrillic: case, final sigma.
  if roll < 0.75:
    return chr(rng.randrange(0xAC00, 0xD7A4))  # Hangul syllables.
  return chr(rng.randrange(0x80, 0x110000 if roll < 0.9 else 0x3000))


def random_text(rng: random.Random, alphabet: Sequence[str]) -> str:
  """Mostly words from `alphabet` and separators, with random characters between."""
  shape = rng.random()
  if shape < 0.05:
    return rng.choice(["", " ", "\t\n", "\u3000", "\x0b", "\x00"])
  if shape < 0.1:  # One long word: past the 200-character limit, the word cache's key sizes.
    return rng.choice(alphabet) * rng.choice([199, 200, 201, 1000, 5000])
  parts = []
  for _ in range(rng.randrange(1, 40)):
    parts.append(rng.choice(alphabet) if rng.random() < 0.6 else random_char(rng))
    if rng.random() < 0.3:
      parts.append(rng.choice([" ", "  ", "\n", "\t", "\x0b", "\u00a0", "\u2028", ""]))
  return "".join(parts)


def random_vocab(rng: random.Random, directory: pathlib.Path, index: int) -> str:
  """A vocab file of specials, random words and ##pieces (some long, some odd)."""
  words = {"".join(random_char(rng) for _ in range(rng.randrange(1, 6))) for _ in range(400)}
  words = {w for w in words if w.strip() and "\n" not in w and "\r" not in w}
  pieces = sorted(words)
  tokens = SPECIALS + pieces[::2] + ["##" + p for p in pieces[1::2]]
  tokens += ["##", "#", "a" * 300, "##" + "b" * 70_000, "x", "##x", "한", "##국", "##어"]
  rng.shuffle(tokens)
  path = directory / f"vocab{index}.txt"
  # Surrogates cannot be written as UTF-8: such tokens become "?" (still a valid vocab line).
  path.write_text("\n".join(tokens) + "\n", encoding="utf-8", errors="replace")
  return str(path)


def compare(c, python, text) -> None:
  """Exits 1, printing the input, where the C and Python tokenizers differ."""
  for method in ("tokenize", "tokenize_to_ids"):
    got, want = getattr(c, method)(text), getattr(python, method)(text)
    if got != want:
      sys.exit(f"MISMATCH in {method} of {text!r}:\n  C:      {got[:50]}\n  Python: {want[:50]}")


def compare_joined(c, python, texts: List[str]) -> None:
  """Compares the C tokens of the texts joined by spaces with the Python tokens of each text.

  Every rule is local to the text between whitespace (tokenization.py's docstring), so the two
  agree; the Python side works text by text because its whole-text passes over megabytes are
  slow under the sanitizers (CPython's string growth reallocates there at every step).
  """
  want = [token for text in texts for token in python.tokenize(text)]
  joined = " ".join(texts)
  if c.tokenize(joined) != want or c.tokenize_to_ids(joined) != python.convert_tokens_to_ids(want):
    sys.exit(f"MISMATCH in tokenize or tokenize_to_ids of {len(texts)} texts joined: "
             f"{[text for text in texts if c.tokenize(text) != python.tokenize(text)][:3]!r}")


def compare_words(c, python, words: List[str]) -> None:
  got, want = c.tokenize_words(words), python.tokenize_words(words)
  if got != want:
    sys.exit(f"MISMATCH in tokenize_words of {words!r}")


def fuzz(seconds: float, seed: int, threads: int) -> Tuple[int, int]:
  """Runs random cases until `seconds` pass; returns how many vocabs and texts were compared."""
  from bert_tf import tokenization  # pylint: disable=import-outside-toplevel
  if tokenization._wordpiece is None:  # pylint: disable=protected-access
    sys.exit("bert_tf._wordpiece is not built: make tokenizer")
  rng = random.Random(seed)
  deadline = time.monotonic() + seconds
  compared = 0
  with tempfile.TemporaryDirectory() as directory:
    vocab = random_vocab(rng, pathlib.Path(directory), -1)
    for do_lower_case in (True, False):
      for text in REGRESSIONS:
        compare(tokenization.FullTokenizer(vocab, do_lower_case),
                tokenization.FullTokenizer(vocab, do_lower_case, compiled=False), text)
        compared += 1
    round_ = 0
    while time.monotonic() < deadline:
      vocab = random_vocab(rng, pathlib.Path(directory), round_)
      do_lower_case = rng.random() < 0.5

      def make(compiled: bool):
        return tokenization.FullTokenizer(vocab, do_lower_case, compiled=compiled)

      c, python = make(True), make(False)
      alphabet = list(tokenization.load_vocab(vocab)) + [
          "".join(random_char(rng) for _ in range(3)) for _ in range(50)]
      texts = [random_text(rng, alphabet) for _ in range(300)]
      for text in texts:
        compare(c, python, text)
        compared += 1
        if time.monotonic() > deadline:
          break
      compare_joined(c, python, texts)  # One large text.
      compare_words(c, python, texts[:50] + [""])
      # Many distinct words: the caches empty themselves, then refill.
      if round_ % 5 == 0 and time.monotonic() < deadline:
        many = [f"{rng.choice(alphabet)}{i}{random_char(rng)}" for i in range(CACHE_FILL)]
        compare_joined(c, python, many)
        compare_joined(c, python, many[:1000])
      # One tokenizer from several threads (callbacks release the GIL).
      if round_ % 3 == 0 and time.monotonic() < deadline:
        shared = make(True)
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
          results = list(pool.map(shared.tokenize, texts))
        if results != [python.tokenize(text) for text in texts]:
          sys.exit(f"MISMATCH with {threads} threads (seed {seed}, round {round_})")
      round_ += 1
  return round_, compared


def main(argv: Optional[List[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seconds", type=float, default=60.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--threads", type=int, default=8)
  parser.add_argument("--module", help="the _wordpiece extension to test (default: the built one)")
  parser.add_argument("--sanitize", action="store_true",
                      help="build the extension with ASan and UBSan and fuzz that build")
  args = parser.parse_args(argv)
  if args.sanitize:
    with tempfile.TemporaryDirectory() as directory:
      command = [sys.executable, __file__, "--module", build_sanitized(directory),
                 "--seconds", str(args.seconds), "--seed", str(args.seed),
                 "--threads", str(args.threads)]
      sys.exit(subprocess.run(command, env=sanitizer_environment(), check=False).returncode)
  sys.path.insert(0, str(PROJECT_ROOT))
  if args.module:
    load_module(args.module)
  started = time.monotonic()
  vocabs, compared = fuzz(args.seconds, args.seed, args.threads)
  print(f"wordpiece fuzz: {compared} texts over {vocabs} vocabs, C == Python, "
        f"{time.monotonic() - started:.0f} s, seed {args.seed}")


if __name__ == "__main__":
  main()
