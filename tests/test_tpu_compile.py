"""The TPU compiler (libtpu, from `make tpu-compile-env`) accepts every task's real steps.

The training steps are the Trainer's own (tpu/hlo_export.py): the three tasks, float32 and
mixed_bfloat16, with and without gradient accumulation, and the packed rows of every task,
compiled for v3-8, v4-8 and v5e-8, so an op TPUs do not support fails here. Tests that compile
skip when the compile environment is absent; `make test` builds it. The planner's packed rows
(--pack_sequences) are checked without the compiler and compiled once through the planner.
"""

import json
import os
import subprocess
import sys

import pytest

from bert_tf.checkpoints import configs
from bert_tf.data import packing
from bert_tf.tpu import chips, hlo_export, plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_compiler = pytest.mark.skipif(
    not os.path.exists(plan.compile_python()),
    reason="no TPU compile environment (make tpu-compile-env)")

TINY = configs.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
STEPS = [(task, dtype, accumulation) for task in hlo_export.TASKS
         for dtype in ("float32", "mixed_bfloat16") for accumulation in (1, 2)]


def _spec(task, dtype="float32", accumulation=1, config=TINY, seq=16, batch=4, **kwargs):
  return hlo_export.StepSpec(task=task, config=config, max_seq_length=seq, batch_size=batch,
                             gradient_accumulation_steps=accumulation, mixed_precision=dtype,
                             max_predictions_per_seq=4, **kwargs)


@pytest.fixture(scope="module")
def step_files(tmp_path_factory):
  """Every training step of STEPS and every task's prediction step, exported once."""
  directory = tmp_path_factory.mktemp("hlo")
  files = {}
  for task, dtype, accumulation in STEPS:
    files[f"train {task} {dtype} accumulation {accumulation}"] = hlo_export.train_step_hlo(
        _spec(task, dtype, accumulation))
  for task in hlo_export.TASKS:
    files[f"train {task} packed"] = hlo_export.train_step_hlo(
        _spec(task, "mixed_bfloat16", examples_per_row=3))
  for task in hlo_export.TASKS:
    files[f"predict {task}"] = hlo_export.predict_step_hlo(_spec(task, "mixed_bfloat16"))
  paths = {}
  for name, hlo in files.items():
    paths[name] = str(directory / (name.replace(" ", "_") + ".pb"))
    with open(paths[name], "wb") as f:
      f.write(hlo)
  return paths


@needs_compiler
@pytest.mark.parametrize("tpu", ["v3-8", "v4-8", "v5e-8"])
def test_every_task_step_compiles_for_tpu(step_files, tpu):
  results = plan.compile_hlo_files(chips.tpu_type(tpu), list(step_files.values()))
  refused = {name: plan.first_line(r["error"])
             for name, r in zip(step_files, results) if not r["compiles"]}
  assert not refused
  for name, result in zip(step_files, results):
    assert result["flops"] > 0, name
    # The weights are arguments, and the training step updates them in place (aliased).
    assert result["memory"]["argument_size_in_bytes"] > 0, name
    if name.startswith("train"):
      assert result["memory"]["alias_size_in_bytes"] > 0, name


