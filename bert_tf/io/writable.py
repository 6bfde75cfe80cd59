"""Whether an output directory can be written, local or gs://, checked before any work.

Apart from files.py so that the file helpers need nothing of gcs (which imports TensorFlow and
files.py): a local directory is probed here without TensorFlow, a gs:// one by gcs's probe.
"""

import errno
import os

from bert_tf.io import files


def check_writable(directory: str, flag: str, value: str) -> None:
  """Fails naming --flag=value when nothing can be written in `directory` (read-only, full, not
  this user's, under a file), before any work, creating nothing: a probe file is written and
  deleted in its nearest existing ancestor. gs:// paths get gcs's probe (TensorFlow's errors,
  the bucket's fix)."""
  if files.is_url(directory):
    from bert_tf.io import gcs  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
    gcs.check_inputs_and_output({}, flag, directory)
    return
  existing = os.path.abspath(directory or ".")
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  try:
    if not os.path.isdir(existing):
      raise NotADirectoryError(errno.ENOTDIR, "a file, not a directory", existing)
    probe = files.temporary_path(os.path.join(existing, "write-probe"))
    with open(probe, "xb") as f:
      f.write(b"probe")
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"--{flag}={value}: nothing can be written in {existing} ({e.strerror}). Choose a "
                     "directory this user can write to, on a disk that is writable and has "
                     f"space (`ls -ld {existing}; df -h {existing}`).") from e
