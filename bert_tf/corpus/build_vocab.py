"""Learns a WordPiece vocab.txt from raw text with tensorflow-text's vocab learner.

Usage: python -m bert_tf.corpus.build_vocab --input_file=corpus*.txt --output_file=vocab.txt \
  --vocab_size=30000 --do_lower_case=False

Special tokens sit where google-research models expect them: [PAD]=0, then --num_unused
[unusedN] slots (99 gives Google's layout, [UNK]=100), then [UNK] [CLS] [SEP] [MASK].

--sample_fraction learns from a random share of the lines (KcBERT used 1/10 of its corpus);
--held_out_fraction of the lines, at most --held_out_lines, are never learned from but tokenized
with the result (FullTokenizer) to report the [UNK] rate and the WordPiece tokens per word,
written beside the vocab as JSON. A vocab that comes out far smaller than --vocab_size (too little
text) is warned about.
"""

import os
import random
from typing import Dict, Iterable, List, Tuple

import tensorflow as tf
from absl import app, flags, logging
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as vocab_learner

from bert_tf import tokenization
from bert_tf.cli import flags as cli_flags
from bert_tf.data import pipeline as input_pipeline
from bert_tf.io import gcs, files as io_files

SPECIAL_TOKENS = ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
DEFAULT_HELD_OUT_FRACTION = 0.1
MAX_HELD_OUT_FRACTION = 0.5  # at least half of the text is always learned from
# The learner stops within a few percent of vocab_size when the text allows; a vocab below this
# share of it means the text ran out of WordPieces frequent enough to keep.
SMALL_VOCAB_SHARE = 0.8
# tensorflow-text's default lower_thresh: a WordPiece is kept only if it occurs this often.
_LEARNER_MIN_COUNT = 10


def reserved_tokens(num_unused: int) -> List[str]:
  """[PAD], the [unusedN] slots, then [UNK] [CLS] [SEP] [MASK]."""
  return ["[PAD]", *(f"[unused{i}]" for i in range(num_unused)), *SPECIAL_TOKENS]


def learn_vocab(lines: Iterable[str], vocab_size: int, do_lower_case: bool,
                num_unused: int = 0) -> List[str]:
  """The WordPiece vocab (reserved tokens first) learned from `lines`."""
  texts = [line.strip() for line in lines if line.strip()]
  if not texts:
    raise ValueError("No text to learn a vocab from.")
  dataset = tf.data.Dataset.from_tensor_slices(texts).batch(1000)
  vocab = vocab_learner.bert_vocab_from_dataset(
      dataset, vocab_size=vocab_size, reserved_tokens=reserved_tokens(num_unused),
      bert_tokenizer_params=dict(lower_case=do_lower_case))
  warn_if_small(len(vocab), vocab_size, len(texts))
  return vocab


def warn_if_small(size: int, vocab_size: int, num_lines: int) -> None:
  """Warns, with the numbers and the fix, when the learner returned far fewer tokens than asked:
  the text was too small, and a model built with vocab_size=`vocab_size` would waste the rest."""
  if size < SMALL_VOCAB_SHARE * vocab_size:
    logging.warning(
        "The vocab has %d tokens, far fewer than --vocab_size=%d: %d lines hold too few "
        "WordPieces that occur at least %d times. Learn from more text (a larger corpus, "
        "--sample_fraction=1, a smaller --held_out_fraction) or ask for --vocab_size=%d, and set "
        "vocab_size in bert_config.json to the vocab's size.", size, vocab_size, num_lines,
        _LEARNER_MIN_COUNT, size)


def read_lines(file_pattern: str) -> List[str]:
  """All lines of the files matching a comma-separated list of globs."""
  lines = []
  for path in input_pipeline.list_files(file_pattern):
    try:
      with tf.io.gfile.GFile(path, "r") as f:
        lines.extend(f.read().splitlines())
    except UnicodeDecodeError:
      raise io_files.utf8_error(path) from None
  return lines


