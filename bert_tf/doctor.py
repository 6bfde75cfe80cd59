"""What this machine can run bert_tf on, and what is wrong with it, on one screen.

  python -m bert_tf.doctor [--gcs_path=gs://BUCKET/DIR] [--expect=gpu|tpu]

It reports the installed TensorFlow (version, the wheel whose files are in `tensorflow/`, the CUDA
and cuDNN it was built with, TPU support or not), the tensorflow-tpu, libtpu and tf_keras versions,
which of bert_tf's two stacks that is (TensorFlow 2.20 or 2.19, `bert_tf.tf_stacks`), the TPU
generations TensorFlow runs on (v2 to v6e; none for TPU7x) and how to install for a TPU,
the devices TensorFlow sees (GPU names and compute capability; TPU cores and hosts when a TPU is
reachable), the environment variables that steer TPUs and multi-worker runs, Google Cloud
credentials, and the flags to use here. Each contradiction (a TPU machine with a TensorFlow that
cannot drive a TPU, a TF_CONFIG that is not a cluster, ...) is an `error:` line with its fix, and
the exit status is then 1.

`--gcs_path` adds the scripts' preflight probe (`gcs.check_inputs_and_output`: a file written,
read back and deleted there). `--expect` checks only the installation, without touching devices:
`make install-gpu` and `make install-tpu` end with it.
"""

import argparse
import dataclasses
import glob
import importlib.metadata
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import google.auth
import google.auth.exceptions
import requests
import tensorflow as tf

from bert_tf import tf_stacks
from bert_tf import tokenization
from bert_tf.io import gcs
from bert_tf.training import distribution

# The variables that change what TensorFlow finds: TPU address and library loading (the PJRT
# pair is what Google's TF-on-TPU-VM tests export for the PJRT runtime), cluster, GPUs, credentials.
ENV_VARS = ("TPU_NAME", "COLAB_TPU_ADDR", "TF_CONFIG", "TPU_LOAD_LIBRARY", "TPU_LIBRARY_PATH",
            "PJRT_DEVICE", "NEXT_PLUGGABLE_DEVICE_USE_C_API", "TF_PLUGGABLE_DEVICE_LIBRARY_PATH",
            "CUDA_VISIBLE_DEVICES", "GOOGLE_APPLICATION_CREDENTIALS")
# The wheels that can own the `tensorflow/` package; the last one installed wins.
TENSORFLOW_WHEELS = ("tensorflow-tpu", "tensorflow", "tensorflow-cpu")
# A file every TensorFlow wheel has and whose size differs between them (1019 MB in tensorflow
# 2.20.0, 733 MB in tensorflow-tpu 2.20.0): which wheel's RECORD matches it owns the package.
_OWNER_PROBE = "tensorflow/libtensorflow_cc.so.2"
PACKAGES = ("tensorflow-tpu", "libtpu", "tf-keras", "nvidia-cudnn-cu12")
# Device files of a TPU host: /dev/accel* up to v4, VFIO groups from v5e on.
_TPU_DEVICE_GLOBS = ("/dev/accel*", "/dev/vfio/[0-9]*")
_NVIDIA_DEVICE_GLOB = "/dev/nvidia[0-9]*"
_GCE_METADATA = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/"
_BF16_CAPABILITY = (8, 0)  # Ampere and newer compute bfloat16 natively


@dataclasses.dataclass
class Problem:
  """One thing wrong here: errors make the exit status 1, warnings do not."""
  message: str
  fix: str
  is_error: bool = True


@dataclasses.dataclass
class Tpu:
  """A TPU that answered: its cores and hosts, and its type when GCE metadata says."""
  cores: int
  hosts: int
  address: str
  accelerator_type: Optional[str] = None


