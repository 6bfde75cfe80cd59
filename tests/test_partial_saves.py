"""A full disk: a failed save leaves no checkpoint temporaries and says so in one line, leftovers
of earlier failed saves are removed at start, and the output-dir probe needs real room.

The disk is a small tmpfs (mounting one needs root, as in this project's containers; without it
these tests skip), so TensorFlow's own writes meet a real ENOSPC.
"""

import errno
import os
import subprocess

import pytest
import tensorflow as tf

from bert_tf.cli import errors as cli_errors
from bert_tf.io import gcs
from bert_tf.training import partial_saves
from tests import test_trainer


@pytest.fixture
def small_disk(tmp_path):
  """A 3 MB tmpfs at tmp_path/disk, unmounted at the end (lazily: a trainer's summary writer
  may still hold a file open)."""
  mount = tmp_path / "disk"
  mount.mkdir()
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
  if result.returncode:
    pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
  try:
    yield mount
  finally:
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(directory, leave_bytes):
  """Fills `directory`'s file system but for about `leave_bytes`."""
  free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
  with open(directory / "filler", "wb") as f:
    f.write(b"\0" * max(0, free - leave_bytes))


def test_a_save_on_a_full_disk_stops_in_one_line_and_leaves_no_temporaries(small_disk, records):
  out = small_disk / "out"
  run = test_trainer._make_trainer(tf.distribute.get_strategy(), out, records)
  _fill(small_disk, leave_bytes=8192)  # the tiny model's checkpoint is ~60 KB
  with pytest.raises(partial_saves.DiskFullError) as full:
    run.train()
  assert str(full.value).startswith(f"error: No space left on device while saving ckpt-2 to "
                                    f"{out}: free 0 MB. Make room")
  assert "\n" not in str(full.value)
  assert not list(out.glob("*_temp")), list(out.iterdir())  # TensorFlow's ckpt-2_temp/: removed


def test_leftovers_of_failed_saves_are_removed_when_a_run_starts(tmp_path, records):
  out = tmp_path / "out"
  for leftover in ("ckpt-100_temp", ".worker_tmp_1", "best/ckpt-50_temp"):
    (out / leftover).mkdir(parents=True)
    (out / leftover / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 1000)
  (out / "notes_temp").mkdir()  # not ours: kept
  test_trainer._make_trainer(tf.distribute.get_strategy(), out, records)
  assert sorted(p.name for p in out.iterdir()) == ["best", "notes_temp"]
  partial_saves.remove_temporaries(str(out / "best"))  # what the best-checkpoint keeper calls
  assert not list((out / "best").iterdir())


def test_the_write_probe_needs_a_few_megabytes(small_disk):
  """A disk with room for tiny files only fails the probe, before any work, in one line."""
  _fill(small_disk, leave_bytes=gcs.PROBE_BYTES // 2)
  with pytest.raises(gcs.PreflightError,
                     match=rf"--output_dir={small_disk / 'out'} has no room for a 4 MB probe file: "
                           r"free [0-3] MB\. Make room"):
    gcs.check_inputs_and_output({}, "output_dir", str(small_disk / "out"))
  assert not [p for p in (small_disk / "out").iterdir()]  # the probe is not left behind


def test_any_write_on_a_full_disk_is_one_error_line(tmp_path):
  path = tmp_path / "run_flags.json"
  with pytest.raises(SystemExit) as stopped:
    with cli_errors.user_errors():
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
  assert str(stopped.value).startswith(f"error: No space left on device while writing {path}: "
                                       "free ")


@pytest.fixture
def records(tmp_path):
  path = tmp_path / "train.tfrecord"
  test_trainer._write_records(path)
  return path
