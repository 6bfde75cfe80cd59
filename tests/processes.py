"""Helpers for tests that run a training script as a real process and interrupt it."""

import json
import os
import pathlib
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from bert_tf.cli import errors as cli_errors


def interrupt_after(process: subprocess.Popen, appeared: Callable[[], bool], delay: float,
                    sig: int, timeout: float = 120) -> Tuple[int, float]:
  """Sends `sig` `delay` seconds after `appeared()` holds (e.g. a checkpoint's file exists);
  returns the exit status and the seconds from the signal to the exit."""
  deadline = time.time() + 240
  while not appeared():
    assert process.poll() is None and time.time() < deadline, "the run never got there"
    time.sleep(0.02)
  time.sleep(delay)
  process.send_signal(sig)
  sent = time.time()
  status = process.wait(timeout=timeout)
  return status, time.time() - sent


def kill_preempt_kill(start: Callable[[pathlib.Path], subprocess.Popen],
                      output_dir: pathlib.Path, steps: Tuple[int, int, int],
                      final_step: Optional[int],
                      logs: pathlib.Path) -> None:
  """Runs `start(log)` three times, each interrupted at a random moment after a checkpoint.

  SIGKILL (a dead VM) after ckpt-steps[0], SIGTERM (preemption) after ckpt-steps[1], which must
  save a checkpoint and exit with status 1, and SIGKILL again after ckpt-steps[2].
  """
  rng = random.Random(0)
  for step, sig in zip(steps, (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)):
    log = logs / f"{sig.name}-{step}.log"
    process = start(log)
    try:
      returncode, seconds = interrupt_after(process, (output_dir / f"ckpt-{step}.index").exists,
                                            rng.uniform(0, 0.3), sig)
    finally:
      stop(process)
    if final_step is not None:  # None: not known beforehand; the exit statuses still show it
      assert not (output_dir / f"ckpt-{final_step}.index").exists()  # it really was interrupted
    if sig == signal.SIGTERM:
      stopped = re.search(r"Stopped by SIGTERM at step (\d+) after saving (\S+);",
                          log.read_text())
      assert returncode == 1 and stopped, log.read_text()[-3000:]
      assert stopped.group(2).endswith(f"ckpt-{stopped.group(1)}")
      assert (output_dir / f"ckpt-{stopped.group(1)}.index").exists()
      print(f"{output_dir}: SIGTERM to exit {seconds:.2f} s")  # a figure, shown with -s
    else:
      assert returncode == -signal.SIGKILL


def user_error(*args: str) -> str:
  """Runs `python ARGS` in the project root, which must fail as a user error: exit status 1 and
  exactly one `error:` line on stderr, no traceback, no line longer than
  cli_errors.MAX_LINE. Returns the message: that line and the lines that follow it."""
  result = subprocess.run([sys.executable, *args], cwd=pathlib.Path(__file__).parent.parent,
                          capture_output=True, text=True, timeout=180, check=False)
  lines = result.stderr.splitlines()
  errors = [line for line in lines if line.startswith("error:")]
  assert result.returncode == 1 and len(errors) == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  message = lines[lines.index(errors[0]):]
  assert max(len(line) for line in message) <= cli_errors.MAX_LINE, message
  return "\n".join(message)


def stop(process: subprocess.Popen) -> None:
  """Kills `process` if it is still running, so that no test leaves one behind."""
  if process.poll() is None:
    process.kill()
    process.wait(timeout=60)