@dataclasses.dataclass
class Machine:
  """What the doctor found, as plain values (tests build one by hand)."""
  tf_version: str
  tf_owner: Optional[str]
  build: Dict[str, object]
  tpu_support: bool
  versions: Dict[str, Optional[str]]
  env: Dict[str, str]
  tpu_device_files: List[str] = dataclasses.field(default_factory=list)
  nvidia_device_files: List[str] = dataclasses.field(default_factory=list)
  cpus: int = 1
  gpus: List[Tuple[str, Optional[Tuple[int, int]]]] = dataclasses.field(default_factory=list)
  tpu: Optional[Tpu] = None
  tpu_error: Optional[str] = None
  credentials: Optional[str] = None
  devices_checked: bool = True
  tokenizer_compiled: bool = True
  accelerator_type: Optional[str] = None  # This TPU VM's, from GCE metadata.

  @property
  def stack(self) -> Optional[tf_stacks.Stack]:
    """Which of bert_tf's TensorFlow stacks is installed, or None."""
    return tf_stacks.stack_for(self.tf_version)

  @property
  def tpu_stack(self) -> tf_stacks.Stack:
    """The stack whose TPU install fits here: the installed one, else the default."""
    return self.stack or tf_stacks.DEFAULT


def version(package: str) -> Optional[str]:
  """The installed version of a distribution, or None."""
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def tensorflow_owner() -> Optional[str]:
  """'tensorflow-tpu 2.20.0': the wheel whose copy of the TensorFlow library is the installed one.

  tensorflow-tpu and tensorflow write the same files; pip records both, and the files on disk
  are those of whichever was installed last. None for a build pip did not install.
  """
  for name in TENSORFLOW_WHEELS:
    try:
      dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
      continue
    for record in dist.files or ():
      if record.as_posix() == _OWNER_PROBE and record.size is not None:
        path = record.locate()
        if os.path.exists(path) and os.path.getsize(path) == record.size:
          return f"{name} {dist.version}"
  return None


def _gce_attribute(name: str) -> Optional[str]:
  """A GCE instance attribute (e.g. a TPU VM's accelerator-type), or None off GCE."""
  try:
    response = requests.get(_GCE_METADATA + name, headers={"Metadata-Flavor": "Google"},
                            timeout=1)
  except requests.RequestException:
    return None
  return response.text.strip() if response.ok else None


def _credentials() -> Optional[str]:
  """What Application Default Credentials resolve to ('... for project P'), or None."""
  try:
    credentials, project = google.auth.default()
  except google.auth.exceptions.GoogleAuthError:
    return None
  return f"{type(credentials).__name__}" + (f" for project {project}" if project else "")


def tpu_machine(machine: Machine) -> Optional[str]:
  """Why this looks like a machine meant to use a TPU (a TPU variable or device), or None."""
  for name in ("TPU_NAME", "COLAB_TPU_ADDR"):
    if machine.env.get(name):
      return f"{name}={machine.env[name]}"
  return local_tpu(machine)


def unsupported_tpu(machine: Machine) -> Optional[str]:
  """The generation of this host's TPU when TensorFlow cannot drive it (TPU7x), else None."""
  if machine.accelerator_type and not tf_stacks.tensorflow_runs_on(machine.accelerator_type):
    return tf_stacks.tpu_generation(machine.accelerator_type)
  return None


def local_tpu(machine: Machine) -> Optional[str]:
  """Why the TPU would be this machine's own (TPU devices, TPU_NAME=local), or None.

  Only then must TensorFlow itself be the TPU build: a remote TPU's hosts run its kernels.
  """
  if machine.tpu_device_files:
    return f"TPU device {machine.tpu_device_files[0]}"
  if machine.env.get("TPU_NAME") == distribution.LOCAL_TPU:
    return f"TPU_NAME={distribution.LOCAL_TPU}"
  return None


def _tpu_config(env: Dict[str, str]) -> distribution.StrategyConfig:
  """The TPU the scripts would use here: TPU_NAME or COLAB_TPU_ADDR if set, else this host's."""
  named = env.get("TPU_NAME") or env.get("COLAB_TPU_ADDR")
  return distribution.StrategyConfig(use_tpu=True,
                                     tpu_name=None if named else distribution.LOCAL_TPU)


