"""File helpers that work on local paths and gs:// alike (through tf.io.gfile).

Outputs are written atomically: to a temporary name beside the target, then renamed, so a
reader never sees half a file and a crashed run leaves nothing that looks complete.
"""

import contextlib
import hashlib
import json
import os
import posixpath
import uuid
from typing import Any, Dict, Iterator

import tensorflow as tf


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
    tf.io.gfile.makedirs(directory)
  tmp = temporary_path(path)
  try:
    yield tmp
    if not tf.io.gfile.exists(tmp):  # A GFile that was never written to creates no file.
      with tf.io.gfile.GFile(tmp, "w") as f:
        f.write("")
    tf.io.gfile.rename(tmp, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically."""
  with atomic_output(path) as tmp:
    with tf.io.gfile.GFile(tmp, "w") as f:
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
  with tf.io.gfile.GFile(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def read_json(path: str) -> Any:
  """Reads a JSON file from a local or gs:// path."""
  with tf.io.gfile.GFile(path, "r") as f:
    return json.load(f)


def utf8_error(path: str) -> ValueError:
  """A ValueError naming the first line of `path` (local or gs://) that is not valid UTF-8.

  For readers to raise when decoding fails: it rereads the file, so it costs nothing until then.
  """
  with tf.io.gfile.GFile(path, "rb") as f:
    for number, line in enumerate(f, start=1):
      try:
        line.decode("utf-8")
      except UnicodeDecodeError as e:
        return ValueError(f"{path}, line {number}: not valid UTF-8 ({e.reason}). Save the file as "
                          "UTF-8 (e.g. iconv -f CP949 -t UTF-8 for Korean text from Windows).")
  return ValueError(f"{path}: not valid UTF-8. Save the file as UTF-8.")
