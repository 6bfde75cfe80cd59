"""Tests for bert_tf.doctor: the report on this machine, and each contradiction with its fix.

Accelerators are faked where TensorFlow meets them (distribution.connect_tpu, device lists,
package versions); the plain run is the real one on this CPU machine.
"""

import dataclasses
import pathlib
import shutil
import subprocess
from typing import Dict, List

import pytest
import tensorflow as tf

from bert_tf import doctor
from bert_tf import tf_stacks
from bert_tf.training import distribution

from conftest import PROJECT_ROOT


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
  """Keeps the variables the doctor reads (TPU, cluster, GPU, credentials) out of every test."""
  for name in doctor.ENV_VARS:
    monkeypatch.delenv(name, raising=False)


# The TPU install of the stack this Python runs (`make install-tpu` on TF 2.20).
INSTALL_TPU = f"make {(tf_stacks.installed() or tf_stacks.DEFAULT).install_tpu}"


def installed(package: str) -> bool:
  return doctor.version(package) is not None


def has_accelerator() -> bool:
  return bool(tf.config.list_physical_devices("GPU")) or bool(
      doctor.inspect_machine(check_devices=False).tpu_device_files)


def cpu_machine(**changes) -> doctor.Machine:
  """A plain-TensorFlow CPU machine, as this one; tests change what they need."""
  machine = doctor.Machine(
      tf_version="2.20.0", tf_owner="tensorflow 2.20.0",
      build={"is_cuda_build": True, "cuda_version": "12.5.1", "cudnn_version": "9"},
      tpu_support=False, versions={name: None for name in doctor.PACKAGES}, env={}, cpus=2)
  return dataclasses.replace(machine, **changes)


def errors(problems: List[doctor.Problem]) -> List[doctor.Problem]:
  return [problem for problem in problems if problem.is_error]


# --- this machine, for real --------------------------------------------------------------------


