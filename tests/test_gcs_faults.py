"""Cloud Storage faults: 429/5xx answers, dropped connections and slow answers, injected by
tests/gcs_fault_proxy.py in front of gcp-storage-emulator, for both clients bert_tf uses:
google-cloud-storage (staging, copy-back) and TensorFlow's GCS file system (the output-dir lock,
checkpoints, summaries, a whole training run)."""

import os
import pathlib
import subprocess
import sys

import pytest

from bert_tf.io import gcs
from gcs_fault_proxy import Fault, FaultProxy

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "classifier"
BUCKET = "fault-bucket"
UPLOAD_CHUNK = r"upload_id="  # the PUTs of a resumable upload session


@pytest.fixture
def client(proxy, monkeypatch):
  """A google-cloud-storage client through the proxy, no faults pending, short backoff."""
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
  monkeypatch.setattr(gcs, "BACKOFF_S", 0.05)
  proxy.faults.clear()
  proxy.log.clear()
  from google.cloud import storage  # pylint: disable=import-outside-toplevel
  result = storage.Client(project="test")
  if not result.bucket(BUCKET).exists():
    result.create_bucket(BUCKET)
  return result


def _outcomes(proxy: FaultProxy, action: str) -> int:
  return sum(line.endswith("-> " + action) for line in proxy.log)


def test_staging_resumes_through_transient_answers_and_dropped_connections(client, proxy,
                                                                           tmp_path):
  data = os.urandom(700 * 1024)  # three chunks of 256 KiB
  (tmp_path / "input.bin").write_bytes(data)
  proxy.inject(Fault("503", "PUT", UPLOAD_CHUNK), Fault("drop", "PUT", UPLOAD_CHUNK),
               Fault("429", "PUT", UPLOAD_CHUNK), Fault("slow", "PUT", UPLOAD_CHUNK, delay=1))
  assert gcs.upload_file(client, str(tmp_path / "input.bin"), f"gs://{BUCKET}/staged/input.bin",
                         chunk_size=256 * 1024)
  assert proxy.pending() == 0
  assert client.bucket(BUCKET).get_blob("staged/input.bin").download_as_bytes() == data


def test_staging_that_keeps_failing_stops_clearly_and_leaves_nothing_under_the_name(
    client, proxy, tmp_path):
  data = os.urandom(300 * 1024)
  (tmp_path / "input.bin").write_bytes(data)
  proxy.inject(Fault("503", "PUT", UPLOAD_CHUNK, count=100))
  with pytest.raises(IOError, match="failed 5 times; run again to resume"):
    gcs.upload_file(client, str(tmp_path / "input.bin"), f"gs://{BUCKET}/staged/failing.bin",
                    chunk_size=256 * 1024)
  assert client.bucket(BUCKET).get_blob("staged/failing.bin") is None
  proxy.faults.clear()
  assert gcs.upload_file(client, str(tmp_path / "input.bin"), f"gs://{BUCKET}/staged/failing.bin",
                         chunk_size=256 * 1024)
  assert client.bucket(BUCKET).get_blob("staged/failing.bin").download_as_bytes() == data


def test_a_permanent_error_is_not_retried(client, proxy, tmp_path):
  (tmp_path / "input.bin").write_bytes(b"x" * 1000)
  proxy.inject(Fault("403", "PUT", UPLOAD_CHUNK, count=100))
  with pytest.raises(IOError, match="HTTP 403|403"):
    gcs.upload_file(client, str(tmp_path / "input.bin"), f"gs://{BUCKET}/staged/denied.bin")
  assert _outcomes(proxy, "403") == 1


def test_copy_back_retries_and_never_leaves_a_partial_file(client, proxy, tmp_path):
  data = os.urandom(200 * 1024)
  client.bucket(BUCKET).blob("run/predictions.json").upload_from_string(data)
  proxy.inject(Fault("503", "GET", "alt=media"), Fault("drop", "GET", "alt=media"))
  local = tmp_path / "results"
  gcs.copy_back(client, f"gs://{BUCKET}/run", ["predictions.json"], str(local))
  assert (local / "predictions.json").read_bytes() == data
  assert proxy.pending() == 0

  proxy.inject(Fault("503", "GET", "alt=media", count=100))
  with pytest.raises(Exception):
    gcs.copy_back(client, f"gs://{BUCKET}/run", ["predictions.json"], str(tmp_path / "other"))
  assert not (tmp_path / "other").exists() or not list((tmp_path / "other").iterdir())


