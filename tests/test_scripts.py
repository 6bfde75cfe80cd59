"""Tests for scripts/: the TPU and GPU batch jobs, run with the cloud replaced by recording stubs.

`gcloud` on PATH is a stub that records its arguments, keeps the files passed with
--metadata-from-file and serves `gcloud storage` from a local directory standing for gs://.
The startup script also gets stubs for `curl` (the GCE metadata server, from a directory),
`make` (records the target and leaves a `.venv/bin/python` that records the job's command and
its TPU variables) and tensorflow-tpu's `start_grpc_tpu_worker`.
"""

import json
import os
import pathlib
import shutil
import subprocess
import tarfile
import time
from typing import Dict, List, Optional

import pytest

from conftest import PROJECT_ROOT

SCRIPTS = PROJECT_ROOT / "scripts"
JOB_DIR = "gs://bucket/jobs/korquad"
COMMAND = ["python", "run_squad.py", "--use_tpu=True", "--train_file=gs://bucket/train.json",
           "--output_dir=gs://bucket/out"]

GCLOUD_STUB = r'''#!/usr/bin/env python3
"""Records a gcloud call; serves `storage` from $FAKE_GCS and `describe` from $FAKE_DESCRIBE."""
import json, os, pathlib, shutil, sys

args = sys.argv[1:]
record = pathlib.Path(os.environ["STUB_DIR"])
with open(record / "gcloud.jsonl", "a") as log:
  log.write(json.dumps(args) + "\n")
for arg in args:
  if arg.startswith("--metadata-from-file="):
    for pair in arg.split("=", 1)[1].split(","):
      key, path = pair.split("=", 1)
      shutil.copy(path, record / f"metadata-{key}")

def local(path):
  return pathlib.Path(os.environ["FAKE_GCS"], path[len("gs://"):]) if path.startswith("gs://") \
      else pathlib.Path(path)

if args[:2] == ["storage", "ls"]:
  sys.exit(0 if local(args[2]).exists() else 1)
if args[:2] == ["storage", "cp"]:
  target = local(args[3])
  target.parent.mkdir(parents=True, exist_ok=True)
  shutil.copy(local(args[2]), target)
  sys.exit(0)
if "describe" in args:
  state = os.environ.get("FAKE_DESCRIBE")
  if not state:
    sys.exit(1)
  print(state)
'''

CURL_STUB = r'''#!/usr/bin/env bash
# The GCE metadata server: the last argument is the URL; its path after /instance/ is a file.
path="${*: -1}"
file="${FAKE_METADATA}/${path#*/computeMetadata/v1/instance/}"
[[ -f "${file}" ]] || exit 22
cat "${file}"
'''

MAKE_STUB = r'''#!/usr/bin/env bash
# Records the target and leaves the programs `make install-*` would install.
echo "$*" >>"${STUB_DIR}/make.log"
mkdir -p .venv/bin
cat >.venv/bin/python <<'PY'
#!/usr/bin/env bash
printf '%s\n' "argv=$*" "TPU_NAME=${TPU_NAME-unset}" "TPU_LOAD_LIBRARY=${TPU_LOAD_LIBRARY-unset}" \
  >"${STUB_DIR}/command.log"
echo "training output"
exit "${FAKE_EXIT:-0}"
PY
cat >.venv/bin/start_grpc_tpu_worker <<'PY'
#!/usr/bin/env bash
echo started >"${STUB_DIR}/grpc_worker.log"
PY
chmod +x .venv/bin/python .venv/bin/start_grpc_tpu_worker
'''


def write_stub(directory: pathlib.Path, name: str, text: str) -> None:
  path = directory / name
  path.write_text(text)
  path.chmod(0o755)


@pytest.fixture
def cloud(tmp_path: pathlib.Path) -> Dict[str, pathlib.Path]:
  """A PATH with the stubs, a record directory, a fake gs:// and a fake metadata server."""
  dirs = {name: tmp_path / name for name in ("bin", "record", "gcs", "metadata", "app")}
  for directory in dirs.values():
    directory.mkdir()
  write_stub(dirs["bin"], "gcloud", GCLOUD_STUB)
  write_stub(dirs["bin"], "curl", CURL_STUB)
  write_stub(dirs["bin"], "make", MAKE_STUB)
  return dirs


