"""build_vocab: sampling, held-out lines and the [UNK]/tokens-per-word report on real Korean."""

import json

import pytest
from absl.testing import flagsaver

from benchmarks.pretraining_data import write_korean_corpus
from bert_tf import build_vocab, tokenization
from tests.conftest import shared_path


def test_split_lines_samples_and_holds_out_deterministically():
  lines = [f"line {i}" for i in range(1000)] + ["", "  "]
  learn, held = build_vocab.split_lines(lines, 0.1, 50, seed=1)
  assert len(held) == 50 and not set(held) & set(learn)
  assert 60 < len(learn) < 140 and (learn, held) == build_vocab.split_lines(lines, 0.1, 50, 1)
  with pytest.raises(ValueError, match="sample_fraction"):
    build_vocab.split_lines(lines, 0.0, 10)


def test_vocab_from_korean_sample_tokenizes_held_out_text(tmp_path):
  corpus = shared_path("corpus_ko")
  write_korean_corpus(str(tmp_path / "ko.txt"), max_lines=3000, corpus=corpus)
  output = tmp_path / "vocab.txt"
  build_vocab.define_flags()
  with flagsaver.flagsaver(input_file=str(tmp_path / "ko.txt"), output_file=str(output),
                           vocab_size=2000, do_lower_case=False, sample_fraction=0.5,
                           held_out_lines=200):
    build_vocab.FLAGS.mark_as_parsed()
    build_vocab.main(None)
  vocab = tokenization.load_vocab(str(output))
  assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
  report = json.loads((tmp_path / "vocab.txt.report.json").read_text())
  assert report["held_out_words"] > 1000
  assert report["unk_rate"] < 0.02 and 1.0 < report["tokens_per_word"] < 3.5
