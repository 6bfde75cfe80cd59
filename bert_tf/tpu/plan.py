"""Will it fit on a TPU? Compiles a task's real training step for a Cloud TPU type, on this CPU.

    python -m bert_tf.tpu.plan --task=squad --bert_config_file=bert_base_uncased \
        --max_seq_length=384 --train_batch_size=32 --tpu=v3-8 --num_train_steps=5500

exports the Trainer's replica step (tpu/hlo_export.py) for the per-replica batch (with
--pack_sequences, the scripts' default, of packed rows, as many as the scripts take for
--examples_per_row, a figure their logs give), compiles it with the TPU compiler (libtpu, in
the separate environment `make tpu-compile-env` builds; see tpu/compile.py) for one replica of
the TPU type, and prints whether XLA accepts it (or its error), per-replica HBM (weights and
optimizer state, temporaries, total, against the chip's), FLOPs per step, per row and per
example from XLA's cost analysis beside the analytic formula (docs/tpu-planning.md), the time
of the run at the chip's peak and at --mfu, the largest global batch that compiles
(--search_batch), and the same for the prediction step. Compile-time estimates: the HLO is
TensorFlow's CPU lowering of the step (TF cannot export a stateful step for a TPU without one),
and nothing here ran on TPU hardware.
"""

import dataclasses
import json
import math
import os
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from absl import app, flags

from bert_tf.cli import errors as cli_errors
from bert_tf.tpu import chips

COMPILE_ENV_TARGET = "make tpu-compile-env"
LIBTPU_LOCKFILE = "/tmp/libtpu_lockfile"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CONFIG_DIR = os.path.join(_REPO_ROOT, "configs")


def compile_python() -> str:
  """The TPU compile environment's interpreter (BERT_TF_TPU_COMPILE_PYTHON overrides it)."""
  return os.environ.get("BERT_TF_TPU_COMPILE_PYTHON",
                        os.path.join(_REPO_ROOT, ".venv-tpu-compile", "bin", "python"))


def check_compile_env() -> None:
  """A ValueError naming the make target when the TPU compile environment is missing."""
  python = compile_python()
  if not os.path.exists(python):
    raise ValueError(f"the TPU compile environment is missing ({python} not found): run "
                     f"`{COMPILE_ENV_TARGET}` in {_REPO_ROOT} (jax, jaxlib and libtpu in their "
                     "own virtual environment, about 1 GB).")


def lock_holders() -> List[int]:
  """Processes that have libtpu's lock file open (libtpu runs one process at a time)."""
  holders = []
  for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
    if not pid.isdigit() or int(pid) == os.getpid():
      continue
    try:
      fds = os.listdir(f"/proc/{pid}/fd")
      if any(os.readlink(f"/proc/{pid}/fd/{fd}") == LIBTPU_LOCKFILE for fd in fds):
        holders.append(int(pid))
    except OSError:
      continue
  return holders


def _lock_error(holders: List[int]) -> ValueError:
  return ValueError(f"another libtpu process (pid {', '.join(map(str, holders)) or '?'}) holds "
                    f"{LIBTPU_LOCKFILE}; libtpu runs one process at a time: wait for it to end.")


# libtpu's start-up failure on a machine without a TPU when it is heavily loaded (seen at load
# average 5-40 on 2 cores; the same compile then succeeded): worth another start.
LIBTPU_START_FAILURE = "Failed to find host bounds for accelerator type"
LIBTPU_STARTS = 3


class LibtpuStartError(RuntimeError):
  """libtpu failed to start LIBTPU_STARTS times: the plan so far stands, the user runs again."""


class CompilerKilled(RuntimeError):
  """The compiler's process was killed by a signal: on this kind of machine, the kernel's
  out-of-memory killer (a compile's host memory grows with the batch: BERT-Large at 116 examples
  a v4 chip took over 14 GiB). libtpu prints its start warning in every process, so the
  warning alone does not tell a start failure from this."""