def probe_tpu(env: Dict[str, str], accelerator_type: Optional[str] = None
              ) -> Tuple[Optional[Tpu], Optional[str]]:
  """Initialises the TPU the scripts would use; (Tpu, None) or (None, why not).

  `accelerator_type` is this host's, which is the TPU's only when the address is local.
  """
  config = _tpu_config(env)
  try:
    _, topology = distribution.connect_tpu(config)
  except ValueError as e:
    return None, str(e)
  address = distribution.tpu_address(config) or "auto-detected"
  return Tpu(cores=topology.num_tasks * topology.num_tpus_per_task, hosts=topology.num_tasks,
             address=address, accelerator_type=accelerator_type if address == "local" else None
             ), None


def _gpus() -> List[Tuple[str, Optional[Tuple[int, int]]]]:
  """(name, compute capability) of each GPU TensorFlow sees."""
  found = []
  for gpu in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(gpu)
    found.append((details.get("device_name", gpu.name), details.get("compute_capability")))
  return found


def inspect_machine(check_devices: bool = True) -> Machine:
  """Reads the installation and, with `check_devices`, the devices and credentials."""
  machine = Machine(
      tf_version=tf.__version__, tf_owner=tensorflow_owner(),
      build=dict(tf.sysconfig.get_build_info()), tpu_support=distribution.tpu_support(),
      versions={package: version(package) for package in PACKAGES},
      env={name: os.environ[name] for name in ENV_VARS if os.environ.get(name)},
      tpu_device_files=sorted(f for pattern in _TPU_DEVICE_GLOBS for f in glob.glob(pattern)),
      nvidia_device_files=sorted(glob.glob(_NVIDIA_DEVICE_GLOB)), cpus=os.cpu_count() or 1,
      devices_checked=check_devices, tokenizer_compiled=tokenization._wordpiece is not None)
  if check_devices:
    machine.gpus = _gpus()
    if machine.tpu_device_files:
      machine.accelerator_type = _gce_attribute("accelerator-type")
    if (tpu_machine(machine) and (machine.tpu_support or not local_tpu(machine))
        and not unsupported_tpu(machine)):
      machine.tpu, machine.tpu_error = probe_tpu(machine.env, machine.accelerator_type)
    machine.credentials = _credentials()
  return machine


def _tf_config_problem(value: str) -> Optional[Problem]:
  """What is wrong with a TF_CONFIG value for MultiWorkerMirroredStrategy, or None."""
  fix = ("set it on each host to JSON like "
         "'{\"cluster\": {\"worker\": [\"host0:12345\", \"host1:12345\"]}, "
         "\"task\": {\"type\": \"worker\", \"index\": 0}}' (index 1 on host1), or unset it")
  try:
    parsed = json.loads(value)
  except json.JSONDecodeError as e:
    return Problem(f"TF_CONFIG is not valid JSON ({e}).", fix)
  if not isinstance(parsed, dict) or not isinstance(parsed.get("cluster"), dict):
    return Problem("TF_CONFIG has no \"cluster\" object.", fix)
  task = parsed.get("task") or {}
  jobs = parsed["cluster"]
  if not isinstance(task, dict) or task.get("type") not in jobs:
    return Problem(f"TF_CONFIG's task {task!r} names no job of its cluster "
                   f"({', '.join(jobs) or 'none'}).", fix)
  index, hosts = task.get("index", 0), jobs[task["type"]]
  if not isinstance(index, int) or not 0 <= index < len(hosts):
    return Problem(f"TF_CONFIG's task index {index!r} is outside its {task['type']} list of "
                   f"{len(hosts)} host(s).", fix)
  return None


