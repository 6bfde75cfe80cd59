"""File helpers that work on local paths and gs:// alike.

`gfile` is the part of tf.io.gfile's interface this project's data tools use: Python's own file
functions on local paths, tf.io.gfile (imported on first use) on URLs such as gs://. So the
command-line tools that only read and write local files start without importing TensorFlow
(seconds of start-up), and local reads and writes skip its per-call overhead.

Outputs are written atomically: to a temporary name beside the target, then renamed, so a
reader never sees half a file and a crashed run leaves nothing that looks complete.
"""

import contextlib
import glob as _glob
import hashlib
import io
import json
import os
import posixpath
import shutil
import types
import uuid
from typing import IO, Any, Dict, Iterator, List


def is_url(path: str) -> bool:
  """Whether `path` names a file system TensorFlow provides (gs://, ram://, ...), not a local one."""
  return "://" in path


def _tf_gfile() -> Any:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.io.gfile


class _TextFile(io.TextIOWrapper):
  """A local text file as tf.io.gfile.GFile reads one: lines (readline, iteration) end at "\n"
  only and lose every "\r" (TensorFlow's line reader skips them); read() returns the text as is."""

  def readline(self, size: int = -1) -> str:  # type: ignore[override]
    line = super().readline(size)
    return line.replace("\r", "") if "\r" in line else line


class _Files:
  """tf.io.gfile's functions (same names and arguments) for local paths and URLs alike.

  Local paths behave as tf.io.gfile's do: text is UTF-8, untranslated, and read line by line as
  `_TextFile` says; a glob's `*` matches names that start with a dot too.
  """

  def GFile(self, path: str, mode: str = "r") -> IO[Any]:  # pylint: disable=invalid-name
    if is_url(path):
      return _tf_gfile().GFile(path, mode)
    if "b" in mode:
      return open(path, mode)  # pylint: disable=consider-using-with,unspecified-encoding
    return _TextFile(open(path, mode + "b"),  # pylint: disable=consider-using-with
                     encoding="utf-8", newline="\n")

  def exists(self, path: str) -> bool:
    return _tf_gfile().exists(path) if is_url(path) else os.path.exists(path)

  def isdir(self, path: str) -> bool:
    return _tf_gfile().isdir(path) if is_url(path) else os.path.isdir(path)

  def glob(self, pattern: str) -> List[str]:
    if is_url(pattern):
      return _tf_gfile().glob(pattern)
    return _glob.glob(pattern, include_hidden=True)

  def makedirs(self, path: str) -> None:
    if is_url(path):
      _tf_gfile().makedirs(path)
    else:
      os.makedirs(path, exist_ok=True)

  def remove(self, path: str) -> None:
    if is_url(path):
      _tf_gfile().remove(path)
    else:
      os.remove(path)

  def rmtree(self, path: str) -> None:
    if is_url(path):
      _tf_gfile().rmtree(path)
    else:
      shutil.rmtree(path)

  def rename(self, src: str, dst: str, overwrite: bool = False) -> None:
    if is_url(src) or is_url(dst):
      _tf_gfile().rename(src, dst, overwrite=overwrite)
    elif overwrite:
      os.replace(src, dst)
    elif os.path.exists(dst):
      raise FileExistsError(f"{dst} exists (rename without overwrite).")
    else:
      os.rename(src, dst)

  def stat(self, path: str) -> Any:
    """An object with `length` (bytes), `mtime_nsec` and `is_directory`, like tf.io.gfile's."""
    if is_url(path):
      return _tf_gfile().stat(path)
    result = os.stat(path)
    return types.SimpleNamespace(length=result.st_size, mtime_nsec=result.st_mtime_ns,
                                 is_directory=os.path.isdir(path))


gfile = _Files()


def free_bytes(directory: str) -> int:
  """The bytes free for writing in local `directory`'s file system."""
  return shutil.disk_usage(directory).free