def compile_hlo_files(tpu: chips.TpuType, hlo_files: List[str],
                      log=print) -> List[Dict[str, Any]]:
  """Compiles HLO files for one replica of `tpu` in the compile environment (tpu/compile.py),
  starting the compiler's process again (at most LIBTPU_STARTS times) when libtpu fails to
  start as it does under heavy load."""
  check_compile_env()
  with tempfile.TemporaryDirectory() as scratch:
    request, result = os.path.join(scratch, "request.json"), os.path.join(scratch, "result.json")
    with open(request, "w", encoding="utf-8") as f:
      json.dump(dict(topology=tpu.topology, options=tpu.options, hlo_files=hlo_files), f)
    command = [compile_python(), "-m", "bert_tf.tpu.compile", request, result]
    for start in range(1, LIBTPU_STARTS + 1):
      holders = lock_holders()
      if holders:
        raise _lock_error(holders)
      status, stderr = _run_compiler(command, scratch)
      if not status:
        with open(result, encoding="utf-8") as f:
          return json.load(f)["results"]
      if "libtpu multi-process lockfile" in stderr:
        raise _lock_error(lock_holders())
      start_failed = status > 0 and LIBTPU_START_FAILURE in stderr  # a signal is no start failure
      if not start_failed or start == LIBTPU_STARTS:
        break
      log(f"  libtpu failed to start (\"{LIBTPU_START_FAILURE}\"; start {start} of "
          f"{LIBTPU_STARTS}): starting it again.")
    if start_failed:
      raise LibtpuStartError(f"libtpu failed to start {LIBTPU_STARTS} times "
                             f"(\"{LIBTPU_START_FAILURE}\"), as it does on a heavily loaded "
                             "machine: run again when it is quieter.")
    raise RuntimeError(f"the TPU compiler process failed:\n{stderr[-3000:]}")


def _run_compiler(command: List[str], scratch: str) -> Tuple[int, str]:
  """Runs the compiler's process; returns its exit status and stderr. Raises CompilerKilled,
  naming its peak host memory, when a signal killed it."""
  started = time.time()
  with open(os.path.join(scratch, "stderr.txt"), "w+", encoding="utf-8") as stderr:
    process = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=_REPO_ROOT),
                               cwd=_REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    _, wait_status, usage = os.wait4(process.pid, 0)
    process.returncode = status = os.waitstatus_to_exitcode(wait_status)
    stderr.seek(0)
    text = stderr.read()
  if status < 0:
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    raise CompilerKilled(
        f"the TPU compiler's process was killed by signal {-status} after "
        f"{time.time() - started:.0f} s, at {usage.ru_maxrss / 2**20:.1f} GiB of host memory "
        f"(this machine has {total / 2**30:.1f} GiB): most likely the kernel's out-of-memory "
        "killer; compiling a larger batch takes more host memory.")
  return status, text


# ---------------------------------------------------------------------------------------------
# FLOPs


def analytic_flops_per_example(config, task: str, seq: int, training: bool = True,
                               max_predictions_per_seq: int = 20, num_labels: int = 2,
                               slots: int = 1) -> float:
  """docs/tpu-planning.md's formula: matrix-multiply FLOPs of one example (x3 for a training
  step), or of one packed row of `slots` example slots (E), each with its own pooler and
  classifier or next-sentence head; max_predictions_per_seq is then the row's (M).

  Per layer 2*S*(4*H*H + 2*H*I) for the projections and feed-forward and 4*S*S*H for attention;
  then the task's head (MLM: 2*P*H*(H + V), the pooler 2*H*H, span/classifier/NSP logits).
  The backward pass costs twice the forward one.
  """
  h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
  forward = config.num_hidden_layers * (2 * seq * (4 * h * h + 2 * h * i) + 4 * seq * seq * h)
  if task == "squad":
    forward += 2 * seq * h * 2
  elif task == "classifier":
    forward += slots * (2 * h * h + 2 * h * num_labels)
  elif task == "pretraining":
    forward += 2 * max_predictions_per_seq * h * (h + v) + slots * (2 * h * h + 2 * h * 2)
  return float(forward * (3 if training else 1))


# ---------------------------------------------------------------------------------------------
# Packed rows


@dataclasses.dataclass(frozen=True)
class Packing:
  """The packed training rows a plan assumes: the figures the scripts log of their data
  (data/packing.py, data/packed_pretraining.py), which the planner cannot see."""
  examples_per_row: float  # on average
  max_examples_per_row: int  # E: every row's example slots
  max_predictions_per_row: int = 0  # M: pretraining's prediction slots a row

  def rows_per_step(self, train_batch_size: int, multiple: int, seq_length: int) -> int:
    """The rows a global step takes, as the scripts count them (whole rows for each of
    `multiple` replicas x micro-batches); a ValueError where the scripts refuse the batch."""
    from bert_tf.data import packing  # pylint: disable=import-outside-toplevel  # TensorFlow
    rows = packing.rows_per_step(train_batch_size, self.examples_per_row, 1, multiple)
    packing.check_step_examples(train_batch_size, rows, self.examples_per_row, multiple,
                                seq_length)
    return rows