def _tpu_problems(machine: Machine, expect: Optional[str]) -> List[Problem]:
  """A TPU TensorFlow cannot drive (TPU7x), no TPU support where a TPU is meant, libtpu missing
  or off its pin, a TPU not answering."""
  problems = []
  stack = machine.tpu_stack
  reinstall = f"`{stack.tpu_reinstall()}`"
  generation = unsupported_tpu(machine)
  if generation:
    return [Problem(
        f"This TPU is a {machine.accelerator_type} ({generation}), and TensorFlow has no TPU "
        "support for that generation (Cloud TPU: TensorFlow is not supported on TPU7x).",
        f"use a TPU of {', '.join(tf_stacks.TPU_GENERATIONS)} (docs/installation-and-hardware.md), "
        "or a GPU")]
  reason = local_tpu(machine) or ("--expect=tpu" if expect == "tpu" else None)
  if machine.tpu_error:
    problems.append(Problem(machine.tpu_error.replace(f"; {distribution.TPU_FIX}", ""),
                            "check the TPU's name and state (`gcloud compute tpus tpu-vm describe "
                            "NAME --zone=ZONE`); on a TPU VM itself use --tpu_name=local"))
  if not machine.tpu_support:
    if machine.versions.get("tensorflow-tpu"):
      problems.append(Problem(
          f"tensorflow-tpu {machine.versions['tensorflow-tpu']} is installed, but the TensorFlow "
          f"files in place are {machine.tf_owner or 'another build'}'s (a later install replaced "
          "them), so TensorFlow has no TPU support.",
          f"{reinstall} (or `make {stack.install_tpu}`)", is_error=bool(reason)))
    elif reason:
      problems.append(Problem(
          f"This is meant to use a TPU ({reason}), but the installed TensorFlow "
          f"({machine.tf_owner or machine.tf_version}) has no TPU support.",
          f"`make {stack.install_tpu}` (docs/installation-and-hardware.md)"))
    return problems
  pin = stack.tpu_pin("libtpu")
  libtpu = machine.versions.get("libtpu")
  if not libtpu:
    problems.append(Problem("TensorFlow has TPU support but libtpu is not installed.",
                            reinstall))
  elif pin and libtpu != pin:
    problems.append(Problem(
        f"libtpu {libtpu} is not the pinned {pin} of TensorFlow {stack.tensorflow}'s stack "
        f"({stack.tpu_requirements} says why).", reinstall, is_error=False))
  named = machine.env.get("TPU_NAME")
  if (named and named != distribution.LOCAL_TPU and machine.tpu_device_files
      and machine.env.get("TPU_LOAD_LIBRARY") != "0"):
    problems.append(Problem(
        f"TPU_NAME={named} names a TPU from one of its hosts: the TPU worker service holds "
        "this host's chips, so the client must not load libtpu.",
        "`export TPU_LOAD_LIBRARY=0` (worker 0 of a pod slice), or use --tpu_name=local "
        "on a single-host TPU VM", is_error=False))
  return problems


def _gpu_problems(machine: Machine, expect: Optional[str]) -> List[Problem]:
  """A GPU machine (or --expect=gpu) whose TensorFlow cannot use GPUs."""
  meant = machine.nvidia_device_files or expect == "gpu"
  if not meant or (machine.devices_checked and machine.gpus):
    return []
  where = (f"NVIDIA device {machine.nvidia_device_files[0]}" if machine.nvidia_device_files
           else "--expect=gpu")
  if not machine.build.get("is_cuda_build"):
    return [Problem(f"This is meant to use GPUs ({where}), but the installed TensorFlow "
                    f"({machine.tf_owner or machine.tf_version}) is not a CUDA build.",
                    "`make install-gpu`")]
  if not machine.versions.get("nvidia-cudnn-cu12"):
    return [Problem(f"This is meant to use GPUs ({where}), but the CUDA and cuDNN libraries "
                    "TensorFlow needs (tensorflow[and-cuda]) are not installed.",
                    "`make install-gpu`")]
  if machine.devices_checked:
    return [Problem(f"TensorFlow sees no GPU although this machine has {where}.",
                    "check the driver with `nvidia-smi` and that CUDA_VISIBLE_DEVICES is not "
                    "empty")]
  return []


