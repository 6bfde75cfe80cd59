"""Learns a WordPiece vocab.txt from raw text with tensorflow-text's vocab learner.

Usage: python -m bert_tf.build_vocab --input_file=corpus*.txt --output_file=vocab.txt \
  --vocab_size=30000 --do_lower_case=False

Special tokens sit where google-research models expect them: [PAD]=0, then --num_unused
[unusedN] slots (99 gives Google's layout, [UNK]=100), then [UNK] [CLS] [SEP] [MASK].
"""

from typing import Iterable, List

import tensorflow as tf
from absl import app, flags, logging
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as vocab_learner

from bert_tf import input_pipeline, io_utils

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


def write_vocab(vocab: List[str], output_file: str) -> None:
  io_utils.write_text_atomic(output_file, "".join(token + "\n" for token in vocab))


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("input_file", None, "Comma-separated globs of raw text, one sentence a line.")
  flags.DEFINE_string("output_file", None, "Where to write vocab.txt.")
  flags.DEFINE_integer("vocab_size", 30000, "Target vocab size (the learner may return fewer).")
  flags.DEFINE_bool("do_lower_case", False, "Learn an uncased vocab (lowercased, accents stripped).")
  flags.DEFINE_integer("num_unused", 0, "[unusedN] slots after [PAD] (99 = Google's layout).")
  flags.mark_flags_as_required(["input_file", "output_file"])


def main(_) -> None:
  vocab = learn_vocab(read_lines(FLAGS.input_file), FLAGS.vocab_size, FLAGS.do_lower_case,
                      FLAGS.num_unused)
  write_vocab(vocab, FLAGS.output_file)
  logging.info("Wrote %d tokens to %s", len(vocab), FLAGS.output_file)


if __name__ == "__main__":
  define_flags()
  app.run(main)
