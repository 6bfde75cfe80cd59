"""How every command-line tool reports a bad flag, file or line: one `error:` line, no traceback.

Kept apart from script_flags (which imports the model and trainer) so that the data tools, which
need none of that, start without importing TensorFlow.
"""

import contextlib
import errno
import os
import shutil
import sys
from typing import Iterator, Optional, Sequence

from absl import app


# A missing or locked local path (io_utils.gfile uses Python's file functions for those).
_LOCAL_FILE_ERRORS = (FileNotFoundError, PermissionError, FileExistsError, IsADirectoryError,
                      NotADirectoryError)


def _tf_file_errors() -> tuple:
  """tf.io.gfile's errors on a missing or locked path, if TensorFlow is loaded (it raised none
  otherwise)."""
  tf = sys.modules.get("tensorflow")
  if tf is None or not hasattr(tf, "errors"):
    return ()
  return (tf.errors.NotFoundError, tf.errors.PermissionDeniedError, tf.errors.AlreadyExistsError,
          tf.errors.FailedPreconditionError)


class RunFault(SystemExit):
  """A fault met mid-run that the user must fix (a full disk, a damaged file): wherever it is
  raised, the script ends with its one `error:` line and status 1, no traceback."""

  def __init__(self, message: str):
    super().__init__(f"error: {message}")


def _no_space(path: str) -> str:
  """The one line for a write that found its disk full."""
  directory = os.path.dirname(path) or "."
  free = (f": free {shutil.disk_usage(directory).free // 2**20:,} MB"
          if os.path.isdir(directory) else "")
  return (f"error: {os.strerror(errno.ENOSPC)} while writing {path}{free}. Make room (or pass "
          "another --output_dir) and run the same command again.")


@contextlib.contextmanager
def user_errors(argv: Optional[Sequence[str]] = None) -> Iterator[None]:
  """Exits with just the message (no traceback) on errors in flags, files and data; with
  `argv` (absl's, program name first), arguments that are not flags are such an error too."""
  try:
    if argv is not None and len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
    yield
  except (ValueError, app.UsageError, *_LOCAL_FILE_ERRORS) as e:  # PreflightError: a ValueError
    raise SystemExit(f"error: {e}") from e
  except OSError as e:
    if e.errno == errno.ENOSPC:  # a full disk (saves say it themselves: a DiskFullError)
      raise SystemExit(_no_space(e.filename or "a file")) from e
    raise
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, _tf_file_errors()):  # tf.io.gfile on a missing or locked path
      raise SystemExit(f"error: {e.message}") from e
    raise
