"""build_vocab: sampling, held-out lines and the [UNK]/tokens-per-word report on real Korean."""

import json
import logging

import pytest
from absl.testing import flagsaver

from benchmarks.pretraining_data import write_korean_corpus
from bert_tf import tokenization
from bert_tf.corpus import build_vocab
from tests import processes
from tests.conftest import shared_path


def test_split_lines_samples_and_holds_out_deterministically():
  lines = [f"line {i}" for i in range(1000)] + ["", "  "]
  learn, held = build_vocab.split_lines(lines, 0.1, 50, seed=1)
  assert len(held) == 50 and not set(held) & set(learn)
  assert 60 < len(learn) < 140 and (learn, held) == build_vocab.split_lines(lines, 0.1, 50, 1)
  with pytest.raises(ValueError, match="sample_fraction"):
    build_vocab.split_lines(lines, 0.0, 10)


def test_held_out_lines_are_a_fraction_of_a_small_corpus():
  lines = [f"line {i}" for i in range(1353)]
  learn, held = build_vocab.split_lines(lines, 1.0, 1000)  # the issue: 1,000 of 1,353 held out
  assert (len(held), len(learn)) == (135, 1218)
  learn, held = build_vocab.split_lines(lines * 20, 1.0, 1000)  # a larger corpus: the cap
  assert len(held) == 1000
  assert len(build_vocab.split_lines(lines, 1.0, 1000, held_out_fraction=0.5)[1]) == 676
  with pytest.raises(ValueError, match=r"--held_out_fraction=0.9 must be in \[0, 0.5\]"):
    build_vocab.split_lines(lines, 1.0, 1000, held_out_fraction=0.9)


def test_small_vocab_is_warned_about_with_the_numbers_and_the_fix(caplog):
  with caplog.at_level(logging.WARNING):
    build_vocab.warn_if_small(1900, 2000, 5000)  # within the learner's slack: no warning
    assert not caplog.records
    build_vocab.warn_if_small(805, 2000, 353)
  message = caplog.records[0].getMessage()
  assert "805 tokens, far fewer than --vocab_size=2000: 353 lines" in message
  assert "Learn from more text" in message and "--vocab_size=805" in message


def _define_flags():
  if "held_out_fraction" not in build_vocab.FLAGS:
    build_vocab.define_flags()


def test_vocab_from_korean_sample_tokenizes_held_out_text(tmp_path):
  corpus = shared_path("corpus_ko")
  write_korean_corpus(str(tmp_path / "ko.txt"), max_lines=3000, corpus=corpus)
  output = tmp_path / "vocab.txt"
  _define_flags()
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


def test_small_korean_corpus_learns_from_most_lines_and_warns(tmp_path, caplog):
  write_korean_corpus(str(tmp_path / "ko.txt"), max_lines=1353, corpus=shared_path("corpus_ko"))
  _define_flags()
  with flagsaver.flagsaver(input_file=str(tmp_path / "ko.txt"),
                           output_file=str(tmp_path / "vocab.txt"), vocab_size=2000,
                           held_out_lines=1000), caplog.at_level(logging.INFO):
    build_vocab.FLAGS.mark_as_parsed()
    build_vocab.main(None)
  messages = [record.getMessage() for record in caplog.records]
  assert any("(learned from 1097 lines, 121 held out)" in m for m in messages), messages
  size = len(tokenization.load_vocab(str(tmp_path / "vocab.txt")))
  assert size < 1600 and any(f"The vocab has {size} tokens, far fewer than --vocab_size=2000"
                             in m for m in messages), messages


def test_output_file_that_is_a_directory_is_one_error_line(tmp_path):
  (tmp_path / "in.txt").write_text("some text\n")
  error = processes.user_error("-m", "bert_tf.corpus.build_vocab",
                               f"--input_file={tmp_path / 'in.txt'}", f"--output_file={tmp_path}")
  assert error == (f"error: --output_file={tmp_path} is a directory: name the vocab file to "
                   f"write, e.g. --output_file={tmp_path / 'vocab.txt'}.")
  with pytest.raises(ValueError, match=r"--input_file=.*missing.txt: nothing exists"):
    build_vocab.check_files(str(tmp_path / "missing.txt"), str(tmp_path / "vocab.txt"))
  with pytest.raises(ValueError, match=r"--output_file=.*in.txt is not writable"):
    build_vocab.check_files(str(tmp_path / "in.txt"), str(tmp_path / "in.txt" / "vocab.txt"))


def test_cp949_input_names_the_file_line_and_the_iconv_fix(tmp_path):
  text = tmp_path / "comments.txt"
  text.write_bytes("The first line is English.\n한국어 문장입니다.\n".encode("cp949"))
  error = processes.user_error("-m", "bert_tf.corpus.build_vocab", f"--input_file={text}",
                               f"--output_file={tmp_path / 'vocab.txt'}")
  assert error.startswith(f"error: {text}, line 2: not valid UTF-8")
  assert error.endswith(f"`iconv -f cp949 -t utf-8 {text} > {tmp_path / 'comments.utf8.txt'}`, "
                        "and use that file.")
  assert not (tmp_path / "vocab.txt").exists()