@needs_compiler
def test_compile_environment_smoke(tmp_path):
  """Fast: the pinned versions are installed and the experimental APIs still compile an HLO."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  with open(os.path.join(REPO, "requirements-tpu-compile.txt"), encoding="utf-8") as f:
    pins = dict(line.strip().split("==") for line in f if "==" in line and not line.startswith("#"))
  versions = subprocess.run(
      [plan.compile_python(), "-c", "import json, importlib.metadata as m; print(json.dumps("
       f"{{n: m.version(n) for n in {sorted(pins)!r}}}))"],
      capture_output=True, text=True, check=True).stdout
  assert json.loads(versions) == pins
  add_one = tf.function(lambda x: x + 1, jit_compile=True)
  path = tmp_path / "add_one.pb"
  path.write_bytes(add_one.experimental_get_compiler_ir(tf.zeros([8, 128]))(
      stage="hlo_serialized"))
  [result] = plan.compile_hlo_files(chips.tpu_type("v5e-8"), [str(path)])
  assert result["compiles"], result.get("error")
  assert result["flops"] == pytest.approx(8 * 128)


@needs_compiler
def test_xla_flops_match_the_readme_formula(tmp_path):
  """XLA's TPU cost analysis of a training step agrees with the analytic formula (5%).

  The formula counts matrix multiplies only; softmax, GELU, LayerNorm, dropout's random bits
  and the update add about 7% at hidden size 256 and fall as 1/hidden_size (1% at BERT-Base,
  docs/tpu-planning.md); hidden size 512 keeps the compile short.
  """
  config = configs.BertConfig(vocab_size=1024, hidden_size=512, num_hidden_layers=1,
                              num_attention_heads=8, intermediate_size=2048,
                              max_position_embeddings=128)
  spec = _spec("pretraining", "mixed_bfloat16", config=config, seq=128, batch=8)
  path = tmp_path / "step.pb"
  path.write_bytes(hlo_export.train_step_hlo(spec))
  [result] = plan.compile_hlo_files(chips.tpu_type("v5e-8"), [str(path)])
  analytic = 8 * plan.analytic_flops_per_example(config, "pretraining", 128, True, 4)
  assert result["flops"] == pytest.approx(analytic, rel=0.05)


def _plan(*args, env=None):
  """Runs the planner's command line; returns (exit status, stdout, stderr)."""
  done = subprocess.run([sys.executable, "-m", "bert_tf.tpu.plan", *args], cwd=REPO,
                        capture_output=True, text=True, env={**os.environ, **(env or {})},
                        check=False)
  return done.returncode, done.stdout, done.stderr


def _plan_tiny_squad(tmp_path, *args):
  """The planner on the tiny config's SQuAD step at seq 16, batch 32, for a v5e-8."""
  config = tmp_path / "tiny.json"
  config.write_text(TINY.to_json_string())
  return _plan("--tpu=v5e-8", f"--bert_config_file={config}", "--task=squad",
               "--max_seq_length=16", "--train_batch_size=32", *args)


def test_unknown_tpu_type_lists_the_known_ones():
  status, _, stderr = _plan("--tpu=v9-8")
  assert status and stderr.strip().splitlines()[-1] == (
      f"error: --tpu=v9-8: unknown TPU type; known: {', '.join(chips.TPU_TYPES)}.")


def test_missing_compile_environment_names_the_make_target(tmp_path):
  status, _, stderr = _plan("--tpu=v3-8", env=dict(
      BERT_TF_TPU_COMPILE_PYTHON=str(tmp_path / "none" / "python")))
  last = stderr.strip().splitlines()[-1]
  assert status and last.startswith("error: the TPU compile environment is missing")
  assert "make tpu-compile-env" in last


def test_another_libtpu_process_holding_the_lock_is_named(monkeypatch):
  monkeypatch.setenv("BERT_TF_TPU_COMPILE_PYTHON", sys.executable)
  holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'a');"
                             " print(flush=True); time.sleep(60)", plan.LIBTPU_LOCKFILE],
                            stdout=subprocess.PIPE)
  try:
    holder.stdout.readline()  # the file is open
    # Other libtpu processes on the machine may be listed too.
    with pytest.raises(ValueError, match=rf"another libtpu process \(pid [\d, ]*\b{holder.pid}\b"):
      plan.compile_hlo_files(chips.tpu_type("v3-8"), [])
  finally:
    holder.kill()
    holder.wait()


@needs_compiler
def test_a_model_that_does_not_fit_one_example_per_core_says_by_how_much(tmp_path):
  # Attention scores alone: 16 heads x 8192^2 float32 = 4 GiB a layer, against 8 GiB per core.
  config = tmp_path / "long.json"
  config.write_text(json.dumps(dict(vocab_size=64, hidden_size=64, num_hidden_layers=2,
                                    num_attention_heads=16, intermediate_size=64,
                                    max_position_embeddings=8192)))
  status, _, stderr = _plan("--tpu=v2-8", f"--bert_config_file={config}", "--task=classifier",
                            "--max_seq_length=8192", "--train_batch_size=8",
                            "--mixed_precision=float32", "--pack_sequences=false")
  last = stderr.strip().splitlines()[-1]
  assert status and last.startswith("error: the model does not fit a v2-8 even at one example")
  assert "exceed" in last.lower()