def run(cloud: Dict[str, pathlib.Path], script: str, args: List[str],
        env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
  full_env = {**os.environ, "PATH": f"{cloud['bin']}:{os.environ['PATH']}",
              "STUB_DIR": str(cloud["record"]), "FAKE_GCS": str(cloud["gcs"]),
              "FAKE_METADATA": str(cloud["metadata"]), "BERT_TF_APP_DIR": str(cloud["app"]),
              **(env or {})}
  return subprocess.run(["bash", str(SCRIPTS / script), *args], env=full_env,
                        capture_output=True, text=True, timeout=60)


def gcloud_calls(cloud: Dict[str, pathlib.Path]) -> List[List[str]]:
  log = cloud["record"] / "gcloud.jsonl"
  return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def flag(call: List[str], name: str) -> Optional[str]:
  values = [arg.split("=", 1)[1] for arg in call if arg.startswith(f"--{name}=")]
  return values[-1] if values else None


def metadata(call: List[str]) -> Dict[str, str]:
  return dict(pair.split("=", 1) for pair in flag(call, "metadata").split(","))


def tpu_args(*extra: str, command: List[str] = COMMAND) -> List[str]:
  return ["--name=korquad", "--zone=us-central2-b", f"--job_dir={JOB_DIR}", *extra, "--",
          *command]


# --- the launchers -----------------------------------------------------------------------------


def test_tpu_job_queues_a_spot_tpu_with_the_startup_script_and_the_command(
    cloud: Dict[str, pathlib.Path]) -> None:
  done = run(cloud, "tpu_job.sh", tpu_args("--project=my-proj"))
  assert done.returncode == 0, done.stderr
  calls = gcloud_calls(cloud)
  assert [call[:4] for call in calls] == [
      ["storage", "ls", f"{JOB_DIR}/DONE"],
      ["compute", "tpus", "queued-resources", "describe"],
      ["storage", "cp", calls[2][2], f"{JOB_DIR}/code.tar.gz"],
      ["compute", "tpus", "queued-resources", "create"]]
  create = calls[3]
  assert create[4] == "korquad" and flag(create, "node-id") == "korquad"
  assert (flag(create, "zone"), flag(create, "project")) == ("us-central2-b", "my-proj")
  assert flag(create, "accelerator-type") == "v4-8"
  assert flag(create, "runtime-version") == "tpu-ubuntu2204-base"
  assert "--spot" in create
  assert metadata(create) == {"bert-tf-job-dir": JOB_DIR, "bert-tf-accelerator": "tpu",
                              "bert-tf-name": "korquad", "bert-tf-stack": "2.20"}
  assert (cloud["record"] / "metadata-startup-script").read_text() == (
      SCRIPTS / "job_startup.sh").read_text()
  # The command survives the trip as one shell line that runs the same words.
  line = (cloud["record"] / "metadata-bert-tf-command").read_text()
  echoed = subprocess.run(["bash", "-c", f"printf '%s\\n' {line}"], capture_output=True,
                          text=True, check=True).stdout.splitlines()
  assert echoed == COMMAND
  with tarfile.open(cloud["gcs"] / "bucket/jobs/korquad/code.tar.gz") as archive:
    names = archive.getnames()
  assert "./run_squad.py" in names and "./scripts/job_startup.sh" in names
  assert not [n for n in names if n.startswith(("./.venv", "./.git/")) or "__pycache__" in n]


def test_tpu_job_on_demand_and_other_tpu_types(cloud: Dict[str, pathlib.Path]) -> None:
  done = run(cloud, "tpu_job.sh", tpu_args("--on_demand", "--accelerator_type=v5litepod-8",
                                           "--runtime_version=v2-alpha-tpuv5-lite"))
  assert done.returncode == 0, done.stderr
  create = gcloud_calls(cloud)[-1]
  assert "--spot" not in create and flag(create, "accelerator-type") == "v5litepod-8"
  assert flag(create, "runtime-version") == "v2-alpha-tpuv5-lite"


def test_tpu_job_on_the_tensorflow_2_19_stack(cloud: Dict[str, pathlib.Path]) -> None:
  done = run(cloud, "tpu_job.sh", tpu_args("--tf_stack=2.19"))
  assert done.returncode == 0, done.stderr
  assert metadata(gcloud_calls(cloud)[-1])["bert-tf-stack"] == "2.19"


def test_rerunning_after_a_preemption_replaces_the_suspended_queued_resource(
    cloud: Dict[str, pathlib.Path]) -> None:
  done = run(cloud, "tpu_job.sh", tpu_args(), env={"FAKE_DESCRIBE": "SUSPENDED"})
  assert done.returncode == 0, done.stderr
  verbs = [call[3] for call in gcloud_calls(cloud) if call[:3] == ["compute", "tpus",
                                                                   "queued-resources"]]
  assert verbs == ["describe", "delete", "create"]
  delete = [call for call in gcloud_calls(cloud) if call[3:4] == ["delete"]][0]
  assert delete[4] == "korquad" and "--force" in delete and "--quiet" in delete


def test_a_queued_or_running_job_is_not_created_twice(cloud: Dict[str, pathlib.Path]) -> None:
  done = run(cloud, "tpu_job.sh", tpu_args(), env={"FAKE_DESCRIBE": "ACTIVE"})
  assert done.returncode == 2
  assert "error: queued resource korquad is ACTIVE" in done.stderr
  assert not [call for call in gcloud_calls(cloud) if "create" in call or "delete" in call]


def test_a_finished_job_is_not_run_again(cloud: Dict[str, pathlib.Path]) -> None:
  (cloud["gcs"] / "bucket/jobs/korquad").mkdir(parents=True)
  (cloud["gcs"] / "bucket/jobs/korquad/DONE").write_text("done")
  done = run(cloud, "tpu_job.sh", tpu_args())
  assert done.returncode == 0 and "DONE exists" in done.stdout
  assert gcloud_calls(cloud) == [["storage", "ls", f"{JOB_DIR}/DONE"]]


@pytest.mark.parametrize("args, complaint", [
    (["--zone=z", f"--job_dir={JOB_DIR}", "--", *COMMAND], "--name is required"),
    (["--name=n", f"--job_dir={JOB_DIR}", "--", *COMMAND], "--zone is required"),
    (["--name=n", "--zone=z", "--job_dir=/tmp/jobs", "--", *COMMAND], "must be a gs:// directory"),
    (["--name=n", "--zone=z", f"--job_dir={JOB_DIR}"], "no command"),
    (tpu_args(command=["python", "run_squad.py", "--use_tpu=True", "--output_dir=out"]),
     "--output_dir=out: the VM is deleted"),
    (tpu_args(command=["python", "run_squad.py", "--use_tpu=True"]), "has no --output_dir"),
    (tpu_args(command=["python", "run_squad.py", "--output_dir=gs://b/o"]), "add --use_tpu=True"),
    (tpu_args("--acelerator_type=v4-8"), "unknown flag --acelerator_type=v4-8"),
    (tpu_args("--tf_stack=2.18"), "--tf_stack=2.18: 2.20 (tensorflow-tpu 2.20.0, the default)"),
], ids=["name", "zone", "job_dir", "command", "local_output", "no_output", "no_tpu", "typo",
        "stack"])
def test_tpu_job_refuses_bad_input_before_any_cloud_call(
    cloud: Dict[str, pathlib.Path], args: List[str], complaint: str) -> None:
  done = run(cloud, "tpu_job.sh", args)
  assert done.returncode == 2
  assert done.stderr.startswith("error: ") and complaint in done.stderr
  assert gcloud_calls(cloud) == []


def test_gpu_job_creates_a_spot_vm_that_deletes_itself(cloud: Dict[str, pathlib.Path]) -> None:
  command = ["python", "run_squad.py", "--output_dir=gs://bucket/out"]
  done = run(cloud, "gpu_job.sh", ["--name=korquad-gpu", "--zone=us-central1-a",
                                   f"--job_dir={JOB_DIR}", "--machine_type=n1-standard-8",
                                   "--accelerator=type=nvidia-tesla-t4,count=1", "--", *command])
  assert done.returncode == 0, done.stderr
  calls = gcloud_calls(cloud)
  assert [call[:3] for call in calls] == [["storage", "ls", f"{JOB_DIR}/DONE"],
                                          ["compute", "instances", "describe"],
                                          ["storage", "cp", calls[2][2]],
                                          ["compute", "instances", "create"]]
  create = calls[3]
  assert create[3] == "korquad-gpu" and flag(create, "zone") == "us-central1-a"
  assert flag(create, "machine-type") == "n1-standard-8"
  assert flag(create, "accelerator") == "type=nvidia-tesla-t4,count=1"
  assert flag(create, "provisioning-model") == "SPOT"
  assert flag(create, "instance-termination-action") == "DELETE"
  assert flag(create, "maintenance-policy") == "TERMINATE"
  assert flag(create, "image-project") == "deeplearning-platform-release"
  assert metadata(create) == {"install-nvidia-driver": "True", "bert-tf-job-dir": JOB_DIR,
                              "bert-tf-accelerator": "gpu", "bert-tf-name": "korquad-gpu"}
  run(cloud, "gpu_job.sh", ["--name=g", "--zone=z", f"--job_dir={JOB_DIR}", "--on_demand", "--",
                            *command])
  assert flag(gcloud_calls(cloud)[-1], "provisioning-model") is None


# --- the startup script on the VM --------------------------------------------------------------


def boot(cloud: Dict[str, pathlib.Path], accelerator: str = "tpu", worker: int = 0,
         hosts: int = 1, exit_status: int = 0, done_before: bool = False, stack: str = "2.20"
         ) -> subprocess.CompletedProcess:
  """Runs job_startup.sh as GCE would at boot, with this job's metadata and code in gs://."""
  values = {"attributes/bert-tf-job-dir": JOB_DIR, "attributes/bert-tf-accelerator": accelerator,
            "attributes/bert-tf-name": "korquad", "zone": "projects/12/zones/us-central2-b",
            "attributes/bert-tf-command": "python run_squad.py --use_tpu=True "
                                          "--output_dir=gs://bucket/out\n"}
  if accelerator == "tpu":
    values["attributes/bert-tf-stack"] = stack
    values["attributes/agent-worker-number"] = str(worker)
    values["attributes/worker-network-endpoints"] = ",".join(
        f"w{i}:uid:10.0.0.{i}" for i in range(hosts))
  for key, value in values.items():
    (cloud["metadata"] / key).parent.mkdir(parents=True, exist_ok=True)
    (cloud["metadata"] / key).write_text(value)
  job = cloud["gcs"] / "bucket/jobs/korquad"
  job.mkdir(parents=True, exist_ok=True)
  code = cloud["record"].parent / "code"
  code.mkdir(exist_ok=True)
  (code / "run_squad.py").write_text("# the code\n")
  with tarfile.open(job / "code.tar.gz", "w:gz") as archive:
    archive.add(code, arcname=".")
  if done_before:
    (job / "DONE").write_text("done")
  return run(cloud, "job_startup.sh", [], env={"FAKE_EXIT": str(exit_status)})


def recorded(cloud: Dict[str, pathlib.Path], name: str, wait: float = 0) -> Optional[str]:
  """A stub's record, waiting up to `wait` seconds for one written by a background process."""
  path = cloud["record"] / name
  deadline = time.monotonic() + wait
  while not path.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
  return path.read_text() if path.exists() else None


def test_single_host_tpu_boot_installs_runs_uploads_and_deletes_the_tpu(
    cloud: Dict[str, pathlib.Path]) -> None:
  done = boot(cloud)
  assert done.returncode == 0, done.stderr
  steps = [line for line in done.stderr.splitlines() if "step" in line]
  assert [line.split(":")[1].strip() for line in steps] == ["step 1", "step 2", "step 4"]
  assert (cloud["app"] / "run_squad.py").read_text() == "# the code\n"
  assert recorded(cloud, "make.log") == "install-tpu\n"
  assert recorded(cloud, "command.log").splitlines() == [
      "argv=run_squad.py --use_tpu=True --output_dir=gs://bucket/out", "TPU_NAME=local",
      "TPU_LOAD_LIBRARY=unset"]
  assert recorded(cloud, "grpc_worker.log") is None
  job = cloud["gcs"] / "bucket/jobs/korquad"
  [log] = (job / "logs").iterdir()
  assert log.name.endswith("-exit0.log") and log.read_text() == "training output\n"
  assert (job / "DONE").exists()
  assert gcloud_calls(cloud)[-1] == ["compute", "tpus", "queued-resources", "delete", "korquad",
                                     "--zone=us-central2-b", "--force", "--quiet", "--async"]


def test_a_tpu_boot_on_the_2_19_stack_installs_it_into_the_venv_the_command_runs(
    cloud: Dict[str, pathlib.Path]) -> None:
  done = boot(cloud, stack="2.19")
  assert done.returncode == 0, done.stderr
  assert "make install-tpu-tf219 TF219_VENV=.venv" in done.stderr
  assert recorded(cloud, "make.log") == "install-tpu-tf219 TF219_VENV=.venv\n"
  assert recorded(cloud, "command.log").splitlines()[0] == (
      "argv=run_squad.py --use_tpu=True --output_dir=gs://bucket/out")


def test_pod_slice_worker_0_serves_its_chips_and_runs_the_one_client(
    cloud: Dict[str, pathlib.Path]) -> None:
  done = boot(cloud, worker=0, hosts=4)
  assert done.returncode == 0, done.stderr
  assert recorded(cloud, "grpc_worker.log", wait=5) == "started\n"
  assert recorded(cloud, "command.log").splitlines()[1:] == ["TPU_NAME=korquad",
                                                             "TPU_LOAD_LIBRARY=0"]
  assert gcloud_calls(cloud)[-1][3] == "delete"


def test_pod_slice_other_workers_only_install_and_serve(cloud: Dict[str, pathlib.Path]) -> None:
  done = boot(cloud, worker=2, hosts=4)
  assert done.returncode == 0, done.stderr
  assert recorded(cloud, "make.log") == "install-tpu\n"
  assert recorded(cloud, "grpc_worker.log", wait=5) == "started\n"
  assert recorded(cloud, "command.log") is None
  assert not [call for call in gcloud_calls(cloud) if "delete" in call]


def test_a_failed_or_preempted_command_keeps_its_log_leaves_no_done_and_frees_the_tpu(
    cloud: Dict[str, pathlib.Path]) -> None:
  done = boot(cloud, exit_status=1)
  assert done.returncode == 0, done.stderr
  job = cloud["gcs"] / "bucket/jobs/korquad"
  [log] = (job / "logs").iterdir()
  assert log.name.endswith("-exit1.log")
  assert not (job / "DONE").exists()  # recreating the job runs (and resumes) the command
  assert gcloud_calls(cloud)[-1][3] == "delete"


def test_a_boot_after_the_run_finished_only_deletes(cloud: Dict[str, pathlib.Path]) -> None:
  done = boot(cloud, done_before=True)
  assert done.returncode == 0, done.stderr
  assert recorded(cloud, "make.log") is None and recorded(cloud, "command.log") is None
  assert [call[:4] for call in gcloud_calls(cloud)] == [
      ["storage", "ls", f"{JOB_DIR}/DONE"], ["compute", "tpus", "queued-resources", "delete"]]


def test_gpu_boot_installs_with_make_install_gpu_and_deletes_the_vm(
    cloud: Dict[str, pathlib.Path]) -> None:
  done = boot(cloud, accelerator="gpu")
  assert done.returncode == 0, done.stderr
  assert recorded(cloud, "make.log") == "install-gpu\n"
  assert recorded(cloud, "command.log").splitlines()[1:] == ["TPU_NAME=unset",
                                                             "TPU_LOAD_LIBRARY=unset"]
  assert gcloud_calls(cloud)[-1] == ["compute", "instances", "delete", "korquad",
                                     "--zone=us-central2-b", "--quiet"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_are_shellcheck_clean() -> None:
  scripts = sorted(str(path) for path in SCRIPTS.glob("*.sh"))
  done = subprocess.run(["shellcheck", "-x", *scripts], cwd=PROJECT_ROOT, capture_output=True,
                        text=True)
  assert done.returncode == 0, done.stdout
