"""Shared test set-up: logical CPU devices for distribution tests, the ../shared data folder, and
a Cloud Storage emulator behind the fault proxy (tests/gcs_fault_proxy.py)."""

import os
import pathlib
import socket
import subprocess

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (after the log-level variable)

NUM_LOGICAL_CPUS = 2
# MirroredStrategy tests need several devices; TF allows this only before it initialises them.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS)

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> pathlib.Path:
  """../shared/data (real third-party data); skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip("../shared/data is not present")
  return SHARED_DATA


def shared_path(*parts: str) -> pathlib.Path:
  """A path under ../shared/data, skipping the calling test if it does not exist."""
  path = SHARED_DATA.joinpath(*parts)
  if not path.exists():
    pytest.skip(f"{path} is not present")
  return path


@pytest.fixture(scope="session")
def mirrored_cpus() -> tf.distribute.MirroredStrategy:
  """One MirroredStrategy over the logical CPUs for the whole session.

  Two MirroredStrategy objects in one process reuse collective instance keys, and TF then
  aborts with "Shape mismatch in the collective instance"; a real run makes one strategy.
  """
  return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(NUM_LOGICAL_CPUS)])


@pytest.fixture(params=["read-only file system", "under a regular file"])
def unwritable_dir(request, tmp_path) -> pathlib.Path:
  """A directory path nothing can be written under, even by root (whom chmod does not stop): a
  read-only tmpfs mounted there (a non-root user gets a chmod 555 directory instead), or a path
  whose parent is a regular file. The mount needs root with CAP_SYS_ADMIN; elsewhere that case
  skips, saying so."""
  if request.param == "under a regular file":
    (tmp_path / "a_file").write_text("not a directory")
    yield tmp_path / "a_file" / "out"
    return
  directory = tmp_path / "read_only"
  directory.mkdir()
  if os.geteuid() != 0:
    directory.chmod(0o555)
    yield directory
    directory.chmod(0o755)
    return
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)],
                           capture_output=True, text=True, check=False)
  if mounted.returncode != 0:
    pytest.skip(f"root cannot mount a read-only tmpfs here ({mounted.stderr.strip()})")
  try:
    yield directory
  finally:
    subprocess.run(["umount", str(directory)], check=True)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
  """gcp-storage-emulator behind a FaultProxy, for this test module: `proxy.url` for
  google-cloud-storage, `proxy.environment()` for TensorFlow's GCS file system."""
  from gcs_fault_proxy import FaultProxy, start_emulator  # pylint: disable=import-outside-toplevel
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  emulator = start_emulator(port)
  result = FaultProxy(f"http://127.0.0.1:{port}", str(tmp_path_factory.mktemp("certs")))
  try:
    yield result
  finally:
    result.close()
    emulator.kill()
    emulator.wait(timeout=10)
