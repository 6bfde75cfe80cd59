"""clean_text: KcBERT's recipe rule by rule, file merging, duplicates and the per-rule counts."""

import collections
import random

import numpy as np
from hypothesis import given, settings, strategies as st
import pytest

from bert_tf.corpus import clean_text, cleaning
from tests import processes
from tests.conftest import PROJECT_ROOT


def test_kcbert_rules():
  counts = collections.Counter()
  clean = lambda line: cleaning.clean_line_kcbert(line, counts)  # noqa: E731
  assert clean("ㅋㅋㅋㅋㅋ 진짜 웃기네요ㅋㅋㅋ 😂😂 좋아요") == "ㅋㅋ 진짜 웃기네요ㅋㅋ 😂😂 좋아요"
  assert clean("漢字 섞인 文章 문장입니다 정말로!!!") == "섞인 문장입니다 정말로!!"
  assert clean("링크 https://www.example.com/a?b=1 참고하세요 ％·∼") == "링크 참고하세요 ％·∼"
  assert clean("  αβγ English (text) here  ") == "English (text) here"
  assert clean("짧은 글") is None
  assert counts == {"chars_replaced": 2, "urls_removed": 1, "repeats_collapsed": 3,
                    "dropped_short": 1}


def test_help_speaks_to_users():
  """--help shows the module docstring: it describes the tool, not the history of its making."""
  assert "issue" not in clean_text.__doc__ and "repeat_normalize" in clean_text.__doc__


def test_any_character_repeated_more_than_twice_becomes_two():
  clean = cleaning.clean_line_kcbert
  assert clean("와 대박이다ㅋㅋㅋㅋ!!!!....???~~~") == "와 대박이다ㅋㅋ!!..??~~"
  assert clean("아아아아 정말 좋아요 😂😂😂😂 최고 1111") == "아아 정말 좋아요 😂😂 최고 11"
  assert clean("두 번은 그대로ㅋㅋ!! 남아요..") == "두 번은 그대로ㅋㅋ!! 남아요.."


def test_clean_files_merges_in_order_and_drops_duplicates(tmp_path):
  (tmp_path / "a.txt").write_text("첫 번째 문서의 첫 문장입니다\n짧다\n\n\n두 번째 문서의 문장입니다ㅎㅎㅎㅎ\n")
  (tmp_path / "b.txt").write_text("첫 번째 문서의 첫 문장입니다\n새로운 문장이 여기 있습니다\n")
  output = tmp_path / "out" / "clean.txt"
  counts = clean_text.clean_files(str(tmp_path / "*.txt"), str(output), num_workers=2)
  assert output.read_text().splitlines() == [
      "첫 번째 문서의 첫 문장입니다", "", "두 번째 문서의 문장입니다ㅎㅎ", "새로운 문장이 여기 있습니다"]
  assert counts["lines_in"] == 7 and counts["blank_lines"] == 2
  assert counts["dropped_short"] == 1 and counts["dropped_duplicate"] == 1
  assert counts["kept"] == 3 and counts["repeats_collapsed"] == 1
  assert sorted(p.name for p in output.parent.iterdir()) == ["clean.txt"]


def test_file_that_is_not_utf8_names_the_line_and_writes_nothing(tmp_path):
  (tmp_path / "a.txt").write_bytes("첫 번째 문서의 첫 문장입니다\n".encode() +
                                   "윈도우 문장입니다\n".encode("cp949"))
  output = tmp_path / "out" / "clean.txt"
  with pytest.raises(ValueError, match=r"a.txt, line 2: not valid UTF-8"):
    clean_text.clean_files(str(tmp_path / "a.txt"), str(output))
  assert not output.parent.exists() or not list(output.parent.iterdir())


def test_file_with_nothing_left_after_cleaning_is_an_error(tmp_path):
  (tmp_path / "a.txt").write_text("\n짧다\n  \nㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ\n")
  output = tmp_path / "out" / "clean.txt"
  with pytest.raises(ValueError, match=rf"No text in {tmp_path / 'a.txt'} to clean: its 4 lines"):
    clean_text.clean_files(str(tmp_path / "a.txt"), str(output))
  assert not output.exists()


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(content=st.binary(max_size=120) | st.text(st.characters(codec="utf-8"), max_size=60).map(
    str.encode))
def test_fuzz_any_file_is_cleaned_or_named(tmp_path_factory, content):
  """Whatever the file holds: a cleaned file, or a ValueError naming the file; nothing else."""
  directory = tmp_path_factory.mktemp("fuzz")
  (directory / "raw.txt").write_bytes(content)
  output = directory / "out" / "clean.txt"
  try:
    counts = clean_text.clean_files(str(directory / "raw.txt"), str(output))
  except ValueError as e:
    assert str(directory / "raw.txt") in str(e) and not output.exists()
    return
  assert counts["kept"] == len([line for line in output.read_text().split("\n") if line])


def test_duplicates_found_in_buckets_keep_each_first_occurrence(tmp_path, monkeypatch):
  rng = random.Random(0)
  lines = [f"문장 번호 {rng.randrange(40)} 입니다" for _ in range(300)]
  for i, chunk in enumerate((lines[:100], lines[100:])):
    (tmp_path / f"part{i}.txt").write_text("\n".join(chunk) + "\n")
  paths = [str(tmp_path / "part0.txt"), str(tmp_path / "part1.txt")]
  monkeypatch.setattr(cleaning, "LINES_PER_BUCKET", 16)  # 19 buckets
  first = cleaning.first_occurrences(paths, len(lines))
  seen = set()
  expected = [not (line in seen or seen.add(line)) for line in lines]
  assert first.dtype == np.uint8 and len(first) == -(-len(lines) // 8)
  assert list(cleaning.unpack_flags(first, chunk=16))[:len(lines)] == expected
  assert sum(expected) == 40
  counts = collections.Counter(lines_in=300)
  cleaning.merge_unique(paths, str(tmp_path / "out.txt"), counts)
  assert (tmp_path / "out.txt").read_text().splitlines() == list(dict.fromkeys(lines))
  assert counts["kept"] == 40 and counts["dropped_duplicate"] == 260


def test_command_line_on_local_files_does_not_import_tensorflow(tmp_path):
  """TensorFlow (seconds to import) is for gs:// paths only."""
  (tmp_path / "in.txt").write_text("첫 번째 문장입니다 정말로.\n\n두 번째 문장입니다 정말로.\n",
                                   encoding="utf-8")
  result, imported = processes.tensorflow_imports(
      ["-m", "bert_tf.corpus.clean_text", f"--input_file={tmp_path / 'in.txt'}",
       f"--output_file={tmp_path / 'out.txt'}", "--num_workers=1"], cwd=PROJECT_ROOT, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert (tmp_path / "out.txt").read_text(encoding="utf-8") == (
      "첫 번째 문장입니다 정말로.\n\n두 번째 문장입니다 정말로.\n")
  assert not imported


def test_an_unwritable_output_is_one_line_before_any_work(tmp_path, unwritable_dir):
  (tmp_path / "in.txt").write_text("첫 번째 문장입니다 정말로.\n", encoding="utf-8")
  output = unwritable_dir / "out.txt"
  line = processes.user_error("-m", "bert_tf.corpus.clean_text",
                              f"--input_file={tmp_path / 'in.txt'}", f"--output_file={output}",
                              "--num_workers=1")
  assert line.startswith(f"error: --output_file={output}: nothing can be written in ")