def packing_plan(task: str, examples_per_row: float, max_examples_per_row: int = 0,
                 max_predictions_per_row: int = 0, max_predictions_per_seq: int = 20) -> Packing:
  """The flags' packed rows, checked (ValueErrors name the flags); 0 picks the bounds' defaults:
  E = ceil(examples_per_row), M = E x max_predictions_per_seq (the most a row can hold)."""
  if examples_per_row < 1:
    raise ValueError(f"--examples_per_row={examples_per_row:g}: expected 1 or more (a row holds "
                     "at least one example; 1: packing gains nothing).")
  slots = max_examples_per_row or math.ceil(examples_per_row)
  if slots < examples_per_row:
    raise ValueError(f"--examples_per_row={examples_per_row:g} exceeds --max_examples_per_row="
                     f"{slots}: the average cannot exceed the most a row holds.")
  if task != "pretraining":
    if max_predictions_per_row:
      raise ValueError("--max_predictions_per_row applies to --task=pretraining only.")
    return Packing(examples_per_row, slots)
  most = slots * max_predictions_per_seq
  predictions = max_predictions_per_row or most
  if not 1 <= predictions <= most:
    raise ValueError(f"--max_predictions_per_row={predictions}: expected 1 to {most} (a row's "
                     f"{slots} instances get at most --max_predictions_per_seq="
                     f"{max_predictions_per_seq} each).")
  return Packing(examples_per_row, slots, predictions)


# ---------------------------------------------------------------------------------------------
# One compiled step


@dataclasses.dataclass
class StepReport:
  """What the TPU compiler said about one step at one per-replica batch."""
  batch: int  # per replica
  compiles: bool
  error: str = ""
  memory: Optional[Dict[str, int]] = None
  flops: float = 0.0  # per replica
  seconds: float = 0.0  # compile time
  batch_bytes: int = 0  # of the features among the arguments; the rest are variables

  @property
  def total_bytes(self) -> int:
    """HBM the program needs: arguments, outputs not aliased to them, temporaries and code."""
    m = self.memory
    return (m["argument_size_in_bytes"] + m["output_size_in_bytes"] - m["alias_size_in_bytes"]
            + m["temp_size_in_bytes"] + m["generated_code_size_in_bytes"])

  @property
  def out_of_memory(self) -> bool:
    return not self.compiles and "RESOURCE_EXHAUSTED" in self.error


def first_line(error: str) -> str:
  """XLA's error without its stack of context lines."""
  lines = [line for line in error.splitlines() if line.strip()]
  return lines[0] if lines else error