def run_workers(args: Sequence[str], cwd: pathlib.Path, count: int = 2, timeout: float = 600,
                worker_args: Sequence[Sequence[str]] = (),
                interrupt: Optional[Callable[[List[subprocess.Popen]], None]] = None
                ) -> List[Tuple[int, str, str]]:
  """Runs `count` copies of `python args` as the workers of one localhost TF_CONFIG cluster;
  returns each one's (exit code, stdout, stderr), the chief's first. `worker_args[i]` are more
  arguments for worker i; `interrupt(workers)` runs once all started (e.g. to signal one). The
  timeout is generous: two TensorFlow processes on 2 cores beside other load took more than
  240 s once; a run that passes it fails with the end of every worker's log (a hang shows where).
  """
  ports = []
  for _ in range(count):
    with socket.socket() as s:
      s.bind(("localhost", 0))
      ports.append(s.getsockname()[1])
  cluster = {"worker": [f"localhost:{port}" for port in ports]}
  workers, logs = [], []
  for index in range(count):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                  "index": index}}))
    # Files, not pipes: a worker blocked on a full pipe while another is waited for would hang.
    logs.append((tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")))
    extra = worker_args[index] if index < len(worker_args) else ()
    workers.append(subprocess.Popen([sys.executable, *args, *extra], cwd=cwd, env=env,
                                    stdout=logs[-1][0], stderr=logs[-1][1], text=True))
  try:
    if interrupt:
      interrupt(workers)
    deadline = time.time() + timeout
    try:
      for worker in workers:
        worker.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      tails = [_read(stderr)[-2000:] for _, stderr in logs]
      raise AssertionError(f"the workers ran past {timeout} s; their logs end:\n" + "\n---\n".join(
          tails)) from None
  finally:
    for worker in workers:
      stop(worker)
  return [(worker.returncode, _read(out), _read(err)) for worker, (out, err) in zip(workers, logs)]


def _read(file) -> str:
  """All of a temporary log file (then closed)."""
  with file:
    file.seek(0)
    return file.read()


def model_weights(checkpoint: str) -> Dict[str, np.ndarray]:
  """The model's variables (no optimizer slots) in a checkpoint or a directory's latest one."""
  reader = tf.train.load_checkpoint(str(checkpoint))
  names = [n for n in reader.get_variable_to_shape_map()
           if n.startswith("model/") and "OPTIMIZER_SLOT" not in n]
  return {n: reader.get_tensor(n) for n in names}


def assert_same_final_checkpoint(expected_dir: pathlib.Path, actual_dir: pathlib.Path) -> None:
  """Both runs end at the same step with the same model variables, within float tolerance."""
  expected_path = tf.train.latest_checkpoint(str(expected_dir))
  actual_path = tf.train.latest_checkpoint(str(actual_dir))
  assert pathlib.Path(actual_path).name == pathlib.Path(expected_path).name
  assert_same_weights(expected_path, actual_path)


def assert_same_weights(expected_path: str, actual_path: str) -> None:
  """Two checkpoints hold the same model variables, within float tolerance."""
  expected, actual = model_weights(expected_path), model_weights(actual_path)
  assert expected.keys() == actual.keys() and expected
  for name in expected:
    np.testing.assert_allclose(actual[name], expected[name], atol=1e-5, err_msg=name)


def assert_same_best(expected_dir: pathlib.Path, actual_dir: pathlib.Path) -> None:
  """Both runs kept the same best checkpoint (step, value, model variables) in best/."""
  from bert_tf.training import best_checkpoint  # pylint: disable=import-outside-toplevel
  expected, actual = (best_checkpoint.read_best(str(d)) for d in (expected_dir, actual_dir))
  assert expected["step"] == actual["step"], (expected, actual)
  assert abs(expected["value"] - actual["value"]) < 1e-4, (expected, actual)
  assert actual["checkpoint"] == str(actual_dir / "best" / f"ckpt-{actual['step']}")
  assert_same_weights(expected["checkpoint"], actual["checkpoint"])


def tensorflow_imports(args, **run_options) -> Tuple[subprocess.CompletedProcess, list]:
  """Runs `python -X importtime ARGS` and returns the result and the TensorFlow modules it
  imported (from the import-time lines on stderr), e.g. to check a tool starts without them."""
  result = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True,
                          text=True, check=False, **run_options)
  modules = [line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
             if line.startswith("import time:") and "|" in line]
  return result, [m for m in modules if m.split(".")[0] in ("tensorflow", "tensorflow_text")]