def list_files(file_pattern: str) -> List[str]:
  """Sorted files matching a comma-separated list of globs; an error names a pattern with no match."""
  files = []
  for pattern in file_pattern.split(","):
    matched = gfile.glob(pattern.strip())
    if not matched:
      raise FileNotFoundError(f"No file matches {pattern.strip()!r}.")
    files.extend(matched)
  return sorted(set(files))


def join_under(directory: str, name: str) -> str:
  """`directory`/`name` for a name that came from flags or data, refusing one that escapes.

  Raises:
    ValueError: for an empty or absolute name, a URL, or one whose '..' climbs out of
      `directory`.
  """
  parts = posixpath.normpath(name.replace("\\", "/")).split("/") if name else [".."]
  if os.path.isabs(name) or "://" in name or parts[0] in ("..", "", "."):
    raise ValueError(f"{name!r} is not a file name inside {directory}: derived files are "
                     "written only under their directory, so use a plain relative name "
                     "(no leading '/', no '..').")
  return os.path.join(directory, *parts)


def temporary_path(path: str) -> str:
  """A unique sibling name for `path`, used while `path` is being written."""
  directory, name = os.path.split(path)
  return os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:12]}")


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
  """Yields a temporary path to write; renames it to `path` only if the block succeeds."""
  directory = os.path.dirname(path)
  if directory:
    gfile.makedirs(directory)
  tmp = temporary_path(path)
  try:
    yield tmp
    if not gfile.exists(tmp):  # A GFile that was never written to creates no file.
      with gfile.GFile(tmp, "w") as f:
        f.write("")
    gfile.rename(tmp, path, overwrite=True)
  finally:
    if gfile.exists(tmp):
      gfile.remove(tmp)


def copy_atomic(source: str, target: str) -> None:
  """Copies `source` to `target` (local or gs://, either way) atomically."""
  with gfile.GFile(source, "rb") as f:
    data = f.read()
  with atomic_output(target) as tmp:
    with gfile.GFile(tmp, "wb") as f:
      f.write(data)


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically."""
  with atomic_output(path) as tmp:
    with gfile.GFile(tmp, "w") as f:
      f.write(text)


def write_json_atomic(path: str, obj: Any, indent: int = 4) -> None:
  """Writes `obj` as readable UTF-8 JSON (Korean stays Korean, not \\uXXXX) atomically."""
  write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_key_values(path: str, values: Dict[str, Any]) -> None:
  """google-research's results format: one `key = value` line per key, sorted, atomically."""
  write_text_atomic(path, "".join(f"{key} = {values[key]}\n" for key in sorted(values)))


def file_sha256(path: str) -> str:
  """Hex SHA-256 of a local or gs:// file's bytes (read in 4 MiB blocks)."""
  digest = hashlib.sha256()
  with gfile.GFile(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def read_json(path: str) -> Any:
  """Reads a JSON file from a local or gs:// path."""
  with gfile.GFile(path, "r") as f:
    return json.load(f)


def _utf8_name(path: str) -> str:
  """Where the UTF-8 copy of `path` goes in the suggested iconv command: vocab.txt ->
  vocab.utf8.txt (same directory)."""
  root, extension = os.path.splitext(path)
  return f"{root}.utf8{extension}"


def utf8_error(path: str) -> ValueError:
  """A ValueError naming the first line of `path` (local or gs://) that is not valid UTF-8.

  For readers to raise when decoding fails: it rereads the file, so it costs nothing until then.
  """
  with gfile.GFile(path, "rb") as f:
    for number, line in enumerate(f, start=1):
      try:
        line.decode("utf-8")
      except UnicodeDecodeError as e:
        return ValueError(f"{path}, line {number}: not valid UTF-8 ({e.reason}). Save the file as "
                          "UTF-8; for Korean text from Windows (CP949): `iconv -f cp949 -t utf-8 "
                          f"{path} > {_utf8_name(path)}`, and use that file.")
  return ValueError(f"{path}: not valid UTF-8. Save the file as UTF-8.")
