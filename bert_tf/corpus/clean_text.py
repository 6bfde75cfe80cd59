"""Cleans raw text for pretraining; --clean=kcbert is KcBERT's recipe.

Usage: python -m bert_tf.corpus.clean_text --input_file=comments*.txt --output_file=clean.txt \
  --clean=kcbert --num_workers=4

The kcbert recipe, applied to each line in this order:
  1. every run of characters other than ASCII, Hangul (ㄱ-ㅣ, 가-힣), ` .,?!/@$%~％·∼()` and
     emoji becomes one space (emoji = the Unicode ranges in cleaning.EMOJI_RANGES, no package);
  2. URLs (http:// or https://) are removed;
  3. the line is stripped;
  4. any character repeated more than twice is cut to two (ㅋㅋㅋㅋ -> ㅋㅋ, !!!! -> !!,
     .... -> ..): soynlp's repeat_normalize(num_repeats=2), which KcBERT used, does this for
     letters, and here it applies to every character; runs of whitespace become one space;
  5. lines shorter than 10 characters are dropped; 6. exact duplicates are dropped (the first
     occurrence is kept, across all input files; found by 8-byte hashes in bounded memory: a
     bit a line plus a fixed ~10 MB up to 67M lines, see cleaning.first_occurrences).
Blank input lines are document breaks for create_pretraining_data: they are kept (runs of them
become one) and never counted as short or duplicate. Files are cleaned in parallel, one file per
task, then merged in input order with the duplicate filter; the output is written atomically.
With --runner (e.g. DataflowRunner; Beam's options after `--`), an Apache Beam pipeline does the
same and writes the same file (bert_tf.corpus.beam_pipelines).
"""

import collections
import multiprocessing
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from absl import app, flags, logging

from bert_tf.cli import errors as cli_errors
from bert_tf.corpus import beam_flags, cleaning
from bert_tf.io import files as io_files, writable

gfile = io_files.gfile  # tf.io.gfile's functions; TensorFlow only for gs:// paths


def _clean_file_task(args: Tuple[str, str]) -> Dict[str, int]:
  return cleaning.clean_file(*args)


def clean_files(file_pattern: str, output_file: str, recipe: str = "kcbert",
                num_workers: int = 1, beam_options: Optional[Any] = None) -> Dict[str, int]:
  """Cleans every file matching `file_pattern` into `output_file`; returns per-rule counts.

  With `beam_options` (apache_beam PipelineOptions), a Beam pipeline does it (see
  bert_tf.corpus.beam_pipelines.clean_files); the output is the same.
  """
  if recipe not in cleaning.RECIPES:
    raise ValueError(f"Unknown cleaning recipe {recipe!r}; choose one of "
                     f"{', '.join(cleaning.RECIPES)}.")
  files = io_files.list_files(file_pattern)
  writable.check_writable(os.path.dirname(output_file), "output_file", output_file)
  if beam_options is not None:
    # Apache Beam, imported with --runner only.
    from bert_tf.corpus import beam_pipelines  # pylint: disable=import-outside-toplevel
    counts = beam_pipelines.clean_files(file_pattern, files, output_file, beam_options)
    return {rule: counts.get(rule, 0) for rule in cleaning.RULES}
  parts = [io_files.temporary_path(f"{output_file}.part{i:05d}") for i in range(len(files))]
  counts: Dict[str, int] = collections.Counter()
  try:
    tasks = list(zip(files, parts))
    if num_workers > 1 and len(files) > 1:
      with multiprocessing.get_context("fork").Pool(min(num_workers, len(files))) as pool:
        results = pool.map(_clean_file_task, tasks, chunksize=1)
    else:
      results = [cleaning.clean_file(*task) for task in tasks]
    for result in results:
      counts.update(result)
    cleaning.check_some_text(file_pattern, counts)
    cleaning.merge_unique(parts, output_file, counts)
  finally:
    for part in parts:
      if gfile.exists(part):
        gfile.remove(part)
  return {rule: counts.get(rule, 0) for rule in cleaning.RULES}


def format_report(counts: Dict[str, int]) -> str:
  """One line per rule, for the log."""
  return "\n".join(f"  {rule:<18} {counts[rule]:>12,}" for rule in cleaning.RULES)


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("input_file", None, "Comma-separated globs of raw text (local or gs://).")
  flags.DEFINE_string("output_file", None, "Where to write the cleaned text (one file).")
  flags.DEFINE_enum("clean", "kcbert", list(cleaning.RECIPES), "Cleaning recipe.")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Processes, one input file each.")
  beam_flags.define_flags()
  flags.mark_flags_as_required(["input_file", "output_file"])


def main(argv: Sequence[str]) -> None:
  # A bad flag or file: one line, no traceback. Arguments after `--` are Beam's (with --runner).
  with cli_errors.user_errors(None if FLAGS.runner else argv):
    beam_options = beam_flags.pipeline_options(argv)
    counts = clean_files(FLAGS.input_file, FLAGS.output_file, FLAGS.clean, FLAGS.num_workers,
                         beam_options)
    logging.info("Cleaned (%s) into %s:\n%s", FLAGS.clean, FLAGS.output_file, format_report(counts))


if __name__ == "__main__":
  define_flags()
  app.run(main)
