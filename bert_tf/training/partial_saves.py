"""Checkpoint saves that fail cleanly: their temporaries removed, a full disk said in one line.

TensorFlow writes a checkpoint ckpt-N into a directory ckpt-N_temp/ and merges it into
ckpt-N.index and .data files; a save that fails (a full disk, a killed process) leaves that
directory behind, as large as the part written, and nothing ever removes it. Workers other than
the chief write a scratch copy in .worker_tmp_K/ (trainer.write_checkpoint). Both are removed
when a run starts and after a failed save.
"""

import contextlib
import errno
import os
import re
from typing import Iterator, List

import tensorflow as tf
from absl import logging

from bert_tf.cli import errors as cli_errors
from bert_tf.io import files as io_files

# TensorFlow's temporary directory of a checkpoint prefix (checkpoint_management's "ckpt"
# prefix, and best/'s), and the scratch directory of a non-chief worker's save.
_TEMPORARY = re.compile(r"(ckpt-\d+_temp|\.worker_tmp_\d+)")
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device", as TensorFlow reports it too


class DiskFullError(cli_errors.RunFault):
  """A save found no space left: the message names the checkpoint, the directory, the free space
  and the fix."""


def remove_temporaries(directory: str) -> List[str]:
  """Removes the partial checkpoint directories in `directory`; returns their paths."""
  if not io_files.gfile.isdir(directory):
    return []
  removed = []
  for name in tf.io.gfile.listdir(directory):
    name = name.rstrip("/")
    if _TEMPORARY.fullmatch(name):
      path = os.path.join(directory, name)
      io_files.gfile.rmtree(path)
      removed.append(path)
  if removed:
    logging.warning("Removed what failed saves left: %s.", ", ".join(removed))
  return removed


def free_space(directory: str) -> str:
  """The free space of a local `directory`, e.g. "free 12 MB" ("" for gs:// and the like)."""
  if io_files.is_url(directory):
    return ""
  return f": free {io_files.free_bytes(directory) // 2**20:,} MB"


@contextlib.contextmanager
def saving(prefix: str) -> Iterator[None]:
  """Around the save of checkpoint `prefix`: if it fails, removes the temporaries it left; if
  the disk is full, raises DiskFullError instead of TensorFlow's traceback."""
  try:
    yield
  except tf.errors.OpError as e:
    directory, name = os.path.split(prefix)
    remove_temporaries(directory)
    if NO_SPACE not in e.message:
      raise
    raise DiskFullError(
        f"{NO_SPACE} while saving {name} to {directory}{free_space(directory)}. Make room (or "
        "pass another --output_dir) and run the same command again: it resumes from the last "
        "complete checkpoint.") from e
