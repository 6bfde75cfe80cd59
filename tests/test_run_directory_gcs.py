"""Run directories copied between Cloud Storage and local disk, both ways, and used there by
run_classifier.py with TensorFlow's own GCS file system (through tests/gcs_fault_proxy.py): the
copy evaluates with its own best model, gives the original's results, and names nothing of where
it came from (issue 24, point 1)."""

import json
import pathlib
import re
import shutil
from typing import Callable, Dict

import pytest

from test_gcs_faults import run_classifier

BUCKET = "rundir-bucket"
# Two epochs of 16 steps, a checkpoint and an evaluation after each: few writes through the proxy.
TRAIN = ("--do_train", "--do_eval", "--num_train_epochs=2", "--keep_best_by=accuracy",
         "--save_checkpoints_steps=16", "--iterations_per_loop=16")
EVAL_ONLY = ("--do_train=false", "--do_eval", "--keep_best_by=accuracy")


@pytest.fixture(scope="module")
def bucket(proxy):
  """The test bucket, through google-cloud-storage (a user's gsutil) and the proxy."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    from google.cloud import storage  # pylint: disable=import-outside-toplevel
    client = storage.Client(project="test")
    yield client.bucket(BUCKET) if client.bucket(BUCKET).exists() else client.create_bucket(BUCKET)


def _objects(bucket, prefix: str) -> Dict[str, bytes]:
  """Every object under gs://BUCKET/PREFIX/, by its name inside the prefix."""
  return {blob.name[len(prefix) + 1:]: bucket.blob(blob.name).download_as_bytes()
          for blob in bucket.list_blobs(prefix=prefix + "/") if not blob.name.endswith("/")}


def _files(directory: pathlib.Path) -> Dict[str, bytes]:
  return {str(p.relative_to(directory)): p.read_bytes()
          for p in directory.rglob("*") if p.is_file()}


def _trained(proxy, output_dir: str) -> None:
  result = run_classifier(proxy, output_dir, *TRAIN)
  assert result.returncode == 0, result.stderr[-4000:]


def _evaluates_with_its_own_best_model(proxy, output_dir: str, best: dict, results: bytes,
                                       read: Callable[[], Dict[str, bytes]]) -> None:
  """An eval-only rerun on the copy at `output_dir` (whose eval_results.json was removed, so the
  rerun writes it) restores the copy's best model, rewrites the original's results, and sets no
  output aside as coming from other weights."""
  rerun = run_classifier(proxy, output_dir, *EVAL_ONLY)
  assert rerun.returncode == 0, rerun.stderr[-4000:]
  written = read()
  prefix = f"{output_dir}/{best['checkpoint']}"
  assert re.search(rf"{re.escape(output_dir)} means the best model by accuracy [0-9.]+ at step "
                   rf"{best['step']}: {re.escape(prefix)} ", rerun.stderr), rerun.stderr[-4000:]
  assert f"Evaluating/predicting with {prefix} (the best model" in rerun.stderr
  assert json.loads(written["eval_results.json"]) == json.loads(results)
  assert "came from" not in rerun.stderr
  assert not [name for name in written if name.startswith("previous_outputs/")], list(written)


def _names_nothing_of(files: Dict[str, bytes], original: str) -> None:
  named = [name for name, data in files.items() if original.encode() in data]
  assert not named, f"{named} name the original run directory {original}"


def test_a_run_trained_on_gcs_means_the_same_copied_to_gcs_and_to_local_disk(proxy, bucket,
                                                                             tmp_path):
  _trained(proxy, f"gs://{BUCKET}/original")
  original = _objects(bucket, "original")
  best = json.loads(original["best/best.json"])
  assert best["checkpoint"] == f"best/ckpt-{best['step']}"
  # gsutil cp -r gs://BUCKET/original gs://BUCKET/copy, and gs://BUCKET/original local
  local = tmp_path / "local"
  for blob in list(bucket.list_blobs(prefix="original/")):
    name = blob.name[len("original/"):]
    # eval_results.json stays behind: each copy's rerun writes it again.
    if name and not name.endswith("/") and name != "eval_results.json":
      bucket.copy_blob(blob, bucket, "copy/" + name)
      (local / name).parent.mkdir(parents=True, exist_ok=True)
      (local / name).write_bytes(original[name])
    blob.delete()  # the original goes away

  _evaluates_with_its_own_best_model(proxy, f"gs://{BUCKET}/copy", best,
                                     original["eval_results.json"],
                                     lambda: _objects(bucket, "copy"))
  _evaluates_with_its_own_best_model(proxy, str(local), best, original["eval_results.json"],
                                     lambda: _files(local))
  _names_nothing_of(_objects(bucket, "copy"), f"{BUCKET}/original")
  _names_nothing_of(_files(local), f"{BUCKET}/original")


def test_a_run_trained_on_local_disk_means_the_same_uploaded_to_gcs(proxy, bucket, tmp_path):
  original = tmp_path / "original"
  _trained(proxy, str(original))
  files = _files(original)
  best = json.loads(files["best/best.json"])
  for name, data in files.items():  # gsutil cp -r original gs://BUCKET/uploaded
    if name != "eval_results.json":
      bucket.blob("uploaded/" + name).upload_from_string(data)
  shutil.rmtree(original)

  _evaluates_with_its_own_best_model(proxy, f"gs://{BUCKET}/uploaded", best,
                                     files["eval_results.json"],
                                     lambda: _objects(bucket, "uploaded"))
  _names_nothing_of(_objects(bucket, "uploaded"), str(original))
