"""What every benchmark shares: paths, the results file, machine facts and Hugging Face venvs.

Results of all figures live in one JSON file, benchmarks/results.json, one entry per benchmark;
each module merges its own entry with `merge_results`, written atomically so that a crash never
leaves half a file. The Hugging Face side of a comparison runs in a virtual environment of its
own (torch must not enter the project's; transformers is there for tokenizer tests only),
made by `hf_python` when missing.
"""

import cProfile
import datetime
import fcntl
import os
import pathlib
import platform
import pstats
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from bert_tf.io import files as io_files

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
# The results file; the environment variable redirects it (python -m benchmarks --quick does).
RESULTS_VARIABLE = "BERT_TF_BENCHMARK_RESULTS"
RESULTS = pathlib.Path(os.environ.get(RESULTS_VARIABLE, ROOT / "benchmarks" / "results.json"))

# Module name -> pip requirement, for the Hugging Face sides of the benchmarks.
HF_TORCH = {"torch": "torch==2.13.0", "transformers": "transformers"}
HF_TOKENIZERS = {"tokenizers": "tokenizers", "transformers": "transformers"}
HF_VENV = "/tmp/hfvenv"
HF_TOKENIZERS_VENV = "/tmp/hf_tokenizers_venv"


def merge_results(name: str, entry: Dict[str, Any], path: str = str(RESULTS)) -> None:
  """Sets results[name] = entry in the results file (created if missing), atomically."""
  update_results(name, lambda _: entry, path)


def update_results(name: str, update: Callable[[Optional[Dict[str, Any]]], Dict[str, Any]],
                   path: str = str(RESULTS)) -> None:
  """Sets results[name] = update(results.get(name)) in the results file (created if missing),
  atomically.

  The file's directory is locked meanwhile, so benchmarks finishing at once keep both entries.
  """
  directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  try:
    fcntl.flock(directory, fcntl.LOCK_EX)
    results = io_files.read_json(path) if os.path.exists(path) else {}
    results[name] = update(results.get(name))
    io_files.write_json_atomic(path, results, indent=2)
  finally:
    os.close(directory)  # Releases the lock.


def read_results(path: str = str(RESULTS)) -> Dict[str, Any]:
  """The results file as a dict ({} when it does not exist yet)."""
  return io_files.read_json(path) if os.path.exists(path) else {}


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine_info() -> Dict[str, Any]:
  """Where and when a figure was measured: CPU, usable cores, load, date and versions."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return dict(cpu=cpu_model(), cores=len(os.sched_getaffinity(0)),
              load_average_1min=round(os.getloadavg()[0], 2),
              date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              python=platform.python_version(), tensorflow=tf.__version__)


def median_seconds(runs: Dict[str, Callable[[], Any]], repeats: int) -> Dict[str, float]:
  """Median seconds of each of `runs` over `repeats` rounds.

  Each round runs every one once, in turn, so that load from other processes affects all alike.
  """
  timings: Dict[str, List[float]] = {name: [] for name in runs}
  for _ in range(repeats):
    for name, run in runs.items():
      started = time.perf_counter()
      run()
      timings[name].append(time.perf_counter() - started)
  return {name: statistics.median(values) for name, values in timings.items()}


def time_training_steps(run: Any, steps: int) -> Dict[str, float]:
  """Seconds per step of a bert_tf.trainer.Trainer, after one compiling step.

  Times `steps` steps in one train() call and subtracts the checkpoint it writes at the end,
  timed on its own (the run needs iterations_per_loop >= steps and a large
  save_checkpoints_steps).
  """
  run.train(stop_at_step=run.step + 1)  # Traces and compiles the loop.
  started = time.perf_counter()
  run.train(stop_at_step=run.step + steps)
  seconds = time.perf_counter() - started
  started = time.perf_counter()
  run.save()
  save_seconds = time.perf_counter() - started
  return dict(seconds_per_step=(seconds - save_seconds) / steps, checkpoint_seconds=save_seconds)


def hf_python(packages: Dict[str, str], venv: str = HF_VENV) -> str:
  """The python of `venv`, after creating it and pip-installing any of `packages` it cannot import.

  `packages` maps module names to pip requirements (HF_TORCH, HF_TOKENIZERS).
  """
  python = os.path.join(venv, "bin", "python")
  missing = [requirement for module, requirement in packages.items()
             if not os.path.exists(python) or subprocess.run(
                 [python, "-c", f"import {module}"], capture_output=True).returncode]
  if not missing:
    return python
  print(f"Installing {' '.join(missing)} into {venv}.", flush=True)
  if not os.path.exists(python):
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
  subprocess.run([python, "-m", "pip", "install", "-q", *missing], check=True)
  return python


def data_missing(paths: Sequence[str]) -> Optional[str]:
  """A reason to skip (naming the first missing path), or None when all `paths` exist."""
  for path in paths:
    if not os.path.exists(path):
      return f"{path} is missing (needs ../shared/data)"
  return None


def profile_shares(run: Callable[[], Any], top: int = 10) -> Dict[str, Any]:
  """Where `run`'s time goes: cProfile's seconds and the `top` functions by own time (tottime),
  each with its share of the profiled total. Profiling slows Python code more than C calls, so
  the shares are indicative, not exact."""
  profile = cProfile.Profile()
  profile.runcall(run)
  stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, _, tottime, cumtime, _)
  total = sum(entry[2] for entry in stats.values())
  rows = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
  return dict(profiled_seconds=round(total, 3), top_own_time={
      f"{os.path.relpath(path, ROOT) if path.startswith(str(ROOT)) else os.path.basename(path)}"
      f":{line}({name})": f"{entry[2] / total:.0%} ({entry[0]} calls)"
      for (path, line, name), entry in rows})