def split_lines(lines: List[str], sample_fraction: float, held_out_lines: int,
                seed: int = 12345, held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION
                ) -> Tuple[List[str], List[str]]:
  """(lines to learn from: a `sample_fraction` share of the rest, held-out lines: a
  `held_out_fraction` share, at most `held_out_lines`), chosen by `seed`. Blank lines are
  dropped."""
  if not 0 < sample_fraction <= 1:
    raise ValueError(f"--sample_fraction={sample_fraction} must be in (0, 1].")
  if not 0 <= held_out_fraction <= MAX_HELD_OUT_FRACTION:
    raise ValueError(f"--held_out_fraction={held_out_fraction} must be in "
                     f"[0, {MAX_HELD_OUT_FRACTION}]: the vocab is learned from the rest.")
  if held_out_lines < 0:
    raise ValueError(f"--held_out_lines={held_out_lines} must be 0 or more.")
  lines = [line for line in lines if line.strip()]
  order = list(range(len(lines)))
  rng = random.Random(seed)
  rng.shuffle(order)
  held = set(order[:min(held_out_lines, int(len(lines) * held_out_fraction))])
  rest = [i for i in range(len(lines)) if i not in held]
  learn = [lines[i] for i in rest if rng.random() < sample_fraction]
  return learn, [lines[i] for i in sorted(held)]


def tokenization_report(vocab_file: str, do_lower_case: bool, lines: Iterable[str]
                        ) -> Dict[str, float]:
  """[UNK] rate (of WordPiece tokens) and tokens per word when `vocab_file` tokenizes `lines`."""
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case)
  words = tokens = unknown = 0
  for line in lines:
    for word in tokenizer.basic_tokenizer.tokenize(line):
      pieces = tokenizer.tokenize(word)
      words += 1
      tokens += len(pieces)
      unknown += pieces.count("[UNK]")
  return dict(held_out_words=words, unk_rate=unknown / max(tokens, 1),
              tokens_per_word=tokens / max(words, 1))


def write_vocab(vocab: List[str], output_file: str) -> None:
  """Writes vocab.txt (one token a line) atomically."""
  io_files.write_text_atomic(output_file, "".join(token + "\n" for token in vocab))


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("input_file", None, "Comma-separated globs of raw text, one sentence a line.")
  flags.DEFINE_string("output_file", None, "Where to write vocab.txt.")
  flags.DEFINE_integer("vocab_size", 30000, "Target vocab size (the learner may return fewer).")
  flags.DEFINE_bool("do_lower_case", False, "Learn an uncased vocab (lowercased, accents "
                    "stripped).")
  flags.DEFINE_integer("num_unused", 0, "[unusedN] slots after [PAD] (99 = Google's layout).")
  flags.DEFINE_float("sample_fraction", 1.0, "Share of the lines to learn from (KcBERT: 0.1).")
  flags.DEFINE_float("held_out_fraction", DEFAULT_HELD_OUT_FRACTION, "Share of the lines kept "
                     "out of learning, to report the [UNK] rate and tokens per word of the "
                     f"result (at most --held_out_lines; at most {MAX_HELD_OUT_FRACTION}).")
  flags.DEFINE_integer("held_out_lines", 1000, "The most lines held out (see "
                       "--held_out_fraction).")
  flags.DEFINE_integer("seed", 12345, "Seed for the sample and the held-out lines.")
  flags.mark_flags_as_required(["input_file", "output_file"])


def check_files(input_file: str, output_file: str) -> None:
  """Fails before any learning when no input matches or --output_file cannot be written."""
  if tf.io.gfile.isdir(output_file):
    raise ValueError(f"--output_file={output_file} is a directory: name the vocab file to "
                     f"write, e.g. --output_file={os.path.join(output_file, 'vocab.txt')}.")
  gcs.check_inputs_and_output({"input_file": input_file}, "output_file",
                              os.path.dirname(output_file))


def main(_) -> None:
  with cli_flags.user_errors():  # a bad flag or file: one line, no traceback
    check_files(FLAGS.input_file, FLAGS.output_file)
    learn, held_out = split_lines(read_lines(FLAGS.input_file), FLAGS.sample_fraction,
                                  FLAGS.held_out_lines, FLAGS.seed, FLAGS.held_out_fraction)
    vocab = learn_vocab(learn, FLAGS.vocab_size, FLAGS.do_lower_case, FLAGS.num_unused)
    write_vocab(vocab, FLAGS.output_file)
    logging.info("Wrote %d tokens to %s (learned from %d lines, %d held out)", len(vocab),
                 FLAGS.output_file, len(learn), len(held_out))
    if held_out:
      report = tokenization_report(FLAGS.output_file, FLAGS.do_lower_case, held_out)
      io_files.write_json_atomic(FLAGS.output_file + ".report.json", report)
      logging.info("On %d held-out lines: [UNK] rate %.4f, %.2f tokens per word.", len(held_out),
                   report["unk_rate"], report["tokens_per_word"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