def find_problems(machine: Machine, expect: Optional[str] = None) -> List[Problem]:
  """Every contradiction between this machine, its installation and its environment."""
  problems = _tpu_problems(machine, expect) + _gpu_problems(machine, expect)
  if machine.stack is None:
    problems.append(Problem(
        f"TensorFlow {machine.tf_version} is none of bert_tf's stacks ("
        f"{', '.join(stack.tensorflow for stack in tf_stacks.STACKS)}), the ones its tests run "
        "on; and there is no tensorflow-tpu after 2.20.0.",
        " or ".join(f"`make {stack.install}`" for stack in tf_stacks.STACKS), is_error=False))
  if not machine.tokenizer_compiled:
    problems.append(Problem(
        "bert_tf's C tokenizer (bert_tf/_wordpiece.c) is not built: tokenization runs in "
        "Python, with the same tokens, several times slower.",
        "make tokenizer (needs a C compiler and the Python headers)", is_error=False))
  if "TF_CONFIG" in machine.env:
    problem = _tf_config_problem(machine.env["TF_CONFIG"])
    problems += [problem] if problem else []
  return problems


def runs_on(machine: Machine) -> str:
  """Where the scripts would train here, e.g. 'TPU (32 cores on 4 hosts)', '2 GPUs', 'CPU'."""
  if machine.tpu:
    kind = f"{machine.tpu.accelerator_type}, " if machine.tpu.accelerator_type else ""
    return f"TPU ({kind}{machine.tpu.cores} cores on {machine.tpu.hosts} host(s))"
  if machine.gpus:
    return f"{len(machine.gpus)} GPU{'s' if len(machine.gpus) > 1 else ''}"
  return "CPU"


def recommended_flags(machine: Machine) -> List[str]:
  """The flags for this machine: strategy, precision, and what the global batch must divide by."""
  if machine.tpu:
    remote = "" if machine.tpu.address == distribution.LOCAL_TPU else " (all paths gs://)"
    return [f"--use_tpu=True --tpu_name={machine.tpu.address}{remote}",
            "--mixed_precision=mixed_bfloat16",
            f"batch sizes: multiples of {machine.tpu.cores} (the TPU cores)"]
  if machine.gpus:
    capabilities = [capability or (0, 0) for _, capability in machine.gpus]
    precision = ("mixed_bfloat16" if min(capabilities) >= _BF16_CAPABILITY
                 else "mixed_float16 (with loss scaling)")
    strategy = "MirroredStrategy over all GPUs" if len(machine.gpus) > 1 else "one GPU"
    return [f"nothing for the strategy ({strategy})", f"--mixed_precision={precision} --use_xla",
            f"batch sizes: multiples of {len(machine.gpus)} (the GPUs)"]
  return ["nothing for the strategy (the default strategy on CPU)",
          "--mixed_precision: leave unset (float32 on CPU)", "batch sizes: any (one replica)"]


def _build_text(machine: Machine) -> str:
  """'CUDA 12.5.1, cuDNN 9 build; no TPU support' from the build info."""
  build = machine.build
  parts = []
  if build.get("is_cuda_build"):
    parts.append(f"CUDA {build.get('cuda_version', '?')}, cuDNN {build.get('cudnn_version', '?')}"
                 f" ({', '.join(build.get('cuda_compute_capabilities', []))})")
  parts.append("TPU support" if machine.tpu_support else "no TPU support")
  return "; ".join(parts)


def _stack_lines(machine: Machine) -> List[str]:
  """Which stack this is, the TPUs TensorFlow runs on, and how to install for a TPU."""
  stack = machine.stack
  tpus = f"{', '.join(tf_stacks.TPU_GENERATIONS)}; TPU7x: none (no TensorFlow there)"
  if stack:
    lines = [f"Stack           TensorFlow {stack.tensorflow} ({stack.requirements}; for a TPU "
             f"{stack.tpu_requirements}, `make {stack.install_tpu}`)",
             f"TPUs            {tpus}; Google's own TF {stack.tensorflow} recipe: "
             f"{stack.google_tpus}"]
  else:
    lines = ["Stack           none of bert_tf's (TensorFlow "
             f"{', '.join(each.tensorflow for each in tf_stacks.STACKS)})",
             f"TPUs            {tpus}"]
  if not machine.tpu_support:
    lines.append("For a TPU       " + " or ".join(
        f"`make {each.install_tpu}` (tensorflow-tpu {each.tpu_pin('tensorflow-tpu')}, libtpu "
        f"{each.tpu_pin('libtpu')})" for each in tf_stacks.STACKS))
  return lines