class Planner:
  """Exports and compiles one task's steps for one TPU type, caching per batch."""

  def __init__(self, spec, tpu: chips.TpuType, scratch: str, log=print, predict_spec=None):
    self.spec = spec  # hlo_export.StepSpec; its batch_size is replaced per compile
    self.predict_spec = predict_spec or spec  # prediction is never packed
    self.tpu = tpu
    self.scratch = scratch
    self.log = log
    self._train: Dict[int, StepReport] = {}
    self.host_limited: Optional[int] = None  # set by largest_batch

  def _compile(self, kind: str, batches: List[int]) -> List[StepReport]:
    from bert_tf.tpu import hlo_export  # pylint: disable=import-outside-toplevel  # TensorFlow
    base = self.spec if kind == "train" else self.predict_spec
    paths = []
    for batch in batches:
      spec = dataclasses.replace(base, batch_size=batch)
      started = time.time()
      hlo = (hlo_export.train_step_hlo if kind == "train" else hlo_export.predict_step_hlo)(spec)
      path = os.path.join(self.scratch, f"{kind}_{batch}.hlo.pb")
      with open(path, "wb") as f:
        f.write(hlo)
      paths.append(path)
      self.log(f"  exported the {kind} step at {batch} per replica ({time.time() - started:.0f} s); "
               "compiling for the TPU...")
    started = time.time()
    results = compile_hlo_files(self.tpu, paths, self.log)
    # XLA's cost analysis counts a while loop's body once, and gradient accumulation is one: a
    # body that runs each micro-batch. Its count times K is the step's (the update outside the
    # loop, counted once here, is about 0.1% of a step: BERT-Large's 15.7 TFLOP were 4x short).
    repeats = base.gradient_accumulation_steps if kind == "train" else 1
    reports = [StepReport(batch=b, compiles=r["compiles"], error=r.get("error", ""),
                          memory=r.get("memory"), flops=r.get("flops", 0.0) * repeats,
                          seconds=r["seconds"],
                          batch_bytes=hlo_export.features_bytes(base, b))
               for b, r in zip(batches, results)]
    self.log(f"  compiled in {time.time() - started:.0f} s: " + ", ".join(
        f"{r.batch}: {'fits' if r.compiles else 'does not compile'}" for r in reports))
    return reports

  def train(self, batch: int) -> StepReport:
    """The training step's report at `batch` per replica (compiled once)."""
    if batch not in self._train:
      self._train[batch] = self._compile("train", [batch])[0]
    return self._train[batch]

  def predict(self, batch: int) -> StepReport:
    return self._compile("predict", [batch])[0]

  def largest_batch(self, start: StepReport, max_compiles: int,
                    too_large: Optional[int] = None) -> Tuple[int, Optional[int]]:
    """(largest per-replica batch known to compile, smallest known not to, or None).

    Memory grows about linearly with the batch, so the next try is where the line through the
    known fit meets the replica's HBM; then bisection, in steps of the accumulation count.
    """
    step = self.spec.gradient_accumulation_steps
    fits = start.batch if start.compiles else 0
    fails = too_large if start.compiles else start.batch
    known = start if start.compiles else None
    self.host_limited = None  # smallest batch whose compile ran out of host memory
    for _ in range(max_compiles):
      ceiling = min((b for b in (fails, self.host_limited) if b is not None), default=None)
      if ceiling is not None and ceiling - fits <= step:
        break
      if known is not None and ceiling is None:
        fixed = known.memory["argument_size_in_bytes"]
        per_example = max(known.total_bytes - fixed, 1) / known.batch
        guess = int((self.tpu.hbm_per_replica - fixed) / per_example)
        guess = guess // step * step
        if guess <= fits:  # the line says no larger batch fits, yet this one did: double it
          guess = 2 * fits
      else:
        guess = (fits + ceiling) // 2 // step * step
        if guess <= fits:
          guess = fits + step
      try:
        report = self.train(guess)
      except CompilerKilled as e:  # too big for this machine, not for the TPU: try below it
        self.log(f"  {guess} per replica: {e}")
        self.host_limited = guess
        continue
      except RuntimeError as e:  # its process died (seen under heavy load): keep what is known
        lines = [line for line in str(e).splitlines() if line.strip()]
        self.log(f"  the search stopped at {guess} per replica: {' '.join(lines[:2])}")
        break
      if report.compiles:
        fits, known = max(fits, guess), report
      elif report.out_of_memory:
        fails = guess if fails is None else min(fails, guess)
      else:
        raise RuntimeError(f"XLA refused batch {guess} for a reason other than memory: "
                           f"{first_line(report.error)}")
    return fits, fails


