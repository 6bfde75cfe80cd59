"""Preflight on local paths, and staging/copy-back against gcp-storage-emulator on loopback."""

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from bert_tf.io import gcs

BUCKET = "staging-bucket"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator_host():
  """A gcp-storage-emulator on 127.0.0.1 (in memory) for this module; killed at the end."""
  port = _free_port()
  process = subprocess.Popen(
      [os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator"), "start",
       "--host=127.0.0.1", f"--port={port}", "--in-memory", "-q"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  host = f"http://127.0.0.1:{port}"
  try:
    deadline = time.time() + 30
    while True:
      try:
        requests.get(f"{host}/storage/v1/b", timeout=1)
        break
      except requests.ConnectionError:
        assert process.poll() is None and time.time() < deadline, "emulator did not start"
        time.sleep(0.1)
    yield host
  finally:
    process.kill()
    process.wait(timeout=10)


@pytest.fixture
def client(emulator_host, monkeypatch):
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_host)
  from google.cloud import storage  # pylint: disable=import-outside-toplevel
  result = storage.Client(project="test")
  bucket = result.bucket(BUCKET)
  if not bucket.exists():
    result.create_bucket(BUCKET)
  return result


def test_preflight_accepts_good_paths(tmp_path):
  (tmp_path / "vocab.txt").write_text("[PAD]\n")
  (tmp_path / "model.ckpt.index").write_bytes(b"x")
  (tmp_path / "model.ckpt.data-00000-of-00001").write_bytes(b"x")
  (tmp_path / "a.tfrecord").write_bytes(b"x")
  gcs.check_inputs_and_output(
      {"vocab_file": str(tmp_path / "vocab.txt"), "init_checkpoint": str(tmp_path / "model.ckpt"),
       "input_file": f"{tmp_path}/*.tfrecord,{tmp_path / 'vocab.txt'}", "unset": None},
      "output_dir", str(tmp_path / "new" / "out"))
  assert [p.name for p in (tmp_path / "new" / "out").iterdir()] == []  # the probe is gone


@pytest.mark.parametrize("value, message", [
    ("missing.json", "nothing exists at this path"),
    ("*.nomatch", "the glob matches no file"),
])
def test_preflight_names_missing_inputs(tmp_path, value, message):
  with pytest.raises(gcs.PreflightError, match=message) as caught:
    gcs.check_inputs_and_output({"train_file": str(tmp_path / value)}, "output_dir", None)
  assert f"--train_file={tmp_path / value}" in str(caught.value)
  assert "ls -ld" in str(caught.value)


def test_preflight_unreadable_input(tmp_path):
  if os.geteuid() == 0:
    pytest.skip("root reads files whatever their mode")
  path = tmp_path / "train.json"
  path.write_text("{}")
  path.chmod(0)
  with pytest.raises(gcs.PreflightError, match="--train_file=.*cannot be read"):
    gcs.check_inputs_and_output({"train_file": str(path)}, "output_dir", None)


def test_preflight_unwritable_output(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(gcs.PreflightError, match="--output_dir=.*is not writable") as caught:
    gcs.check_inputs_and_output({}, "output_dir", str(blocker / "out"))
  assert "Local path" in str(caught.value)


def test_fix_hint_for_a_bucket_names_the_tpu_service_account():
  hint = gcs._fix_hint("gs://my-bucket/out", "write")  # pylint: disable=protected-access
  assert "gs://my-bucket" in hint and "cloud-tpu.iam.gserviceaccount.com" in hint
  assert "objectAdmin" in hint


def test_stage_skip_and_copy_back(client, tmp_path):
  data = tmp_path / "data"
  (data / "hf").mkdir(parents=True)
  (data / "train.json").write_text('{"data": []}')
  (data / "hf" / "config.json").write_text("{}")
  (data / "model.ckpt.index").write_bytes(b"index")
  (data / "model.ckpt.data-00000-of-00001").write_bytes(b"data" * 1000)
  stage = f"gs://{BUCKET}/run1"
  inputs = {"train_file": str(data / "train.json"), "init_checkpoint": str(data / "model.ckpt"),
            "hf": str(data / "hf"), "remote": "gs://elsewhere/x.json"}
  rewritten = gcs.stage_inputs(client, inputs, stage)
  assert rewritten == {"train_file": f"{stage}/train_file/train.json",
                       "init_checkpoint": f"{stage}/init_checkpoint/model.ckpt",
                       "hf": f"{stage}/hf/hf"}
  blob = client.bucket(BUCKET).get_blob("run1/init_checkpoint/model.ckpt.data-00000-of-00001")
  assert blob.download_as_bytes() == b"data" * 1000
  assert blob.crc32c == gcs.local_crc32c(str(data / "model.ckpt.data-00000-of-00001"))
  assert client.bucket(BUCKET).get_blob("run1/hf/hf/config.json").download_as_bytes() == b"{}"
  # Same size and crc32c: skipped; a changed file is sent again.
  target = f"{stage}/train_file/train.json"
  assert not gcs.upload_file(client, str(data / "train.json"), target)
  (data / "train.json").write_text('{"data": [1]}')
  assert gcs.upload_file(client, str(data / "train.json"), target)
  assert (data / "train.json").exists()  # nothing local is deleted
  # Copy back, then a missing object fails with its name.
  results = tmp_path / "results"
  copied = gcs.copy_back(client, f"{stage}/train_file", ["train.json"], str(results))
  assert copied == [str(results / "train.json")]
  assert (results / "train.json").read_text() == '{"data": [1]}'
  with pytest.raises(FileNotFoundError, match=f"gs://{BUCKET}/run1/predictions.json"):
    gcs.copy_back(client, stage, ["predictions.json"], str(results))
  with pytest.raises(FileNotFoundError, match="--vocab_file=.*nothing to stage"):
    gcs.stage_inputs(client, {"vocab_file": str(data / "missing.txt")}, stage)


class _DropAfterFirstChunk(requests.Session):
  """Loses the connection on every chunk after the first: the network going away mid-upload."""

  def __init__(self):
    super().__init__()
    self.chunks = 0

  def put(self, url, data=None, **kwargs):  # pylint: disable=arguments-differ
    if data:
      self.chunks += 1
      if self.chunks > 1:
        raise requests.ConnectionError("connection reset")
    return super().put(url, data=data, **kwargs)


class _CountingSession(requests.Session):

  def __init__(self):
    super().__init__()
    self.bytes_sent = 0

  def put(self, url, data=None, **kwargs):  # pylint: disable=arguments-differ
    self.bytes_sent += len(data or b"")
    return super().put(url, data=data, **kwargs)


def test_interrupted_upload_resumes(client, tmp_path):
  chunk = 256 * 1024
  path = tmp_path / "big.bin"
  payload = os.urandom(3 * chunk + 1000)
  path.write_bytes(payload)
  target = f"gs://{BUCKET}/resume/big.bin"
  with pytest.raises(IOError, match="run again to resume"):
    gcs.upload_file(client, str(path), target, chunk_size=chunk, http=_DropAfterFirstChunk())
  assert client.bucket(BUCKET).get_blob("resume/big.bin") is None
  # A rerun (as after a crash) resumes the same session: only the bytes after chunk one go out.
  counting = _CountingSession()
  assert gcs.upload_file(client, str(path), target, chunk_size=chunk, http=counting)
  assert counting.bytes_sent == len(payload) - chunk
  assert client.bucket(BUCKET).get_blob("resume/big.bin").download_as_bytes() == payload


class _Forbidden(requests.Session):
  """Answers every upload request with 403, as GCS does when the account may not write."""

  def put(self, url, data=None, **kwargs):  # pylint: disable=arguments-differ
    response = requests.Response()
    response.status_code, response.reason, response.url = 403, "Forbidden", url
    return response


def test_upload_errors_and_logs_never_show_the_session_url(client, tmp_path, caplog):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"[PAD]\n" * 100)
  with pytest.raises(IOError) as caught:
    gcs.upload_file(client, str(path), f"gs://{BUCKET}/denied/vocab.txt", http=_Forbidden())
  message = str(caught.value)
  assert f"gs://{BUCKET}/denied/vocab.txt" in message and "HTTP 403 Forbidden" in message
  assert "?REDACTED" in message
  # The session URL (its upload_id grants the right to write the object) is in no message.
  assert "upload_id" not in message and "upload_id" not in caplog.text
  assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_redact_url_drops_signatures_and_tokens():
  signed = ("https://storage.googleapis.com/bucket/model.ckpt?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=sa%40project.iam&X-Goog-Signature=0123abcd#frag")
  assert gcs.redact_url(signed) == "https://storage.googleapis.com/bucket/model.ckpt?REDACTED"
  assert gcs.redact_url("https://example.com/a/b") == "https://example.com/a/b"


def test_copy_back_refuses_names_that_escape_the_results_dir(client, tmp_path):
  with pytest.raises(ValueError, match="not a file name inside"):
    gcs.copy_back(client, f"gs://{BUCKET}/out", ["../../.bashrc"], str(tmp_path / "results"))
  assert not (tmp_path / "results").exists()


def test_a_run_directory_synced_through_cloud_storage_means_the_same_model(client, tmp_path):
  """Local -> gs:// -> local: every record (best.json, the checkpoint state) names files inside
  the directory, so the synced copy means the same best model with the original gone."""
  from bert_tf.io import run_directory  # pylint: disable=import-outside-toplevel
  from bert_tf.serving import export  # pylint: disable=import-outside-toplevel
  from tests.test_run_directory import _kernel, _make_run  # pylint: disable=import-outside-toplevel
  out = tmp_path / "out"
  weights = _make_run(str(out))
  remote = gcs.stage_inputs(client, {"output_dir": str(out)}, f"gs://{BUCKET}/sync")["output_dir"]
  _, prefix = gcs.split_gcs_path(remote)
  blobs = list(client.list_blobs(BUCKET, prefix=prefix + "/"))
  names = [blob.name[len(prefix) + 1:] for blob in blobs]
  assert {"best/best.json", "checkpoint", "ckpt-3.index", "best/ckpt-1.index"} <= set(names)
  for blob in blobs:  # in the bucket, nothing names the machine the run was made on
    if blob.name.endswith((".json", "/checkpoint")):
      assert str(tmp_path) not in blob.download_as_bytes().decode(), blob.name
  synced = tmp_path / "synced"
  gcs.copy_back(client, remote, names, str(synced))
  shutil.rmtree(out)
  chosen = run_directory.model_checkpoint(str(synced))
  assert chosen.prefix == str(synced / "best" / "ckpt-1") and chosen.best["step"] == 1
  np.testing.assert_array_equal(_kernel(str(synced)), weights["best"])
  assert export.read_run(str(synced)).checkpoint == chosen.prefix
  assert run_directory.latest_checkpoint(str(synced)) == str(synced / "ckpt-3")
