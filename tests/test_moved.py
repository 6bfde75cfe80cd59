"""The module names from before the grouping into sub-packages still work (bert_tf/_moved.py): an
old import gives the new module itself, an old `python -m` command says where the tool went and
runs it."""

import importlib
import importlib.util
import subprocess
import sys

import pytest

from bert_tf import _moved
from conftest import PROJECT_ROOT


def test_every_old_name_finds_its_new_module():
  for old, new in _moved.MOVED.items():
    assert importlib.util.find_spec(f"bert_tf.{new}").origin.endswith(
        f"bert_tf/{new.replace('.', '/')}.py"), (old, new)
    assert importlib.util.find_spec(f"bert_tf.{old}").loader.new == f"bert_tf.{new}", old


@pytest.mark.parametrize("old,new", [("io_utils", "io.files"), ("script_errors", "cli.errors"),
                                     ("tpu_chips", "tpu.chips")])
def test_an_old_import_is_the_new_module(old, new):
  module = importlib.import_module(f"bert_tf.{new}")
  assert importlib.import_module(f"bert_tf.{old}") is module
  assert getattr(importlib.import_module("bert_tf"), old) is module
  namespace = {}
  exec(f"from bert_tf import {old} as imported", namespace)  # pylint: disable=exec-used
  assert namespace["imported"] is module


@pytest.mark.parametrize("command,pointer", [
    ("bert_tf.clean_text", "bert_tf.clean_text moved to bert_tf.corpus.clean_text; running that."),
    ("bert_tf.corpus.clean_text", None)])
def test_an_old_command_points_to_the_new_one_and_runs_it(tmp_path, command, pointer):
  raw = tmp_path / "raw.txt"
  raw.write_text("a line long enough to keep\n\nanother line long enough\n", encoding="utf-8")
  result = subprocess.run(
      [sys.executable, "-m", command, f"--input_file={raw}",
       f"--output_file={tmp_path / 'clean.txt'}", "--num_workers=1"],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  pointers = [line for line in result.stderr.splitlines() if "moved to" in line]
  assert pointers == ([pointer] if pointer else [])
  assert result.stderr.startswith(pointer or "")
  assert (tmp_path / "clean.txt").read_text(encoding="utf-8") == (
      "a line long enough to keep\n\nanother line long enough\n")


def test_an_unknown_name_is_still_an_import_error():
  with pytest.raises(ModuleNotFoundError):
    importlib.import_module("bert_tf.no_such_tool")
