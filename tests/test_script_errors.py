"""user_errors: a bad flag or file is one `error:` line; anything else keeps its traceback."""

import pytest
import tensorflow as tf
from absl import app

from bert_tf import script_errors, script_flags


@pytest.mark.parametrize("error, message", [
    (ValueError("--max_seq_length=3 is too small"), "error: --max_seq_length=3 is too small"),
    (app.UsageError("--foo: bad"), "error: --foo: bad"),
    (PermissionError(13, "Permission denied", "/data/x"), "error: [Errno 13] Permission denied: "
                                                         "'/data/x'"),
    (tf.errors.NotFoundError(None, None, "gs://b/x not found"), "error: gs://b/x not found"),
])
def test_file_and_flag_errors_are_one_line(error, message):
  with pytest.raises(SystemExit) as exit_info:
    with script_errors.user_errors():
      raise error
  assert str(exit_info.value) == message


def test_other_errors_keep_their_traceback_and_arguments_are_checked():
  with pytest.raises(KeyError):
    with script_errors.user_errors():
      raise KeyError("a bug")
  with pytest.raises(SystemExit, match=r"error: Unexpected arguments: \['stray'\]"):
    with script_errors.user_errors(["tool", "stray"]):
      pass
  assert script_flags.user_errors is script_errors.user_errors  # what the other scripts use