# ---------------------------------------------------------------------------------------------
# The command line

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The planner's flags (defined when it runs, so that importing it defines none)."""
  flags.DEFINE_enum("task", "squad", ["squad", "classifier", "pretraining"], "The task's step.")
  flags.DEFINE_string("bert_config_file", "bert_base_uncased",
                      "A bert_config.json, or the name of one in configs/ (bert_large, kcbert_base...).")
  flags.DEFINE_integer("max_seq_length", 384, "Sequence length.")
  flags.DEFINE_integer("train_batch_size", 32, "Global batch per optimizer step (all replicas).")
  flags.DEFINE_integer("gradient_accumulation_steps", 1, "Micro-batches per optimizer step.")
  flags.DEFINE_enum("mixed_precision", "mixed_bfloat16", ["float32", "mixed_bfloat16"],
                    "Dtype policy (what --mixed_precision=auto picks on a TPU: mixed_bfloat16).")
  flags.DEFINE_enum("optimizer", "adamw", ["adamw", "lamb"], "Optimizer.")
  flags.DEFINE_integer("max_predictions_per_seq", 20, "pretraining: masked positions per sequence.")
  flags.DEFINE_integer("num_labels", 2, "classifier: number of labels.")
  flags.DEFINE_bool("pack_sequences", True, "Plan the packed training step, as the scripts train "
                    "by default: rows of --max_seq_length holding several examples each, about "
                    "--train_batch_size examples a step. false: one example a row.")
  flags.DEFINE_float("examples_per_row", 1.0, "With --pack_sequences: the examples a row holds "
                     "on average, from a training log of the same data and --max_seq_length: "
                     "X / N of 'Packed training: N rows a step hold X examples on average', or "
                     "instances / rows of 'Packed ... into ... rows'. 1: packing gains nothing.")
  flags.DEFINE_integer("max_examples_per_row", 0, "With --pack_sequences: every row's example "
                       "slots, the 'up to N (instances) a row' of the same log's 'Packed ...' "
                       "line (0: the least --examples_per_row needs, rounded up).")
  flags.DEFINE_integer("max_predictions_per_row", 0, "pretraining with --pack_sequences: a row's "
                       "masked-LM slots, the 'N predictions a row' of the log's 'Packed ...' line "
                       "(0: --max_examples_per_row x --max_predictions_per_seq, the most a row "
                       "can need).")
  flags.DEFINE_string("tpu", "v3-8", f"TPU type: one of {', '.join(chips.TPU_TYPES)}.")
  flags.DEFINE_integer("num_train_steps", 0, "Steps to time (0: from --num_train_examples and "
                       "--num_train_epochs).")
  flags.DEFINE_integer("num_train_examples", 0, "Training examples (features) per epoch.")
  flags.DEFINE_float("num_train_epochs", 2.0, "Epochs, with --num_train_examples.")
  flags.DEFINE_float("mfu", 0.4, "Model FLOPs utilisation for the realistic time estimate.")
  flags.DEFINE_bool("search_batch", True, "Search the largest global batch that compiles.")
  flags.DEFINE_integer("search_compiles", 4, "At most this many extra compiles for the search.")
  flags.DEFINE_integer("predict_batch_size", 0, "Also compile the prediction step at this global "
                       "batch (0: skip).")


def resolve_config_file(name: str) -> str:
  """A path, or the name of a file in configs/ (with or without .json)."""
  if os.path.exists(name):
    return name
  candidate = os.path.join(_CONFIG_DIR, name if name.endswith(".json") else f"{name}.json")
  if os.path.exists(candidate):
    return candidate
  known = sorted(n[:-5] for n in os.listdir(_CONFIG_DIR) if n.endswith(".json"))
  raise ValueError(f"--bert_config_file={name}: no such file, nor a name in configs/ "
                   f"({', '.join(known)}).")


def _gb(size: float) -> str:
  return f"{size / 1e9:.2f} GB"


def _duration(seconds: float) -> str:
  if seconds < 60:
    return f"{seconds:.2g} s"
  hours, rest = divmod(int(seconds), 3600)
  return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def describe_step(name: str, report: StepReport, tpu: chips.TpuType, analytic: float,
                  steps: int, mfu: float, examples_per_row: float = 0.0) -> List[str]:
  """The lines the planner prints for one compiled step (global figures = replicas x one).

  With examples_per_row (packed) the batch counts rows and `analytic` is the formula of a row;
  FLOPs are then also given per row and per example (fewer as rows hold more examples).
  """
  replicas = tpu.replicas
  global_batch = report.batch * replicas
  if examples_per_row:
    batch = (f"{global_batch} rows a step ({report.batch} per replica) holding "
             f"{global_batch * examples_per_row:.1f} examples on average")
  else:
    batch = f"global batch {global_batch}" + (f" ({report.batch} per replica)"
                                              if report.compiles else "")
  if not report.compiles:
    return [f"{name}, {batch}: does NOT compile: {first_line(report.error)}"]
  m = report.memory
  flops = report.flops * replicas
  per_example = (f"{flops / global_batch:.4g} per row, "
                 f"{flops / (global_batch * examples_per_row):.4g} per example" if examples_per_row
                 else f"{flops / global_batch:.4g} per example")
  lines = [
      f"{name}, {batch}: compiles (XLA's TPU compiler, {report.seconds:.0f} s).",
      f"  HBM per replica: weights + optimizer state "
      f"{_gb(m['argument_size_in_bytes'] - report.batch_bytes)}, batch {_gb(report.batch_bytes)}"
      f", temporaries {_gb(m['temp_size_in_bytes'])}, "
      f"total {_gb(report.total_bytes)} of {_gb(tpu.hbm_per_replica)} "
      f"({100 * report.total_bytes / tpu.hbm_per_replica:.0f}%).",
      f"  FLOPs: {flops:.4g} per step, {per_example} (XLA's cost analysis); "
      f"docs/tpu-planning.md's formula: {analytic * global_batch:.4g} per step."]
  if steps:
    at_peak = report.flops * steps / tpu.peak_flops_per_replica
    lines.append(f"  {steps} steps: {_duration(at_peak)} at peak ({tpu.peak_flops_per_replica / 1e12:g}"
                 f" bf16 TFLOP/s per replica), {_duration(at_peak / mfu)} at {mfu:.0%} MFU.")
  return lines