def _tpu_text(machine: Machine) -> str:
  """The TPU part of the devices line."""
  if machine.tpu:
    return f"{machine.tpu.cores} cores on {machine.tpu.hosts} host(s) at {machine.tpu.address}"
  if not tpu_machine(machine):
    return "none"
  return "did not answer" if machine.tpu_error else "not checked (no TPU support)"


def render(machine: Machine, problems: List[Problem], probe: Optional[str] = None) -> str:
  """The one screen: facts, where it runs and with which flags, then the problems."""
  versions = machine.versions
  lines = [
      f"TensorFlow      {machine.tf_version} from {machine.tf_owner or 'an unknown build'}: "
      f"{_build_text(machine)}",
      f"tensorflow-tpu  {versions.get('tensorflow-tpu') or 'not installed'}; libtpu "
      f"{versions.get('libtpu') or 'not installed'}; tf_keras "
      f"{versions.get('tf-keras') or 'not installed'}",
  ] + _stack_lines(machine)
  if machine.devices_checked:
    gpus = ", ".join(f"{name} (compute capability {'.'.join(map(str, cc)) if cc else '?'})"
                     for name, cc in machine.gpus) or "none"
    lines.append(f"Devices         {machine.cpus} CPU cores; GPUs: {gpus}; "
                 f"TPU: {_tpu_text(machine)}")
  lines.append("Tokenizer       " + ("C (bert_tf/_wordpiece.c)" if machine.tokenizer_compiled
                                       else "Python (the C module is not built)"))
  env = " ".join(f"{name}={value}" for name, value in machine.env.items())
  lines.append(f"Environment     {env or 'none of ' + ', '.join(ENV_VARS) + ' is set'}")
  if machine.devices_checked:
    credentials = machine.credentials or ("none (gs:// paths need `gcloud auth "
                                          "application-default login` or a service account)")
    lines += [f"Credentials     {credentials}", f"Runs here on    {runs_on(machine)}"]
    lines += [f"{'Flags' if i == 0 else '':16}{flag}"
              for i, flag in enumerate(recommended_flags(machine))]
  if probe:
    lines.append(f"Write probe     {probe}")
  for problem in problems:
    lines.append(f"{'error' if problem.is_error else 'warning'}: {problem.message}")
    lines.append(f"  fix: {problem.fix}")
  if not any(problem.is_error for problem in problems):
    lines.append("OK: nothing contradicts.")
  return "\n".join(lines)


def gcs_probe(path: str) -> Tuple[str, Optional[Problem]]:
  """The preflight's write, read-back and delete at `path`: (what happened, a Problem or None)."""
  try:
    gcs.check_inputs_and_output({}, "gcs_path", path)
  except gcs.PreflightError as e:
    return f"{path}: failed", Problem(str(e), "see the message (bucket, account, role)")
  return f"{path}: a file was written, read back and deleted", None


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Prints the report; returns 1 when something contradicts, else 0."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--gcs_path", help="also probe writing and reading back a file here")
  parser.add_argument("--expect", choices=("gpu", "tpu"),
                      help="check only that the installation can use this accelerator")
  args = parser.parse_args(argv)
  machine = inspect_machine(check_devices=args.expect is None)
  problems = find_problems(machine, args.expect)
  probe = None
  if args.gcs_path:
    probe, problem = gcs_probe(args.gcs_path)
    problems += [problem] if problem else []
  print(render(machine, problems, probe))
  return 1 if any(problem.is_error for problem in problems) else 0


if __name__ == "__main__":
  sys.exit(main())