@needs_compiler
def test_planner_counts_every_micro_batch_of_an_accumulated_step(tmp_path):
  """XLA's cost analysis counts the accumulation loop's body once; the planner's FLOPs (and so
  its times) are the whole step's: 8 examples a replica cost about the same in 4 micro-batches
  as in one (uncounted, a quarter). The gap left (1.3% here) is the update, counted 4 times,
  and the accumulator's sums: a smaller share as the model grows."""
  config = configs.BertConfig(vocab_size=1024, hidden_size=512, num_hidden_layers=1,
                              num_attention_heads=8, intermediate_size=2048,
                              max_position_embeddings=128)
  flops = {}
  for accumulation in (1, 4):
    spec = _spec("pretraining", "mixed_bfloat16", accumulation=accumulation, config=config,
                 seq=128)
    planner = plan.Planner(spec, chips.tpu_type("v5e-8"), str(tmp_path), log=lambda line: None)
    report = planner.train(8)
    assert report.compiles
    flops[accumulation] = report.flops
  print(f"FLOPs with 4 micro-batches / with one: {flops[4] / flops[1]:.3f}")
  assert flops[4] == pytest.approx(flops[1], rel=0.1)


def test_planner_reports_memory_flops_and_time_of_the_training_and_prediction_steps(tmp_path):
  status, stdout, stderr = _plan_tiny_squad(
      tmp_path, "--num_train_steps=1000", "--search_batch=false", "--predict_batch_size=64",
      "--pack_sequences=false")
  assert status == 0, stderr
  assert "Training step, global batch 32 (4 per replica): compiles" in stdout
  assert "Prediction step, global batch 64 (8 per replica): compiles" in stdout
  train = stdout.split("Prediction step")[0]
  hbm = float(train.split("HBM per replica:")[1].split(" GB of ")[1].split(" GB")[0])
  assert hbm == pytest.approx(16.0)  # v5e's 16 GB per chip
  # The step's FLOPs and the formula's, both printed; and the time of 1000 steps at peak.
  xla = float(train.split("FLOPs: ")[1].split(" per step")[0])
  formula = float(train.split("formula: ")[1].split(" per step")[0])
  expected = 32 * plan.analytic_flops_per_example(TINY, "squad", 16)
  assert formula == pytest.approx(expected, rel=1e-3)
  assert xla > 0
  assert "1000 steps:" in train and "at 40% MFU" in train


def _flaky_compiler(tmp_path, failures: int) -> str:
  """A stand-in for the compile environment's python that fails as libtpu does when it cannot
  start (its message, status 1) `failures` times, then answers the request with one result."""
  script = tmp_path / "flaky_python"
  script.write_text(f"""#!{sys.executable}
import json, pathlib, sys
starts = pathlib.Path({str(tmp_path / 'starts')!r})
n = int(starts.read_text()) + 1 if starts.exists() else 1
starts.write_text(str(n))
if n <= {failures}:
  sys.exit("Failed to find host bounds for accelerator type: WARNING: could not determine TPU "
           "accelerator type")
pathlib.Path(sys.argv[-1]).write_text(json.dumps(dict(results=[dict(compiles=True, seconds=1.0)])))
""")
  script.chmod(0o755)
  return str(script)


def test_libtpu_that_fails_to_start_is_started_again(tmp_path, monkeypatch):
  monkeypatch.setenv("BERT_TF_TPU_COMPILE_PYTHON", _flaky_compiler(tmp_path, failures=2))
  monkeypatch.setattr(plan, "lock_holders", lambda: [])  # a real libtpu may run beside the test
  logged = []
  assert plan.compile_hlo_files(chips.tpu_type("v3-8"), [], logged.append) == [
      dict(compiles=True, seconds=1.0)]
  assert (tmp_path / "starts").read_text() == "3" and len(logged) == 2
  assert logged[0].startswith('  libtpu failed to start ("Failed to find host bounds for '
                              'accelerator type"; start 1 of 3): starting it again.')