def describe_search(fits: int, fails: Optional[int], tpu: chips.TpuType, accumulation: int,
                    examples_per_row: float = 0.0, host_limited: Optional[int] = None) -> str:
  """The line of the batch search's answer: (largest per-replica batch that compiled, smallest
  that did not or None); with examples_per_row (packed) the batch counts rows; host_limited:
  the smallest batch this machine lacked the host memory to compile."""
  does_not = " rows do not" if examples_per_row else " does not"
  bound = (f"exactly: {fails * tpu.replicas}{does_not}" if fails is not None
           and fails - fits <= accumulation else
           f"{fails * tpu.replicas}{does_not}" if fails is not None else "no larger one tried")
  if host_limited is not None and (fails is None or host_limited < fails):
    host = (f"{host_limited * tpu.replicas} took more host memory to compile than this machine "
            "has")
    bound = host if fails is None else f"{bound}; {host}"
  largest = (f"{fits * tpu.replicas} rows, about {fits * tpu.replicas * examples_per_row:.0f} "
             "examples on average" if examples_per_row else f"{fits * tpu.replicas}")
  return f"Largest global batch that compiles: {largest} ({bound})."


def _say(line: str) -> None:
  print(line, flush=True)


def training_rows(tpu: chips.TpuType, accumulation: int) -> Tuple[Optional[Packing], int]:
  """The flags' packed rows (None: --pack_sequences=false) and the rows of a global step:
  packed, the scripts' count for --train_batch_size; else the batch, whole per replica."""
  packing_flags = [name for name in ("examples_per_row", "max_examples_per_row",
                                     "max_predictions_per_row") if FLAGS[name].present]
  if FLAGS.pack_sequences:
    packed = packing_plan(FLAGS.task, FLAGS.examples_per_row, FLAGS.max_examples_per_row,
                          FLAGS.max_predictions_per_row, FLAGS.max_predictions_per_seq)
    return packed, packed.rows_per_step(FLAGS.train_batch_size, tpu.replicas * accumulation,
                                        FLAGS.max_seq_length)
  if packing_flags:
    raise ValueError(f"--{', --'.join(packing_flags)} describe{'' if packing_flags[1:] else 's'}"
                     " packed rows, which --pack_sequences=false turns off: drop one or the other.")
  if FLAGS.train_batch_size % (tpu.replicas * accumulation):
    raise ValueError(f"--train_batch_size={FLAGS.train_batch_size} is not a multiple of the "
                     f"{tpu.replicas} replicas of a {tpu.name} times "
                     f"--gradient_accumulation_steps={accumulation}.")
  return None, FLAGS.train_batch_size


