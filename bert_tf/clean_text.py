"""Cleans raw text for pretraining; --clean=kcbert is KcBERT's recipe.

Usage: python -m bert_tf.clean_text --input_file=comments*.txt --output_file=clean.txt \
  --clean=kcbert --num_workers=4

The kcbert recipe, applied to each line in this order:
  1. every run of characters other than ASCII, Hangul (ㄱ-ㅣ, 가-힣), ` .,?!/@$%~％·∼()` and
     emoji becomes one space (emoji = the Unicode ranges in EMOJI_RANGES; no extra package);
  2. URLs (http:// or https://) are removed;
  3. the line is stripped;
  4. any character repeated more than twice is cut to two (ㅋㅋㅋㅋ -> ㅋㅋ, !!!! -> !!,
     .... -> ..): soynlp's repeat_normalize(num_repeats=2), which KcBERT used, does this for
     letters, and here it applies to every character; runs of whitespace become one space;
  5. lines shorter than 10 characters are dropped; 6. exact duplicates are dropped (the first
     occurrence is kept, across all input files; found by 8-byte hashes in bounded memory: a
     bit a line plus a fixed ~10 MB up to 67M lines, see first_occurrences).
Blank input lines are document breaks for create_pretraining_data: they are kept (runs of them
become one) and never counted as short or duplicate. Files are cleaned in parallel, one file per
task, then merged in input order with the duplicate filter; the output is written atomically.
With --runner (e.g. DataflowRunner; Beam's options after `--`), an Apache Beam pipeline does the
same and writes the same file (bert_tf.beam_pipelines).
"""

import collections
import hashlib
import multiprocessing
import os
import re
import tempfile
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
from absl import app, flags, logging

from bert_tf import beam_flags, io_utils, script_errors

gfile = io_utils.gfile  # tf.io.gfile's functions; TensorFlow only for gs:// paths

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


def _read_lines(path: str) -> Iterator[str]:
  try:
    with gfile.GFile(path, "r") as f:
      for line in f:
        yield line.rstrip("\r\n")
  except UnicodeDecodeError:
    raise io_utils.utf8_error(path) from None


def clean_file(path: str, output_path: str) -> Dict[str, int]:
  """Cleans one file line by line into `output_path` (blank lines kept); returns per-rule counts."""
  counts: Dict[str, int] = collections.Counter()
  with io_utils.atomic_output(output_path) as tmp, gfile.GFile(tmp, "w") as out:
    for line in _read_lines(path):
      counts["lines_in"] += 1
      if not line.strip():
        counts["blank_lines"] += 1
        out.write("\n")
        continue
      cleaned = clean_line_kcbert(line, counts)
      if cleaned is not None:
        out.write(cleaned + "\n")
  return dict(counts)


def _clean_file_task(args: Tuple[str, str]) -> Dict[str, int]:
  return clean_file(*args)


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
    for line in _read_lines(path):
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
  with io_utils.atomic_output(output_file) as tmp, gfile.GFile(tmp, "w") as out:
    last_blank = True  # no document break at the very start
    for path in paths:
      for line in _read_lines(path):
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


def clean_files(file_pattern: str, output_file: str, recipe: str = "kcbert",
                num_workers: int = 1, beam_options: Optional[Any] = None) -> Dict[str, int]:
  """Cleans every file matching `file_pattern` into `output_file`; returns per-rule counts.

  With `beam_options` (apache_beam PipelineOptions), a Beam pipeline does it (see
  bert_tf.beam_pipelines.clean_files); the output is the same.
  """
  if recipe not in RECIPES:
    raise ValueError(f"Unknown cleaning recipe {recipe!r}; choose one of {', '.join(RECIPES)}.")
  files = io_utils.list_files(file_pattern)
  io_utils.check_writable(os.path.dirname(output_file), "output_file", output_file)
  if beam_options is not None:
    from bert_tf import beam_pipelines  # pylint: disable=import-outside-toplevel  (imports Beam)
    counts = beam_pipelines.clean_files(file_pattern, files, output_file, beam_options)
    return {rule: counts.get(rule, 0) for rule in RULES}
  parts = [io_utils.temporary_path(f"{output_file}.part{i:05d}") for i in range(len(files))]
  counts: Dict[str, int] = collections.Counter()
  try:
    tasks = list(zip(files, parts))
    if num_workers > 1 and len(files) > 1:
      with multiprocessing.get_context("fork").Pool(min(num_workers, len(files))) as pool:
        results = pool.map(_clean_file_task, tasks, chunksize=1)
    else:
      results = [clean_file(*task) for task in tasks]
    for result in results:
      counts.update(result)
    check_some_text(file_pattern, counts)
    merge_unique(parts, output_file, counts)
  finally:
    for part in parts:
      if gfile.exists(part):
        gfile.remove(part)
  return {rule: counts.get(rule, 0) for rule in RULES}


def format_report(counts: Dict[str, int]) -> str:
  """One line per rule, for the log."""
  return "\n".join(f"  {rule:<18} {counts[rule]:>12,}" for rule in RULES)


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("input_file", None, "Comma-separated globs of raw text (local or gs://).")
  flags.DEFINE_string("output_file", None, "Where to write the cleaned text (one file).")
  flags.DEFINE_enum("clean", "kcbert", list(RECIPES), "Cleaning recipe.")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Processes, one input file each.")
  beam_flags.define_flags()
  flags.mark_flags_as_required(["input_file", "output_file"])


def main(argv: Sequence[str]) -> None:
  # A bad flag or file: one line, no traceback. Arguments after `--` are Beam's (with --runner).
  with script_errors.user_errors(None if FLAGS.runner else argv):
    beam_options = beam_flags.pipeline_options(argv)
    counts = clean_files(FLAGS.input_file, FLAGS.output_file, FLAGS.clean, FLAGS.num_workers,
                         beam_options)
    logging.info("Cleaned (%s) into %s:\n%s", FLAGS.clean, FLAGS.output_file, format_report(counts))


if __name__ == "__main__":
  define_flags()
  app.run(main)
