"""Seconds from SIGTERM to a saved checkpoint and to exit, for a signal landing inside a loop.

  python -m benchmarks.preemption [--delays 2,7,12] [--max_seconds_per_loop 20]

Runs run_classifier.py on the bundled NSMC sample (its tiny model, CPU) with loops of up to
--max_seconds_per_loop (the default 20 s, what a real run uses), and sends SIGTERM each
`--delays` seconds after the third progress line (the first two loops are short: they measure
the step time). The reference is the loop length: the time a stop waited for before a running
loop read a stop flag. Prints one line a run and the machine's load.
"""

import argparse
import datetime
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict

from benchmarks import common

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "classifier"
_LOG_TIME = re.compile(r"^[IWE]\d{4} (\d\d:\d\d:\d\d\.\d+) .*Saved checkpoint", re.M)


def measure(delay: float, max_seconds_per_loop: float, output_dir: str) -> Dict[str, float]:
  """One run: SIGTERM `delay` s into a loop; seconds to the checkpoint's log line and to exit."""
  log = pathlib.Path(output_dir) / "run.log"
  command = [sys.executable, str(ROOT / "run_classifier.py"), "--task_name=nsmc",
             f"--data_dir={SAMPLE / 'nsmc'}", f"--vocab_file={SAMPLE / 'vocab.txt'}",
             f"--bert_config_file={SAMPLE / 'bert_config.json'}", "--max_seq_length=32",
             "--train_batch_size=16", "--learning_rate=1e-3", "--num_train_epochs=10000",
             "--eval_every_epoch=false", "--do_train", f"--max_seconds_per_loop={max_seconds_per_loop}",
             f"--output_dir={output_dir}/out"]
  with open(log, "w", encoding="utf-8") as stderr:
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  try:
    while len(re.findall(r" step \d+/", log.read_text())) < 3:
      if process.poll() is not None:
        raise RuntimeError(f"run_classifier.py ended early: {log.read_text()[-2000:]}")
      time.sleep(0.05)
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    sent = time.time()
    status = process.wait(timeout=300)
    exited = time.time()
  finally:
    if process.poll() is None:
      process.kill()
  text = log.read_text()
  if status != 1 or "Stopped by SIGTERM" not in text:
    raise RuntimeError(f"expected a preemption stop, got status {status}: {text[-2000:]}")
  clock = datetime.datetime.strptime(_LOG_TIME.findall(text)[-1], "%H:%M:%S.%f").time()
  saved = datetime.datetime.combine(datetime.date.fromtimestamp(sent), clock).timestamp()
  return dict(to_checkpoint=saved - sent, to_exit=exited - sent)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--delays", default="2,7,12")
  parser.add_argument("--max_seconds_per_loop", type=float, default=20.0)
  args = parser.parse_args()
  print(f"{common.cpu_model()}, load average {os.getloadavg()[0]:.1f}; loops of up to "
        f"{args.max_seconds_per_loop:g} s (the reference)")
  for delay in (float(d) for d in args.delays.split(",")):
    with tempfile.TemporaryDirectory() as directory:
      times = measure(delay, args.max_seconds_per_loop, directory)
    print(f"SIGTERM {delay:g} s into a loop: checkpoint saved after {times['to_checkpoint']:.2f} s, "
          f"exit after {times['to_exit']:.2f} s ({times['to_exit'] / args.max_seconds_per_loop:.2f}"
          " of a loop)")


if __name__ == "__main__":
  main()
