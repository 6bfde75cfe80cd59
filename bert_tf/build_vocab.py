"""Learns a WordPiece vocab.txt from raw text with tensorflow-text's vocab learner.

Usage: python -m bert_tf.build_vocab --input_file=corpus*.txt --output_file=vocab.txt \
  --vocab_size=30000 --do_lower_case=False

Special tokens sit where google-research models expect them: [PAD]=0, then --num_unused
[unusedN] slots (99 gives Google's layout, [UNK]=100), then [UNK] [CLS] [SEP] [MASK].

--sample_fraction learns from a random share of the lines (KcBERT used 1/10 of its corpus);
--held_out_lines lines, never learned from, are tokenized with the result (FullTokenizer) to
report the [UNK] rate and the WordPiece tokens per word, written beside the vocab as JSON.
"""

import random
from typing import Dict, Iterable, List, Tuple

import tensorflow as tf
from absl import app, flags, logging
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as vocab_learner

from bert_tf import io_utils, script_flags, tokenization
from bert_tf.data import pipeline as input_pipeline

SPECIAL_TOKENS = ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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
  return vocab_learner.bert_vocab_from_dataset(
      dataset, vocab_size=vocab_size, reserved_tokens=reserved_tokens(num_unused),
      bert_tokenizer_params=dict(lower_case=do_lower_case))


def read_lines(file_pattern: str) -> List[str]:
  """All lines of the files matching a comma-separated list of globs."""
  lines = []
  for path in input_pipeline.list_files(file_pattern):
    with tf.io.gfile.GFile(path, "r") as f:
      lines.extend(f.read().splitlines())
  return lines


def split_lines(lines: List[str], sample_fraction: float, held_out_lines: int,
                seed: int = 12345) -> Tuple[List[str], List[str]]:
  """(lines to learn from: a `sample_fraction` share, held-out lines), chosen by `seed`."""
  if not 0 < sample_fraction <= 1:
    raise ValueError(f"--sample_fraction={sample_fraction} must be in (0, 1].")
  lines = [line for line in lines if line.strip()]
  order = list(range(len(lines)))
  rng = random.Random(seed)
  rng.shuffle(order)
  held = set(order[:held_out_lines])
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
  io_utils.write_text_atomic(output_file, "".join(token + "\n" for token in vocab))


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("input_file", None, "Comma-separated globs of raw text, one sentence a line.")
  flags.DEFINE_string("output_file", None, "Where to write vocab.txt.")
  flags.DEFINE_integer("vocab_size", 30000, "Target vocab size (the learner may return fewer).")
  flags.DEFINE_bool("do_lower_case", False, "Learn an uncased vocab (lowercased, accents "
                    "stripped).")
  flags.DEFINE_integer("num_unused", 0, "[unusedN] slots after [PAD] (99 = Google's layout).")
  flags.DEFINE_float("sample_fraction", 1.0, "Share of the lines to learn from (KcBERT: 0.1).")
  flags.DEFINE_integer("held_out_lines", 1000, "Lines kept out of learning, to report the [UNK] "
                       "rate and tokens per word of the result.")
  flags.DEFINE_integer("seed", 12345, "Seed for the sample and the held-out lines.")
  flags.mark_flags_as_required(["input_file", "output_file"])


def main(_) -> None:
  with script_flags.user_errors():  # a bad flag or file: one line, no traceback
    learn, held_out = split_lines(read_lines(FLAGS.input_file), FLAGS.sample_fraction,
                                  FLAGS.held_out_lines, FLAGS.seed)
    vocab = learn_vocab(learn, FLAGS.vocab_size, FLAGS.do_lower_case, FLAGS.num_unused)
    write_vocab(vocab, FLAGS.output_file)
    logging.info("Wrote %d tokens to %s (learned from %d lines)", len(vocab), FLAGS.output_file,
                 len(learn))
    if held_out:
      report = tokenization_report(FLAGS.output_file, FLAGS.do_lower_case, held_out)
      io_utils.write_json_atomic(FLAGS.output_file + ".report.json", report)
      logging.info("On %d held-out lines: [UNK] rate %.4f, %.2f tokens per word.", len(held_out),
                   report["unk_rate"], report["tokens_per_word"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