def _tensorflow(proxy: FaultProxy, code: str, timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh Python whose TensorFlow reaches the emulator through the proxy."""
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, check=False,
                        env={**os.environ, **proxy.environment(), "TF_CPP_MIN_LOG_LEVEL": "2"})


def run_classifier(proxy: FaultProxy, output_dir: str, *flags: str) -> subprocess.CompletedProcess:
  """A tiny run_classifier.py run on the bundled NSMC sample, its gs:// through the proxy."""
  command = [sys.executable, str(ROOT / "run_classifier.py"), "--task_name=nsmc",
             f"--data_dir={SAMPLE / 'nsmc'}", f"--vocab_file={SAMPLE / 'vocab.txt'}",
             f"--bert_config_file={SAMPLE / 'bert_config.json'}", "--max_seq_length=32",
             "--train_batch_size=16", "--eval_batch_size=16", "--save_checkpoints_steps=5",
             "--iterations_per_loop=5", f"--output_dir={output_dir}", *flags]
  return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                        check=False,
                        env={**os.environ, **proxy.environment(), "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_tensorflow_retries_transient_answers_and_dropped_connections(client, proxy):
  """What TensorFlow's own GCS file system does (docs/cloud-storage-and-preemption.md, "Cloud
  Storage faults: what is retried, by whom")."""
  proxy.inject(Fault("503", "POST", "uploadType=resumable"), Fault("drop", "PUT", UPLOAD_CHUNK),
               Fault("429", "GET", r"^/fault-bucket/"), Fault("500", "POST", "rewriteTo"))
  result = _tensorflow(proxy, (
      "import os, tensorflow as tf\n"
      "data = os.urandom(100_000)\n"
      f"path = 'gs://{BUCKET}/tf/data.bin'\n"
      "with tf.io.gfile.GFile(path + '.tmp', 'wb') as f:\n"
      "  f.write(data)\n"
      "tf.io.gfile.rename(path + '.tmp', path)\n"
      "assert tf.io.gfile.GFile(path, 'rb').read() == data\n"
      "print('same bytes')\n"))
  assert result.returncode == 0 and "same bytes" in result.stdout, result.stderr[-3000:]
  assert proxy.pending() == 0, proxy.faults


def test_output_dir_lock_on_gcs_survives_transient_answers(client, proxy):
  proxy.inject(Fault("503", "GET", "fields=size", count=2), Fault("503", "PUT", UPLOAD_CHUNK))
  result = _tensorflow(proxy, (
      "import tensorflow as tf\n"
      "from bert_tf.io import run_lock\n"
      f"lock = run_lock.RunLock('gs://{BUCKET}/locked')\n"
      "lock.acquire()\n"
      f"print(tf.io.gfile.exists('gs://{BUCKET}/locked/' + run_lock.LOCK_FILE))\n"
      "lock.release()\n"
      f"print(tf.io.gfile.exists('gs://{BUCKET}/locked/' + run_lock.LOCK_FILE))\n"))
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ["True", "False"]
  assert proxy.pending() == 0


def test_training_with_gcs_output_through_faults_finishes_with_whole_objects(client, proxy):
  """A short run_classifier.py run writing checkpoints, summaries and results to gs://, with
  transient answers and dropped connections along the way: it finishes, its last checkpoint
  restores, and no temporary object is left beside the real ones."""
  proxy.inject(Fault("503", "PUT", UPLOAD_CHUNK, count=2), Fault("drop", "PUT", UPLOAD_CHUNK),
               Fault("429", "GET", "fields=size", count=2), Fault("500", "POST", "rewriteTo"),
               Fault("slow", "POST", "uploadType=resumable", delay=2))
  output_dir = f"gs://{BUCKET}/train"
  result = run_classifier(proxy, output_dir, "--num_train_epochs=1", "--do_train", "--do_eval")
  assert result.returncode == 0, result.stderr[-4000:]
  assert proxy.pending() == 0, proxy.faults
  names = [blob.name for blob in client.list_blobs(BUCKET, prefix="train/")]
  assert "train/checkpoint" in names and "train/eval_results.txt" in names, names
  assert not [n for n in names if "_temp" in n or ".tempstate" in n], names
  restored = _tensorflow(proxy, (
      "import tensorflow as tf\n"
      f"print(tf.train.latest_checkpoint('{output_dir}'))\n"
      f"reader = tf.train.load_checkpoint('{output_dir}')\n"
      "print(len(reader.get_variable_to_shape_map()) > 10)\n"))
  assert restored.returncode == 0, restored.stderr[-3000:]
  assert restored.stdout.split()[1] == "True"