def test_libtpu_that_never_starts_is_one_error_line(tmp_path, monkeypatch):
  monkeypatch.setenv("BERT_TF_TPU_COMPILE_PYTHON", _flaky_compiler(tmp_path, failures=99))
  monkeypatch.setattr(plan, "lock_holders", lambda: [])
  with pytest.raises(plan.LibtpuStartError, match="libtpu failed to start 3 times"):
    plan.compile_hlo_files(chips.tpu_type("v3-8"), [], lambda line: None)
  (tmp_path / "starts").unlink()
  status, _, stderr = _plan("--tpu=v3-8", "--task=classifier", "--bert_config_file=bert_tiny",
                            "--max_seq_length=32", "--train_batch_size=8", "--search_batch=false",
                            env=dict(BERT_TF_TPU_COMPILE_PYTHON=str(tmp_path / "flaky_python")))
  last = stderr.strip().splitlines()[-1]
  assert status and last.startswith("error: libtpu failed to start 3 times"), stderr[-2000:]
  assert "Traceback" not in stderr and (tmp_path / "starts").read_text() == "3"


def test_a_compiler_killed_by_a_signal_is_not_taken_for_a_start_failure(tmp_path, monkeypatch):
  """libtpu prints its start warning in every process; one the kernel then kills (its OOM killer
  took a 14 GiB compile) is named as killed, with its memory, and not started again."""
  script = tmp_path / "killed_python"
  script.write_text(f"""#!{sys.executable}
import os, pathlib, signal, sys
starts = pathlib.Path({str(tmp_path / 'starts')!r})
starts.write_text(str(int(starts.read_text()) + 1 if starts.exists() else 1))
sys.stderr.write("Failed to find host bounds for accelerator type\\n")
sys.stderr.flush()
memory = bytearray(300 * 2**20)  # touched: counted in the peak
os.kill(os.getpid(), signal.SIGKILL)
""")
  script.chmod(0o755)
  monkeypatch.setenv("BERT_TF_TPU_COMPILE_PYTHON", str(script))
  monkeypatch.setattr(plan, "lock_holders", lambda: [])
  logged = []
  with pytest.raises(plan.CompilerKilled) as killed:
    plan.compile_hlo_files(chips.tpu_type("v3-8"), [], logged.append)
  message = str(killed.value)
  assert message.startswith("the TPU compiler's process was killed by signal 9 after ")
  assert "most likely the kernel's out-of-memory killer" in message
  peak = float(message.split(" GiB of host memory")[0].rsplit(" ", 1)[1])
  assert peak >= 0.25, message  # GiB: it touched 300 MiB
  assert (tmp_path / "starts").read_text() == "1" and logged == []


def test_the_search_goes_on_below_a_batch_too_big_for_the_host(tmp_path):
  """A compile the host cannot hold says nothing about the TPU: the search bisects below it and
  says why it stopped there."""
  tpu = chips.tpu_type("v5e-8")
  logged = []
  planner = plan.Planner(_spec("classifier"), tpu, str(tmp_path), logged.append)
  memory = dict(argument_size_in_bytes=10**9, output_size_in_bytes=0, alias_size_in_bytes=0,
                temp_size_in_bytes=10**9, generated_code_size_in_bytes=0)
  fits = plan.StepReport(batch=4, compiles=True, memory=memory)
  tried = []

  def compile_below_40(batch):
    tried.append(batch)
    if batch >= 40:
      raise plan.CompilerKilled("killed by signal 9")
    return plan.StepReport(batch=batch, compiles=True, memory=memory)

  planner.train = compile_below_40
  assert planner.largest_batch(fits, max_compiles=3) == (32, None)
  assert tried == [60, 32, 46] and planner.host_limited == 46
  assert logged == ["  60 per replica: killed by signal 9", "  46 per replica: killed by signal 9"]
  assert plan.describe_search(32, None, tpu, 1, host_limited=46) == (
      "Largest global batch that compiles: 256 (368 took more host memory to compile than this "
      "machine has).")
  assert plan.describe_search(32, 60, tpu, 1, host_limited=46).endswith(
      "(480 does not; 368 took more host memory to compile than this machine has).")


