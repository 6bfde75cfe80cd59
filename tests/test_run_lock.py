"""One writer per output_dir: a live run's lock refuses a second run; a stale one is taken."""

import json
import os
import socket
import subprocess
import time

import pytest

from bert_tf.io import run_lock
from tests import processes


def _write_lock(directory, **values):
  lock = dict(host=socket.gethostname(), pid=os.getpid(), started=time.time(),
              lease_until=time.time() + 300)
  (directory / run_lock.LOCK_FILE).write_text(json.dumps({**lock, **values}))


@pytest.fixture
def live_process():
  process = subprocess.Popen(["sleep", "60"])
  yield process
  process.kill()
  process.wait()


def test_a_live_run_on_this_host_is_refused_and_its_lock_kept(tmp_path, live_process):
  _write_lock(tmp_path, pid=live_process.pid)
  with pytest.raises(ValueError, match=rf"in use by another run \(pid {live_process.pid} on"):
    run_lock.RunLock(str(tmp_path)).acquire()
  assert json.loads((tmp_path / run_lock.LOCK_FILE).read_text())["pid"] == live_process.pid


def test_stale_locks_are_taken_over_and_released_at_the_end(tmp_path, live_process):
  live_process.kill()
  live_process.wait()
  _write_lock(tmp_path, pid=live_process.pid)  # a run killed on this host
  lock = run_lock.RunLock(str(tmp_path))
  lock.acquire()
  assert json.loads((tmp_path / run_lock.LOCK_FILE).read_text())["pid"] == os.getpid()
  lock.release()
  assert not (tmp_path / run_lock.LOCK_FILE).exists()
  # Another machine's run: live while its lease lasts, stale after.
  _write_lock(tmp_path, host="other-host", pid=1)
  with pytest.raises(ValueError, match="on other-host"):
    run_lock.RunLock(str(tmp_path)).acquire()
  _write_lock(tmp_path, host="other-host", pid=1, lease_until=time.time() - 1)
  run_lock.RunLock(str(tmp_path)).acquire()


def test_the_lease_is_renewed_while_the_run_lives(tmp_path):
  lock = run_lock.RunLock(str(tmp_path), lease_seconds=0.3)
  lock.acquire()
  first = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())["lease_until"]
  time.sleep(0.5)
  assert json.loads((tmp_path / run_lock.LOCK_FILE).read_text())["lease_until"] > first
  lock.release()


def test_a_second_script_on_a_busy_output_dir_stops_with_one_line(tmp_path, live_process):
  out = tmp_path / "out"
  out.mkdir()
  _write_lock(out, pid=live_process.pid)
  line = processes.user_error("run_squad.py", "--demo", f"--output_dir={out}")
  assert f"in use by another run (pid {live_process.pid}" in line
  assert sorted(p.name for p in out.iterdir()) == [run_lock.LOCK_FILE]  # nothing else written
