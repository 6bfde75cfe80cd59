"""user_errors: a bad flag or file is one `error:` line; anything else keeps its traceback."""

import errno

import pytest
import tensorflow as tf
from absl import app

from bert_tf.cli import errors as cli_errors, flags as cli_flags


@pytest.mark.parametrize("error, message", [
    (ValueError("--max_seq_length=3 is too small"), "error: --max_seq_length=3 is too small"),
    (app.UsageError("--foo: bad"), "error: --foo: bad"),
    (PermissionError(13, "Permission denied", "/data/x"), "error: [Errno 13] Permission denied: "
                                                         "'/data/x'"),
    (tf.errors.NotFoundError(None, None, "gs://b/x not found"), "error: gs://b/x not found"),
])
def test_file_and_flag_errors_are_one_line(error, message):
  with pytest.raises(SystemExit) as exit_info:
    with cli_errors.user_errors():
      raise error
  assert str(exit_info.value) == message


def test_other_errors_keep_their_traceback_and_arguments_are_checked():
  with pytest.raises(KeyError):
    with cli_errors.user_errors():
      raise KeyError("a bug")
  with pytest.raises(SystemExit, match=r"error: Unexpected arguments: \['stray'\]"):
    with cli_errors.user_errors(["tool", "stray"]):
      pass
  assert cli_flags.user_errors is cli_errors.user_errors  # what the other scripts use


def test_an_operating_system_error_names_the_file_and_the_fix():
  with pytest.raises(SystemExit) as exit_info:
    with cli_errors.user_errors():
      raise OSError(errno.EROFS, "Read-only file system", "/mnt/out/x")
  assert str(exit_info.value) == ("error: /mnt/out/x: Read-only file system (the file system is "
                                  "read-only: choose an output path on a writable disk).")
  with pytest.raises(OSError):  # no file named: not a user's error to fix, keeps its traceback
    with cli_errors.user_errors():
      raise OSError(errno.EIO, "Input/output error")


def test_no_error_line_is_longer_than_the_cap():
  labels = ", ".join(f"'a long review text number {i}'" for i in range(500))
  message = (f"Labels of the data: {labels}. Check --label_column. Then rerun.\n  --seed: 1 then, "
             "2 now")
  with pytest.raises(SystemExit) as exit_info:
    with cli_errors.user_errors():
      raise ValueError(message)
  lines = str(exit_info.value).splitlines()
  assert max(len(line) for line in lines) <= cli_errors.MAX_LINE
  assert lines[0].startswith("error: Labels of the data: 'a long review text number 0'")
  assert "characters cut" in lines[0] and lines[0].endswith("number 499'.")
  assert lines[1:] == ["  Check --label_column.", "  Then rerun.", "  --seed: 1 then, 2 now"]
  short = "error: --x=1: too small. Use 2."
  assert cli_errors.readable(short) == short
