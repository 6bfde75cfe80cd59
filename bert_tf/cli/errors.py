"""How every command-line tool reports a bad flag, file or line: one `error:` line, no traceback.

Kept apart from cli/flags.py (which imports the model and trainer) so that the data tools, which
need none of that, start without importing TensorFlow.
"""

import contextlib
import errno
import math
import os
import re
import shutil
import sys
from typing import Any, Iterator, Optional, Sequence

from absl import app, flags


# A missing or locked local path (io/files.py's gfile uses Python's file functions for those).
_LOCAL_FILE_ERRORS = (FileNotFoundError, PermissionError, FileExistsError, IsADirectoryError,
                      NotADirectoryError)


# An error line longer than this is split into its sentences, and a sentence still longer has its
# middle cut, so that a message that lists data (labels, names) stays readable in a terminal.
MAX_LINE = 300
# What to do about a file the operating system refused, by errno (the error names the file).
_OS_FIXES = {
    errno.EROFS: "the file system is read-only: choose an output path on a writable disk",
    errno.EACCES: "this user may not write there: choose another path, or fix its permissions",
    errno.EPERM: "the operating system does not allow it here: choose another path",
    errno.ENOSPC: "the disk is full: free space or choose an output path on another disk",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
}


def quoted(value: Any, width: int = 40) -> str:
  """repr(value), cut to about `width` characters (a review text where a label was expected)."""
  text = repr(value)
  return text if len(text) <= width else text[:width - 4] + "...'"


def summary(values: Sequence[Any], limit: int = 5) -> str:
  """The first `limit` values, quoted and cut, and how many there are: for messages that list
  data, whose lists are as long as the data."""
  shown = ", ".join(quoted(value) for value in values[:limit])
  return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _shorten(line: str) -> str:
  """`line` with its middle cut when it is longer than MAX_LINE (the start says what is wrong,
  the end usually the fix)."""
  if len(line) <= MAX_LINE:
    return line
  keep = (MAX_LINE - 40) // 2
  return f"{line[:keep]} ... [{len(line) - 2 * keep} characters cut] ... {line[-keep:]}"


def readable(message: str) -> str:
  """`message` with no line longer than MAX_LINE: long lines go one sentence a line (indented),
  and a sentence still too long is cut in its middle."""
  lines = []
  for line in message.splitlines() or [""]:
    if len(line) <= MAX_LINE:
      lines.append(line)
      continue
    sentences = re.split(r"(?<=[.;]) (?=[A-Z`(])", line)
    lines.extend(_shorten(s) if i == 0 else "  " + _shorten(s) for i, s in enumerate(sentences))
  return "\n".join(lines)


def check_float_flags() -> None:
  """Refuses a float flag that is NaN or infinite (`--learning_rate=nan` passes every `<` and
  `>` check and trains to NaN), naming it."""
  if not flags.FLAGS.is_parsed():
    return
  for name, flag in sorted(flags.FLAGS._flags().items()):  # pylint: disable=protected-access
    if (isinstance(flag.parser, flags.FloatParser) and flag.value is not None
        and not math.isfinite(flag.value)):
      raise app.UsageError(f"--{name}={flag.value}: must be a finite number.")


def _os_error(e: OSError) -> str:
  """An operating-system error on a named file, with what to do about it."""
  fix = _OS_FIXES.get(e.errno)
  return f"{e.filename}: {e.strerror}" + (f" ({fix})." if fix else ".")


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
    check_float_flags()
    yield
  except (ValueError, app.UsageError, *_LOCAL_FILE_ERRORS) as e:  # PreflightError: a ValueError
    raise SystemExit(readable(f"error: {e}")) from e
  except OSError as e:  # e.g. a read-only file system: the file and the fix, no traceback
    if e.errno == errno.ENOSPC:  # a full disk (saves say it themselves: a DiskFullError)
      raise SystemExit(readable(_no_space(e.filename or "a file"))) from e
    if e.filename is None:
      raise
    raise SystemExit(readable(f"error: {_os_error(e)}")) from e
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, _tf_file_errors()):  # tf.io.gfile on a missing or locked path
      raise SystemExit(readable(f"error: {e.message}")) from e
    raise
