"""The Hugging Face side of tokenization.py: tokens a second of the Rust WordPiece tokenizers.

Runs in a virtual environment with `tokenizers` and `transformers` (no TensorFlow), on texts that
tokenization.py wrote to a JSON job file, and writes the median seconds of each tokenizer and the
tokens of the first one back. Each tokenizer encodes the whole list in one batch call, which uses
every core (Rust threads), and its output is a list of ids per text, as bert_tf's and
google-research's are in tokenization.py; no special tokens are added. `encode_batch_fast` is
tokenizers' fastest path to ids (it skips the character offsets).

Usage: python hf_tokenize.py JOB.json OUTPUT.json
"""

import json
import os
import statistics
import sys
import time

from tokenizers import BertWordPieceTokenizer
from transformers import BertTokenizerFast


def _median_seconds(encode, texts, repeats):
  timings = []
  for _ in range(repeats):
    started = time.perf_counter()
    encode(texts)
    timings.append(time.perf_counter() - started)
  return statistics.median(timings)


def main(job_path, output_path):
  with open(job_path, encoding="utf-8") as f:
    job = json.load(f)
  texts, lowercase = job["texts"], job["lowercase"]
  word_piece = BertWordPieceTokenizer(job["vocab"], lowercase=lowercase)
  fast = BertTokenizerFast(vocab_file=job["vocab"], do_lower_case=lowercase)
  encoded = word_piece.encode_batch(texts, add_special_tokens=False)
  result = dict(
      tokens=[encoding.tokens for encoding in encoded],
      seconds={
          "HF tokenizers BertWordPieceTokenizer": _median_seconds(
              lambda t: [e.ids for e in word_piece.encode_batch(t, add_special_tokens=False)],
              texts, job["repeats"]),
          "HF tokenizers BertWordPieceTokenizer (encode_batch_fast)": _median_seconds(
              lambda t: [e.ids for e in word_piece._tokenizer.encode_batch_fast(  # pylint: disable=protected-access
                  t, add_special_tokens=False)], texts, job["repeats"]),
          "HF transformers BertTokenizerFast": _median_seconds(
              lambda t: fast(t, add_special_tokens=False)["input_ids"], texts, job["repeats"]),
      },
      threads=os.cpu_count(), versions=dict(tokenizers=sys.modules["tokenizers"].__version__,
                                            transformers=sys.modules["transformers"].__version__))
  with open(output_path, "w", encoding="utf-8") as f:
    json.dump(result, f, ensure_ascii=False)


if __name__ == "__main__":
  main(*sys.argv[1:])
