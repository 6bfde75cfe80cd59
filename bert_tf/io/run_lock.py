"""One writer per output_dir: a lock file that a second run at the same time is refused by.

Two runs on one --output_dir would both "succeed" while overwriting each other's checkpoints and
event files. The chief of a run writes OUTPUT_DIR/.bert_tf.lock (host, pid, a lease renewed
while the run lives) and deletes it at exit. A lock is stale, and taken over with a warning, when
its process is gone from this host, or its lease ran out (a run killed on another machine). On
gs:// the lock is written through tf.io.gfile, which cannot create a file only if it is absent,
so two runs starting within the same second may both take it: there it guards against the
common mistake (a second notebook or job on a busy directory), not against every race.
"""

import atexit
import json
import os
import socket
import threading
import time
from typing import Any, Dict, Optional

import tensorflow as tf
from absl import logging

from bert_tf.io import files as io_files

LOCK_FILE = ".bert_tf.lock"
LEASE_SECONDS = 300.0  # renewed every LEASE_SECONDS / 3 while the run lives


def _alive_here(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # another user's live process
  return True


def is_live(lock: Dict[str, Any], now: float) -> bool:
  """Whether the run that wrote `lock` may still be running."""
  if lock.get("host") == socket.gethostname():
    return _alive_here(int(lock["pid"]))
  return now < float(lock.get("lease_until", 0))


class RunLock:
  """Holds OUTPUT_DIR/.bert_tf.lock for this process until `release` (or exit)."""

  def __init__(self, output_dir: str, lease_seconds: float = LEASE_SECONDS):
    self.path = os.path.join(output_dir, LOCK_FILE)
    self.lease_seconds = lease_seconds
    self._stop = threading.Event()
    self._renewer: Optional[threading.Thread] = None

  def _record(self) -> Dict[str, Any]:
    now = time.time()
    return dict(host=socket.gethostname(), pid=os.getpid(), started=self._started,
                lease_until=now + self.lease_seconds)

  def acquire(self) -> None:
    """Takes the lock, or raises ValueError naming the run that holds it and the fix."""
    if tf.io.gfile.exists(self.path):
      with tf.io.gfile.GFile(self.path) as f:
        lock = json.load(f)
      same = lock.get("host") == socket.gethostname() and int(lock["pid"]) == os.getpid()
      if not same and is_live(lock, time.time()):
        raise ValueError(
            f"{os.path.dirname(self.path)} is in use by another run (pid {lock['pid']} on "
            f"{lock['host']}, started {time.ctime(lock['started'])}; {self.path}). Two runs on "
            "one --output_dir overwrite each other's checkpoints: wait for it to finish, use "
            "another --output_dir, or, if that run is gone, delete the lock file.")
      if not same:
        logging.warning("Taking over the stale lock %s of pid %s on %s (no longer running).",
                        self.path, lock["pid"], lock["host"])
    self._started = time.time()
    io_files.write_text_atomic(self.path, json.dumps(self._record()))
    self._renewer = threading.Thread(target=self._renew, daemon=True, name="run-lock")
    self._renewer.start()
    atexit.register(self.release)

  def _renew(self) -> None:
    while not self._stop.wait(self.lease_seconds / 3):
      io_files.write_text_atomic(self.path, json.dumps(self._record()))

  def release(self) -> None:
    """Deletes the lock if this process holds it."""
    self._stop.set()
    if self._renewer is None:
      return
    self._renewer.join(timeout=10)
    self._renewer = None
    if tf.io.gfile.exists(self.path):
      with tf.io.gfile.GFile(self.path) as f:
        lock = json.load(f)
      if lock.get("host") == socket.gethostname() and int(lock["pid"]) == os.getpid():
        tf.io.gfile.remove(self.path)