@pytest.mark.skipif(has_accelerator(), reason="this machine has a GPU or TPU")
def test_the_doctor_on_this_cpu_machine_says_cpu_and_exits_0(
    capsys: pytest.CaptureFixture) -> None:
  # As `python -m bert_tf.doctor`, which tests/test_notebooks.py runs in its doctor cell.
  assert doctor.main([]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert "Runs here on    CPU" in lines
  assert lines[0].startswith(f"TensorFlow      {tf.__version__} from ")
  assert f"tf_keras {doctor.version('tf-keras')}" in lines[1]
  assert "Flags           nothing for the strategy (the default strategy on CPU)" in lines
  assert "Tokenizer       C (bert_tf/_wordpiece.c)" in lines
  assert not [line for line in lines if line.startswith("error:")]
  assert lines[-1] == "OK: nothing contradicts."


def test_a_tokenizer_left_in_python_is_a_warning_naming_make_tokenizer() -> None:
  problems = doctor.find_problems(cpu_machine(tokenizer_compiled=False))
  assert not errors(problems) and [p.fix for p in problems] == [
      "make tokenizer (needs a C compiler and the Python headers)"]
  assert "Tokenizer       Python (the C module is not built)" in doctor.render(
      cpu_machine(tokenizer_compiled=False), problems).splitlines()


def test_the_owner_of_tensorflow_is_the_wheel_whose_library_is_in_place() -> None:
  owner = doctor.tensorflow_owner()
  assert owner is not None and owner.endswith(" " + tf.__version__)
  # Only tensorflow-tpu's library registers TPU kernels: the owner and the support agree.
  assert owner.startswith("tensorflow-tpu ") == distribution.tpu_support()


@pytest.mark.skipif(installed("tensorflow-tpu"), reason="tensorflow-tpu is installed")
def test_a_local_tpu_with_plain_tensorflow_is_an_error_naming_make_install_tpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
  def connect_tpu(config: distribution.StrategyConfig):
    raise AssertionError("no TPU to probe without TPU support")

  monkeypatch.setattr(distribution, "connect_tpu", connect_tpu)
  monkeypatch.setenv("TPU_NAME", "local")
  assert doctor.main([]) == 1
  out = capsys.readouterr().out
  assert "error: This is meant to use a TPU (TPU_NAME=local), but the installed TensorFlow" in out
  assert f"  fix: `{INSTALL_TPU}`" in out
  assert "TPU: not checked (no TPU support)" in out
  # A TPU device file says the same without any variable.
  machine = cpu_machine(tpu_device_files=["/dev/vfio/0"])
  [problem] = doctor.find_problems(machine)
  assert "(TPU device /dev/vfio/0)" in problem.message and "`make install-tpu`" in problem.fix


def test_a_remote_tpu_is_probed_from_a_plain_tensorflow_client(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
  monkeypatch.setattr(distribution, "tpu_support", lambda: False)
  monkeypatch.setattr(distribution, "connect_tpu",
                      lambda config: (None, FakeTopology(num_tasks=1, num_tpus_per_task=8)))
  monkeypatch.setenv("TPU_NAME", "my-node")
  assert doctor.main([]) == 0
  out = capsys.readouterr().out
  assert "TPU: 8 cores on 1 host(s) at my-node" in out and "error:" not in out


@pytest.mark.parametrize("expect, fix", [("tpu", INSTALL_TPU), ("gpu", "make install-gpu")])
def test_expect_checks_the_installation_only(expect: str, fix: str,
                                             capsys: pytest.CaptureFixture) -> None:
  machine = doctor.inspect_machine(check_devices=False)
  usable = machine.tpu_support if expect == "tpu" else bool(
      machine.build.get("is_cuda_build") and machine.versions["nvidia-cudnn-cu12"])
  if usable:
    pytest.skip(f"this installation can use a {expect.upper()}")
  assert doctor.main([f"--expect={expect}"]) == 1
  out = capsys.readouterr().out
  assert f"  fix: `{fix}`" in out
  assert "Devices" not in out and "Runs here on" not in out  # devices are not touched


def test_gcs_path_runs_the_preflight_write_probe(tmp_path: pathlib.Path,
                                                 capsys: pytest.CaptureFixture) -> None:
  writable = tmp_path / "out"
  assert doctor.main([f"--gcs_path={writable}"]) == 0
  assert f"Write probe     {writable}: a file was written, read back and deleted" in (
      capsys.readouterr().out)
  assert list(writable.iterdir()) == []  # the probe file is gone
  blocker = tmp_path / "file"
  blocker.write_text("x")
  assert doctor.main([f"--gcs_path={blocker}/out"]) == 1
  out = capsys.readouterr().out
  assert f"error: --gcs_path={blocker}/out is not writable" in out


# --- TPUs, faked at distribution.connect_tpu ---------------------------------------------------


@dataclasses.dataclass
class FakeTopology:
  num_tasks: int
  num_tpus_per_task: int


@pytest.fixture
def tpu_installed(monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
  """TensorFlow's TPU build with the pinned libtpu, as this stack's TPU install leaves it."""
  stack = tf_stacks.installed() or tf_stacks.DEFAULT
  versions = {"tensorflow-tpu": tf.__version__, "libtpu": stack.tpu_pin("libtpu")}
  monkeypatch.setattr(distribution, "tpu_support", lambda: True)
  monkeypatch.setattr(doctor, "version", lambda package: versions.get(package))
  return versions


def test_a_reachable_pod_slice_gives_its_cores_and_the_flags_for_worker_0(
    tpu_installed: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture) -> None:
  asked = []

  def connect_tpu(config: distribution.StrategyConfig):
    asked.append(distribution.tpu_address(config))
    return None, FakeTopology(num_tasks=4, num_tpus_per_task=8)

  monkeypatch.setattr(distribution, "connect_tpu", connect_tpu)
  monkeypatch.setenv("TPU_NAME", "my-pod")
  monkeypatch.setenv("TPU_LOAD_LIBRARY", "0")
  assert doctor.main([]) == 0
  out = capsys.readouterr().out
  assert asked == ["my-pod"]
  assert "TPU: 32 cores on 4 host(s) at my-pod" in out
  assert "Runs here on    TPU (32 cores on 4 host(s))" in out
  assert "--use_tpu=True --tpu_name=my-pod (all paths gs://)" in out
  assert "--mixed_precision=mixed_bfloat16" in out and "multiples of 32 (the TPU cores)" in out


def test_a_tpu_that_does_not_answer_is_an_error(
    tpu_installed: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture) -> None:
  def connect_tpu(config: distribution.StrategyConfig):
    raise ValueError(f"No TPU found at --tpu_name=local (TPUs not found in the cluster.); "
                     f"{distribution.TPU_FIX}.")

  monkeypatch.setattr(distribution, "connect_tpu", connect_tpu)
  monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
  assert doctor.main([]) == 1
  out = capsys.readouterr().out
  assert "error: No TPU found at --tpu_name=local (TPUs not found in the cluster.)." in out
  assert "TPU: did not answer" in out and "Runs here on    CPU" in out


def test_tensorflow_tpu_overwritten_by_the_plain_wheel_names_the_reinstall() -> None:
  machine = cpu_machine(env={"TPU_NAME": "local"},
                        versions={**cpu_machine().versions, "tensorflow-tpu": "2.20.0"})
  [problem] = doctor.find_problems(machine)
  assert problem.is_error and "the TensorFlow files in place are tensorflow 2.20.0's" in (
      problem.message)
  assert problem.fix.startswith(f"`{tf_stacks.DEFAULT.tpu_reinstall()}`")
  # Off a TPU machine the same installation is only a warning.
  [problem] = doctor.find_problems(dataclasses.replace(machine, env={}))
  assert not problem.is_error


def test_libtpu_missing_is_an_error_and_off_its_pin_a_warning() -> None:
  tpu = cpu_machine(tpu_support=True, tf_owner="tensorflow-tpu 2.20.0", build={})
  [missing] = doctor.find_problems(tpu)
  assert missing.is_error and "libtpu is not installed" in missing.message
  pin = tf_stacks.DEFAULT.tpu_pin("libtpu")
  newer = dataclasses.replace(tpu, versions={**tpu.versions, "libtpu": "0.0.99"})
  [off_pin] = doctor.find_problems(newer)
  assert not off_pin.is_error and f"libtpu 0.0.99 is not the pinned {pin}" in off_pin.message
  pinned = dataclasses.replace(tpu, versions={**tpu.versions, "libtpu": pin})
  assert doctor.find_problems(pinned) == []


def test_a_named_tpu_from_its_own_host_warns_about_tpu_load_library() -> None:
  machine = cpu_machine(tpu_support=True, env={"TPU_NAME": "my-pod"},
                        tpu_device_files=["/dev/accel0"],
                        versions={**cpu_machine().versions,
                                  "libtpu": tf_stacks.DEFAULT.tpu_pin("libtpu")})
  [problem] = doctor.find_problems(machine)
  assert not problem.is_error and "`export TPU_LOAD_LIBRARY=0`" in problem.fix
  quiet = dataclasses.replace(machine, env={"TPU_NAME": "my-pod", "TPU_LOAD_LIBRARY": "0"})
  assert doctor.find_problems(quiet) == []


# --- the two TensorFlow stacks ----------------------------------------------------------------


@pytest.mark.parametrize("stack", tf_stacks.STACKS, ids=lambda stack: stack.tensorflow)
def test_the_stack_line_names_its_files_make_target_and_tpus(stack: tf_stacks.Stack) -> None:
  machine = cpu_machine(tf_version=f"{stack.tensorflow}.1")
  lines = doctor.render(machine, doctor.find_problems(machine)).splitlines()
  assert (f"Stack           TensorFlow {stack.tensorflow} ({stack.requirements}; for a TPU "
          f"{stack.tpu_requirements}, `make {stack.install_tpu}`)") in lines
  [tpus] = [line for line in lines if line.startswith("TPUs ")]
  assert "v2, v3, v4, v5e, v5p, v6e; TPU7x: none" in tpus and stack.google_tpus in tpus
  # Without TPU support it says how to get it, for both stacks, with their pins.
  [for_a_tpu] = [line for line in lines if line.startswith("For a TPU ")]
  for each in tf_stacks.STACKS:
    assert (f"`make {each.install_tpu}` (tensorflow-tpu {each.tpu_pin('tensorflow-tpu')}, "
            f"libtpu {each.tpu_pin('libtpu')})") in for_a_tpu
  assert lines[-1] == "OK: nothing contradicts."


def test_the_2_19_stack_names_its_own_tpu_install_and_pins() -> None:
  machine = cpu_machine(tf_version="2.19.1", tf_owner="tensorflow 2.19.1",
                        versions={**cpu_machine().versions, "tensorflow-tpu": "2.19.1"},
                        env={"TPU_NAME": "local"})
  [overwritten] = doctor.find_problems(machine)
  assert overwritten.fix == ("`pip install --no-deps --force-reinstall -r "
                             "requirements-tpu-tf219.txt` (or `make install-tpu-tf219`)")
  tpu = dataclasses.replace(machine, tpu_support=True, env={},
                            versions={**machine.versions, "libtpu": "0.0.14"})
  [off_pin] = doctor.find_problems(tpu)
  assert "libtpu 0.0.14 is not the pinned 0.0.10 of TensorFlow 2.19's stack" in off_pin.message
  pinned = dataclasses.replace(tpu, versions={**tpu.versions, "libtpu": "0.0.10"})
  assert doctor.find_problems(pinned) == []
  no_tpu = cpu_machine(tf_version="2.19.1", tpu_device_files=["/dev/vfio/0"])
  [problem] = doctor.find_problems(no_tpu)
  assert problem.fix.startswith("`make install-tpu-tf219`")


def test_another_tensorflow_is_a_warning_naming_both_installs() -> None:
  machine = cpu_machine(tf_version="2.21.0", tf_owner="tensorflow 2.21.0")
  [problem] = doctor.find_problems(machine)
  assert not problem.is_error and "TensorFlow 2.21.0 is none of bert_tf's stacks (2.20, 2.19)" in (
      problem.message)
  assert problem.fix == "`make install` or `make install-tf219`"
  assert "Stack           none of bert_tf's (TensorFlow 2.20, 2.19)" in doctor.render(
      machine, [problem])


@pytest.mark.parametrize("accelerator_type", ["tpu7x-8", "TPU7x-128"])
def test_a_tpu7x_is_an_error_even_with_tpu_support(accelerator_type: str) -> None:
  machine = cpu_machine(tpu_support=True, tpu_device_files=["/dev/vfio/0"],
                        accelerator_type=accelerator_type,
                        versions={**cpu_machine().versions, "libtpu": "0.0.14"})
  [problem] = doctor.find_problems(machine)
  assert problem.is_error and f"This TPU is a {accelerator_type} (tpu7x)" in problem.message
  assert "TensorFlow is not supported on TPU7x" in problem.message
  assert problem.fix.startswith("use a TPU of v2, v3, v4, v5e, v5p, v6e")


def test_a_tpu7x_host_is_not_probed(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
  def connect_tpu(config: distribution.StrategyConfig):
    raise AssertionError("TensorFlow cannot drive a TPU7x: no probe")

  monkeypatch.setattr(distribution, "connect_tpu", connect_tpu)
  monkeypatch.setattr(distribution, "tpu_support", lambda: True)
  monkeypatch.setattr(doctor, "_gce_attribute", lambda name: "tpu7x-8")
  monkeypatch.setattr(doctor.glob, "glob",
                      lambda pattern: ["/dev/vfio/0"] if "vfio" in pattern else [])
  assert doctor.main([]) == 1
  assert "error: This TPU is a tpu7x-8 (tpu7x)" in capsys.readouterr().out


def test_a_v5e_host_passes_its_accelerator_type_to_the_probe(
    tpu_installed: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture) -> None:
  monkeypatch.setattr(distribution, "connect_tpu",
                      lambda config: (None, FakeTopology(num_tasks=1, num_tpus_per_task=8)))
  monkeypatch.setattr(doctor, "_gce_attribute", lambda name: "v5litepod-8")
  monkeypatch.setattr(doctor.glob, "glob",
                      lambda pattern: ["/dev/vfio/0"] if "vfio" in pattern else [])
  assert doctor.main([]) == 0
  assert "Runs here on    TPU (v5litepod-8, 8 cores on 1 host(s))" in capsys.readouterr().out


# --- GPUs and clusters -------------------------------------------------------------------------


@pytest.mark.parametrize("gpus, precision, strategy", [
    ([("Tesla V100-SXM2-16GB", (7, 0))], "mixed_float16 (with loss scaling)", "one GPU"),
    ([("NVIDIA A100-SXM4-40GB", (8, 0))] * 2, "mixed_bfloat16", "MirroredStrategy over all GPUs"),
    ([("NVIDIA L4", (8, 9)), ("Tesla T4", (7, 5))], "mixed_float16 (with loss scaling)",
     "MirroredStrategy over all GPUs"),
], ids=["v100", "two_a100", "mixed"])
def test_gpu_flags_follow_the_compute_capability(gpus, precision: str, strategy: str) -> None:
  machine = cpu_machine(gpus=gpus, versions={**cpu_machine().versions,
                                             "nvidia-cudnn-cu12": "9.3.0.75"})
  assert doctor.recommended_flags(machine) == [
      f"nothing for the strategy ({strategy})", f"--mixed_precision={precision} --use_xla",
      f"batch sizes: multiples of {len(gpus)} (the GPUs)"]
  assert doctor.runs_on(machine) == f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}"
  assert doctor.find_problems(machine) == []
  assert f"compute capability {gpus[0][1][0]}.{gpus[0][1][1]}" in doctor.render(machine, [])


def test_an_nvidia_machine_whose_tensorflow_sees_no_gpu_is_an_error() -> None:
  machine = cpu_machine(nvidia_device_files=["/dev/nvidia0"])
  [problem] = doctor.find_problems(machine)
  assert "CUDA and cuDNN libraries" in problem.message and problem.fix == "`make install-gpu`"
  with_cuda = dataclasses.replace(
      machine, versions={**machine.versions, "nvidia-cudnn-cu12": "9.3.0.75"})
  [problem] = doctor.find_problems(with_cuda)
  assert "sees no GPU" in problem.message and "nvidia-smi" in problem.fix
  cpu_build = dataclasses.replace(machine, build={"is_cuda_build": False})
  [problem] = doctor.find_problems(cpu_build)
  assert "is not a CUDA build" in problem.message


@pytest.mark.parametrize("tf_config, complaint", [
    ("{'cluster': {}}", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG has no "cluster" object'),
    ('{"cluster": {"worker": ["h0:1"]}, "task": {"type": "chief", "index": 0}}',
     "names no job of its cluster (worker)"),
    ('{"cluster": {"worker": ["h0:1", "h1:1"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2 is outside its worker list of 2 host(s)"),
], ids=["not_json", "no_cluster", "unknown_job", "index"])
def test_a_malformed_tf_config_is_an_error_with_the_fix(tf_config: str, complaint: str) -> None:
  [problem] = doctor.find_problems(cpu_machine(env={"TF_CONFIG": tf_config}))
  assert problem.is_error and complaint in problem.message
  assert '"task": {"type": "worker", "index": 0}' in problem.fix


def test_a_well_formed_tf_config_is_fine(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
  tf_config = '{"cluster": {"worker": ["h0:1", "h1:1"]}, "task": {"type": "worker", "index": 1}}'
  assert doctor.find_problems(cpu_machine(env={"TF_CONFIG": tf_config})) == []
  monkeypatch.setenv("TF_CONFIG", "not json")
  assert doctor.main([]) == 1
  assert "error: TF_CONFIG is not valid JSON" in capsys.readouterr().out


# --- the install targets end with the doctor's check -------------------------------------------


# bert_tf itself, editable (its C tokenizer built in place), after the pinned requirements.
EDITABLE = "pip install -q --no-deps -e ."


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_install_targets_put_the_accelerator_wheel_last_and_check_it(
    tmp_path: pathlib.Path) -> None:
  def recipe(target: str) -> List[str]:
    done = subprocess.run(["make", "-n", target, f"VENV={tmp_path}/venv",
                           f"TF219_VENV={tmp_path}/venv219"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines()
            if "pip install" in line or "doctor" in line or "build_ext" in line]

  tpu = recipe("install-tpu")
  def command(line: str) -> str:  # What the venv's python runs: a module or setup.py.
    return line.split("/bin/python ", 1)[1].removeprefix("-m ")

  assert list(map(command, tpu)) == [
      "pip install -q --upgrade pip", "pip install -q -r requirements.txt",
      "pip install -q --no-deps --force-reinstall -r requirements-tpu.txt",
      EDITABLE, "bert_tf.doctor --expect=tpu"]
  assert tpu[-1].startswith("TPU_LOAD_LIBRARY=0 ")
  gpu = recipe("install-gpu")
  assert list(map(command, gpu))[1:] == [
      "pip install -q -r requirements.txt -r requirements-gpu.txt", EDITABLE,
      "bert_tf.doctor --expect=gpu"]
  assert not [line for line in recipe("install") if "tpu" in line or "gpu" in line]
  assert recipe("install")[-1].endswith(EDITABLE)  # bert_tf itself, with the C tokenizer.
  # The TensorFlow 2.19 stack: the same steps in its own venv, from its own files.
  tpu219 = recipe("install-tpu-tf219")
  assert list(map(command, tpu219)) == [
      "pip install -q --upgrade pip", "pip install -q -r requirements-tf219.txt",
      "pip install -q --no-deps --force-reinstall -r requirements-tpu-tf219.txt",
      EDITABLE, "bert_tf.doctor --expect=tpu"]
  assert all(line.split()[-1] != "requirements.txt" and "/venv219/bin/python" in line
             for line in tpu219) and tpu219[-1].startswith("TPU_LOAD_LIBRARY=0 ")
  assert list(map(command, recipe("install-tf219")))[1:] == [
      "pip install -q -r requirements-tf219.txt -r requirements-dev.txt", EDITABLE]
  # The README gives the same installs as plain pip commands.
  readme = (PROJECT_ROOT / "README.md").read_text()
  for command in ("pip install -r requirements.txt -r requirements-gpu.txt",
                  "pip install --no-deps --force-reinstall -r requirements-tpu.txt",
                  "pip install -r requirements-tf219.txt",
                  "pip install --no-deps --force-reinstall -r requirements-tpu-tf219.txt"):
    assert command in readme
