"""KcBERT's cleaning recipe and the steps of clean_text shared by its local run and its Beam
pipeline (bert_tf.corpus.beam_pipelines): cleaning a file line by line, finding repeated lines by
8-byte hashes in bounded memory, merging the cleaned files. clean_text.py's docstring describes
the recipe and the run.
"""

import collections
import hashlib
import os
import re
import tempfile
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from bert_tf.io import files as io_files

gfile = io_files.gfile  # tf.io.gfile's functions; TensorFlow only for gs:// paths


# Emoji blocks (Unicode 15): pictographs, emoticons, transport, supplemental symbols, symbols and
# pictographs extended-A, regional indicators (flags), misc symbols, dingbats, plus the joiners
# that build emoji sequences (ZWJ U+200D, variation selector-16 U+FE0F, keycap U+20E3).
EMOJI_RANGES: Tuple[Tuple[int, int], ...] = (
    (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF),
    (0x1FA70, 0x1FAFF), (0x1F1E6, 0x1F1FF), (0x2600, 0x26FF), (0x2700, 0x27BF),
    (0x200D, 0x200D), (0xFE0F, 0xFE0F), (0x20E3, 0x20E3))

_EMOJI_CLASS = "".join(f"\\U{lo:08X}-\\U{hi:08X}" for lo, hi in EMOJI_RANGES)
_NOT_ALLOWED = re.compile(
    "[^ .,?!/@$%~％·∼()\\x00-\\x7Fㄱ-ㅣ가-힣" + _EMOJI_CLASS + "]+")
_URL = re.compile(r"https?://(www\.)?[-a-zA-Z0-9@:%._+~#=]{1,256}\.[a-zA-Z0-9()]{1,6}\b"
                  r"([-a-zA-Z0-9()@:%_+.~#?&/=]*)")
_REPEATS = re.compile(r"(.)\1{2,}")
_SPACES = re.compile(r"\s+")
MIN_LENGTH = 10
RECIPES = ("kcbert",)

# Per-rule counters, in report order.
RULES = ("lines_in", "blank_lines", "chars_replaced", "urls_removed", "repeats_collapsed",
         "dropped_short", "dropped_duplicate", "kept")


def clean_line_kcbert(line: str, counts: Optional[Dict[str, int]] = None) -> Optional[str]:
  """The cleaned line, or None when the short-line rule drops it (duplicates are not seen here)."""
  counts = counts if counts is not None else collections.Counter()
  text = _NOT_ALLOWED.sub(" ", line)
  counts["chars_replaced"] += text != line
  without_urls = _URL.sub("", text)
  counts["urls_removed"] += without_urls != text
  text = without_urls.strip()
  collapsed = _SPACES.sub(" ", _REPEATS.sub(r"\1\1", text)).strip()
  counts["repeats_collapsed"] += collapsed != text
  if len(collapsed) < MIN_LENGTH:
    counts["dropped_short"] += 1
    return None
  return collapsed


def read_lines(path: str) -> Iterator[str]:
  """The lines of a UTF-8 text file without their line ends; a decoding error names the file."""
  try:
    with gfile.GFile(path, "r") as f:
      for line in f:
        yield line.rstrip("\r\n")
  except UnicodeDecodeError:
    raise io_files.utf8_error(path) from None


def clean_file(path: str, output_path: str) -> Dict[str, int]:
  """Cleans one file line by line into `output_path` (blank lines kept); returns per-rule counts."""
  counts: Dict[str, int] = collections.Counter()
  with io_files.atomic_output(output_path) as tmp, gfile.GFile(tmp, "w") as out:
    for line in read_lines(path):
      counts["lines_in"] += 1
      if not line.strip():
        counts["blank_lines"] += 1
        out.write("\n")
        continue
      cleaned = clean_line_kcbert(line, counts)
      if cleaned is not None:
        out.write(cleaned + "\n")
  return dict(counts)


# Lines whose hashes are sorted at once when finding duplicates (16 bytes each: hash, line number),
# and at most how many such buckets (files open at once): memory stays the same from a few
# hundred thousand lines to 67M; beyond, buckets grow (4M lines, ~200 MB, at a billion).
LINES_PER_BUCKET = 1 << 18
MAX_BUCKETS = 256
# Lines hashed before their hashes are spilled to the buckets.
HASHES_PER_CHUNK = 1 << 18


def line_digest(line: str) -> bytes:
  """The 8-byte hash by which duplicate lines are found."""
  return hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest()