def test_a_compiler_process_that_dies_during_the_search_keeps_what_is_known(tmp_path):
  """The search reports the largest batch compiled so far when a later compile's process fails
  (libtpu once failed to initialise under heavy load), instead of losing the plan to a traceback."""
  tpu = chips.tpu_type("v5e-8")
  logged = []
  planner = plan.Planner(_spec("classifier"), tpu, str(tmp_path), logged.append)
  fits = plan.StepReport(batch=4, compiles=True, memory=dict(
      argument_size_in_bytes=10**9, output_size_in_bytes=0, alias_size_in_bytes=0,
      temp_size_in_bytes=10**9, generated_code_size_in_bytes=0))

  def dying_compile(batch):
    raise RuntimeError("the TPU compiler process failed:\nFailed to find host bounds")

  planner.train = dying_compile
  assert planner.largest_batch(fits, max_compiles=2) == (4, None)
  assert logged == ["  the search stopped at 60 per replica: the TPU compiler process failed: "
                    "Failed to find host bounds"]


# ---------------------------------------------------------------------------------------------
# Packed rows (--pack_sequences, the scripts' default)


def test_packing_flags_default_to_the_least_rows_and_slots_and_refuse_impossible_figures():
  assert plan.packing_plan("squad", 1.0) == plan.Packing(1.0, 1)
  assert plan.packing_plan("classifier", 6.67) == plan.Packing(6.67, 7)
  assert plan.packing_plan("classifier", 6.67, 12) == plan.Packing(6.67, 12)
  # Pretraining: M defaults to the most E instances can get, E x max_predictions_per_seq.
  assert plan.packing_plan("pretraining", 1.66, 8, 0, 20) == plan.Packing(1.66, 8, 160)
  assert plan.packing_plan("pretraining", 1.66, 8, 21, 20) == plan.Packing(1.66, 8, 21)
  with pytest.raises(ValueError, match=r"^--examples_per_row=0.5: expected 1 or more"):
    plan.packing_plan("squad", 0.5)
  with pytest.raises(ValueError, match=r"^--examples_per_row=3.5 exceeds --max_examples_per_row=3"):
    plan.packing_plan("squad", 3.5, 3)
  with pytest.raises(ValueError, match=r"^--max_predictions_per_row applies to --task=pretraining"):
    plan.packing_plan("classifier", 2.0, 0, 20)
  with pytest.raises(ValueError, match=r"^--max_predictions_per_row=41: expected 1 to 40"):
    plan.packing_plan("pretraining", 1.5, 2, 41, 20)


def test_packed_rows_a_step_are_the_scripts_count_for_the_batch():
  # 32 examples at 2.3 a row are 13.9 rows; 8 replicas take whole rows: 16, as the scripts
  # take (data/packing.py's rows_per_step over the data's examples and rows).
  assert plan.Packing(2.3, 4).rows_per_step(32, 8, 384) == 16 == packing.rows_per_step(
      32, 2300, 1000, 8)
  assert plan.Packing(2.3, 4).rows_per_step(32, 16, 384) == 16  # 8 replicas x 2 micro-batches
  assert plan.Packing(1.0, 1).rows_per_step(256, 8, 128) == 256  # no gain: rows are examples
  # Where whole rows per replica cannot make about the batch, the scripts refuse it: so does this.
  with pytest.raises(ValueError, match=r"a step of 8 row\(s\).*about 24 examples, not "
                     r"--train_batch_size=8: raise --train_batch_size to at least 24"):
    plan.Packing(3.0, 4).rows_per_step(8, 8, 384)


def test_the_formula_of_a_packed_row_counts_each_slots_heads():
  one = plan.analytic_flops_per_example(TINY, "classifier", 16, True, num_labels=3)
  row = plan.analytic_flops_per_example(TINY, "classifier", 16, True, num_labels=3, slots=4)
  h = TINY.hidden_size
  assert row - one == 3 * 3 * (2 * h * h + 2 * h * 3)  # three more poolers and classifiers
  squad_row = plan.analytic_flops_per_example(TINY, "squad", 16, slots=4)
  assert squad_row == plan.analytic_flops_per_example(TINY, "squad", 16)  # per position
  pretraining_row = plan.analytic_flops_per_example(TINY, "pretraining", 16, True, 21, slots=8)
  assert pretraining_row == plan.analytic_flops_per_example(TINY, "pretraining", 16, True, 21) + (
      3 * 7 * (2 * h * h + 2 * h * 2))