def plan(log=_say) -> None:
  """The planner: checks the flags, compiles, prints."""
  from bert_tf.checkpoints import configs  # pylint: disable=import-outside-toplevel  # TensorFlow
  from bert_tf.tpu import hlo_export  # pylint: disable=import-outside-toplevel  # TensorFlow
  tpu = chips.tpu_type(FLAGS.tpu)
  config_file = resolve_config_file(FLAGS.bert_config_file)
  accumulation = FLAGS.gradient_accumulation_steps
  if accumulation < 1:
    raise ValueError(f"--gradient_accumulation_steps={accumulation}: expected 1 or more.")
  packed, rows = training_rows(tpu, accumulation)
  if FLAGS.predict_batch_size % tpu.replicas:
    raise ValueError(f"--predict_batch_size={FLAGS.predict_batch_size} is not a multiple of the "
                     f"{tpu.replicas} replicas of a {tpu.name}.")
  config = configs.BertConfig.from_json_file(config_file)
  if FLAGS.max_seq_length > config.max_position_embeddings:
    raise ValueError(f"--max_seq_length={FLAGS.max_seq_length} exceeds the model's "
                     f"max_position_embeddings={config.max_position_embeddings} in {config_file}.")
  check_compile_env()
  # Examples a row: packed, the data's average (the scripts' epochs count examples too).
  per_row = packed.examples_per_row if packed else 1
  steps = FLAGS.num_train_steps or int(FLAGS.num_train_examples * FLAGS.num_train_epochs
                                       / (rows * per_row))
  predict_spec = hlo_export.StepSpec(
      task=FLAGS.task, config=config, max_seq_length=FLAGS.max_seq_length,
      batch_size=rows // tpu.replicas, gradient_accumulation_steps=accumulation,
      mixed_precision=FLAGS.mixed_precision, optimizer=FLAGS.optimizer,
      max_predictions_per_seq=FLAGS.max_predictions_per_seq, num_labels=FLAGS.num_labels)
  spec = predict_spec  # prediction is never packed, as in the scripts
  if packed:
    spec = dataclasses.replace(spec, examples_per_row=packed.max_examples_per_row)
    if FLAGS.task == "pretraining":
      spec = dataclasses.replace(spec, max_predictions_per_seq=packed.max_predictions_per_row)
  analytic = analytic_flops_per_example(config, FLAGS.task, FLAGS.max_seq_length, True,
                                        spec.max_predictions_per_seq, FLAGS.num_labels,
                                        packed.max_examples_per_row if packed else 1)
  log(f"{tpu.name}: {tpu.replicas} replicas ({tpu.replica_kind}s) on {tpu.chips} chips, "
      f"{_gb(tpu.hbm_per_replica)} HBM and {tpu.peak_flops_per_replica / 1e12:g} bf16 TFLOP/s "
      f"per replica (Cloud TPU docs). Compile-time estimates: TF's CPU lowering of the step, "
      "compiled by libtpu; not run on a TPU.")
  packed_rows = ""
  if packed:
    packed_rows = (f", packed rows of {packed.examples_per_row:g} examples on average, at most "
                   f"{packed.max_examples_per_row}" + (
                       f" and {packed.max_predictions_per_row} predictions"
                       if FLAGS.task == "pretraining" else "") + " a row")
  log(f"{FLAGS.task} on {os.path.basename(config_file)}, seq {FLAGS.max_seq_length}, "
      f"{FLAGS.mixed_precision}, {FLAGS.optimizer}, accumulation {accumulation}{packed_rows}:")
  with tempfile.TemporaryDirectory() as scratch:
    planner = Planner(spec, tpu, scratch, log, predict_spec)
    report = planner.train(spec.batch_size)
    if not report.compiles and not report.out_of_memory:
      raise ValueError(f"XLA's TPU compiler refuses the step: {first_line(report.error)}")
    if report.out_of_memory:
      smallest = planner.train(accumulation)
      if not smallest.compiles:
        raise ValueError(f"the model does not fit a {tpu.name} even at one "
                         f"{'row' if packed else 'example'} per "
                         f"replica{' per micro-batch' if accumulation > 1 else ''}: "
                         f"{first_line(smallest.error)}")
    for line in describe_step("Training step", report, tpu, analytic, steps, FLAGS.mfu,
                              packed.examples_per_row if packed else 0.0):
      log(line)
    if FLAGS.search_batch:
      if report.compiles:
        fits, fails = planner.largest_batch(report, FLAGS.search_compiles)
      else:
        fits, fails = planner.largest_batch(smallest, FLAGS.search_compiles, report.batch)
      log(describe_search(fits, fails, tpu, accumulation, per_row if packed else 0.0,
                          planner.host_limited))
    if FLAGS.predict_batch_size:
      predict = planner.predict(FLAGS.predict_batch_size // tpu.replicas)
      forward = analytic_flops_per_example(config, FLAGS.task, FLAGS.max_seq_length, False,
                                           FLAGS.max_predictions_per_seq, FLAGS.num_labels)
      for line in describe_step("Prediction step", predict, tpu, forward, 0, FLAGS.mfu):
        log(line)


def main(argv: List[str]) -> None:
  with cli_errors.user_errors(argv):
    try:
      plan()
    except (LibtpuStartError, CompilerKilled) as e:  # one line, not a traceback: nothing is
      raise ValueError(str(e)) from None  # wrong with the input


if __name__ == "__main__":
  define_flags()
  app.run(main)