def _line_hashes(paths: Sequence[str]) -> Iterator[np.ndarray]:
  """8-byte hashes of the non-blank lines of `paths`, in order, HASHES_PER_CHUNK at a time."""
  digests = bytearray()  # 8 bytes a line (a list of bytes objects would take ~56)
  for path in paths:
    for line in read_lines(path):
      if line:
        digests += line_digest(line)
        if len(digests) == 8 * HASHES_PER_CHUNK:
          yield np.frombuffer(bytes(digests), "<u8")
          digests.clear()
  if digests:
    yield np.frombuffer(bytes(digests), "<u8")


def first_occurrences(paths: Sequence[str], expected_lines: int) -> np.ndarray:
  """For each non-blank line of `paths`, whether no line before it is the same, as packed bits
  (np.packbits' order: line i is bit 7 - i % 8 of byte i // 8; see unpack_flags).

  Lines are compared by 8-byte hashes, spilled to local bucket files by hash (as many buckets as
  `expected_lines` needs, up to MAX_BUCKETS) and sorted a bucket at a time: memory is 1 bit a
  line (11 MB for KcBERT's 89M lines) plus a bucket of LINES_PER_BUCKET lines and its sort, and
  a chunk of hashes being read.
  """
  num_buckets = min(MAX_BUCKETS, max(1, -(-expected_lines // LINES_PER_BUCKET)))
  entry = np.dtype([("hash", "<u8"), ("line", "<u8")])
  with tempfile.TemporaryDirectory() as scratch:
    buckets = [open(os.path.join(scratch, str(b)), "wb")  # pylint: disable=consider-using-with
               for b in range(num_buckets)]
    start = 0
    for hashes in _line_hashes(paths):
      entries = np.empty(len(hashes), entry)
      entries["hash"], entries["line"] = hashes, np.arange(start, start + len(hashes))
      start += len(hashes)
      # As intp: NumPy 2.1 (TF 2.19 caps numpy <2.2) refuses uint64 in np.bincount; 2.4 takes it.
      bucket = (hashes % num_buckets).astype(np.intp)
      entries = entries[np.argsort(bucket, kind="stable")]  # grouped by bucket, in line order
      sizes = np.bincount(bucket, minlength=num_buckets)
      ends = np.cumsum(sizes)
      for f, begin, end in zip(buckets, ends - sizes, ends):
        entries[begin:end].tofile(f)
    for f in buckets:
      f.close()
    first = np.full(-(-start // 8), 0xFF, np.uint8)
    for f in buckets:
      entries = np.fromfile(f.name, entry)
      order = np.argsort(entries["hash"], kind="stable")  # line order within equal hashes
      hashes = entries["hash"][order]
      repeats = entries["line"][order[1:][hashes[1:] == hashes[:-1]]]
      np.bitwise_and.at(first, repeats >> 3, ~(0x80 >> (repeats & 7)).astype(np.uint8))
  return first


def unpack_flags(packed: np.ndarray, chunk: int = HASHES_PER_CHUNK) -> Iterator[bool]:
  """The flags of first_occurrences' packed bits in line order (then its padding bits), a
  chunk at a time so that they never take a byte a line."""
  for begin in range(0, len(packed), chunk // 8):
    yield from np.unpackbits(packed[begin:begin + chunk // 8]).astype(bool).tolist()


def merge_unique(paths: Sequence[str], output_file: str, counts: Dict[str, int]) -> None:
  """Concatenates cleaned files in order, dropping repeated lines and repeated blank lines.

  Duplicates are found by 8-byte hashes in bounded memory (see first_occurrences), so the
  files are read twice.
  """
  num_lines = counts["lines_in"] - counts["blank_lines"] - counts["dropped_short"]
  write_merged(paths, output_file, counts, first_occurrences(paths, num_lines))


def write_merged(paths: Sequence[str], output_file: str, counts: Dict[str, int],
                 first: Optional[np.ndarray] = None) -> None:
  """Concatenates cleaned files in order into `output_file` (atomically), dropping repeated
  blank lines and, with `first` (first_occurrences' bits, one a non-blank line), the lines it
  does not flag."""
  keep = None if first is None else unpack_flags(first)
  with io_files.atomic_output(output_file) as tmp, gfile.GFile(tmp, "w") as out:
    last_blank = True  # no document break at the very start
    for path in paths:
      for line in read_lines(path):
        if not line:
          if not last_blank:
            out.write("\n")
          last_blank = True
          continue
        if keep is not None and not next(keep):
          counts["dropped_duplicate"] += 1
          continue
        counts["kept"] += 1
        out.write(line + "\n")
        last_blank = False


def check_some_text(file_pattern: str, counts: Dict[str, int]) -> None:
  """Fails when cleaning left no line (from the counts of every file)."""
  if counts["lines_in"] == counts["blank_lines"] + counts["dropped_short"]:
    raise ValueError(f"No text in {file_pattern} to clean: its {counts['lines_in']} lines are "
                     f"blank or shorter than {MIN_LENGTH} characters after cleaning.")