def _report(batch, flops=1e12):
  return plan.StepReport(batch=batch, compiles=True, flops=flops, seconds=30, memory=dict(
      argument_size_in_bytes=2 * 10**9, output_size_in_bytes=0, alias_size_in_bytes=0,
      temp_size_in_bytes=10**9, generated_code_size_in_bytes=0), batch_bytes=10**6)


def test_a_packed_step_is_described_in_rows_and_examples_and_costs_less_per_example():
  tpu = chips.tpu_type("v5e-8")
  unpacked = plan.describe_step("Training step", _report(4), tpu, 1e11, 100, 0.4)
  assert unpacked[0] == ("Training step, global batch 32 (4 per replica): compiles (XLA's TPU "
                         "compiler, 30 s).")
  assert "FLOPs: 8e+12 per step, 2.5e+11 per example (XLA's cost analysis); " in unpacked[2]
  packed = {per_row: plan.describe_step("Training step", _report(2), tpu, 1e11, 100, 0.4, per_row)
            for per_row in (2.0, 4.0)}
  assert packed[2.0][0] == ("Training step, 16 rows a step (2 per replica) holding 32.0 examples "
                            "on average: compiles (XLA's TPU compiler, 30 s).")
  assert "FLOPs: 8e+12 per step, 5e+11 per row, 2.5e+11 per example (XLA's cost analysis); " \
         "docs/tpu-planning.md's formula: 1.6e+12 per step." in packed[2.0][2]
  assert "5e+11 per row, 1.25e+11 per example" in packed[4.0][2]  # twice the examples a row
  assert packed[2.0][3] == unpacked[3]  # the time of the steps: the same FLOPs a step
  assert plan.describe_search(6, 7, tpu, 1, 2.5) == (
      "Largest global batch that compiles: 48 rows, about 120 examples on average (exactly: 56 "
      "rows do not).")
  assert plan.describe_search(6, None, tpu, 1) == (
      "Largest global batch that compiles: 48 (no larger one tried).")


@pytest.mark.parametrize("args, error", [
    (["--examples_per_row=0.5"], "error: --examples_per_row=0.5: expected 1 or more"),
    (["--pack_sequences=false", "--examples_per_row=2"],
     "error: --examples_per_row describes packed rows, which --pack_sequences=false turns off"),
    (["--train_batch_size=8", "--examples_per_row=3"],
     "error: --pack_sequences: rows of 384 tokens hold 3.0 training examples on average")])
def test_packing_flags_the_scripts_would_refuse_are_one_error_line(args, error):
  status, _, stderr = _plan("--tpu=v5e-8", *args)
  assert status and stderr.strip().splitlines()[-1].startswith(error)


@needs_compiler
def test_planner_compiles_the_packed_step_at_the_scripts_rows(tmp_path):
  status, stdout, stderr = _plan_tiny_squad(
      tmp_path, "--examples_per_row=2", "--max_examples_per_row=3", "--num_train_examples=3200",
      "--num_train_epochs=1", "--search_batch=false")
  assert status == 0, stderr
  assert "squad on tiny.json, seq 16, mixed_bfloat16, adamw, accumulation 1, packed rows of 2 " \
         "examples on average, at most 3 a row:" in stdout
  # 32 examples at 2 a row: 16 rows, 2 per replica of a v5e-8.
  assert "Training step, 16 rows a step (2 per replica) holding 32.0 examples on average: " \
         "compiles" in stdout
  flops = stdout.split("FLOPs: ")[1]
  per_step, per_row, per_example = (float(flops.split(f" per {unit}")[0].split(", ")[-1])
                                    for unit in ("step", "row", "example"))
  assert per_row == pytest.approx(per_step / 16, rel=1e-3)
  assert per_example == pytest.approx(per_row / 2, rel=1e-3)
  formula = float(stdout.split("formula: ")[1].split(" per step")[0])
  assert formula == pytest.approx(16 * plan.analytic_flops_per_example(TINY, "squad", 16, slots=3),
                                  rel=1e-3)
  assert "100 steps:" in stdout  # 3,200 examples at 32 a step
