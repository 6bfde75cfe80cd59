"""Cloud Storage for the scripts: a preflight of every path, staging inputs, copying results back.

`check_inputs_and_output` runs before any expensive work, so a missing file or a bucket the
job cannot write fails in seconds with the flag, the path, the bucket and the fix, not with a 403
after an hour of preprocessing. It goes through tf.io.gfile, like the rest of the pipeline.

`stage_inputs` and `copy_back` serve a remote TPU driven from a machine whose files it cannot see
(Colab, a laptop): local inputs are uploaded with google-cloud-storage (resumable, crc32c-checked,
skipped when the object already matches), and results come back to a local folder. Nothing local
is ever deleted. google-cloud-storage honours STORAGE_EMULATOR_HOST, which the tests use.
"""

from __future__ import annotations  # storage.Client in annotations: imported when staging only

import base64
import glob
import hashlib
import json
import os
import tempfile
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import google_crc32c
import requests
import tensorflow as tf
from absl import logging

from bert_tf.io import files as io_files
from bert_tf.training import distribution, partial_saves

if TYPE_CHECKING:
  from google.cloud import storage

GCS_PREFIX = distribution.GCS_PREFIX
# Resumable uploads send chunks of a multiple of 256 KiB (a GCS rule); 8 MiB keeps retries cheap.
CHUNK_SIZE = 8 * 1024 * 1024
_CHUNK_QUANTUM = 256 * 1024
_MAX_ATTEMPTS = 5
_TIMEOUT_S = 120
# Answers that Cloud Storage documents as transient ("Retry strategy": 408, 429, 5xx): a
# resumable upload asks the server what it holds and resumes after a growing pause.
RETRIABLE_STATUSES = frozenset((408, 429, 500, 502, 503, 504))
BACKOFF_S = 1.0  # the first pause; doubled each attempt
_GLOB_CHARS = "*?["


# The output directory probe writes this much: a few tiny files fit even on a nearly full disk,
# which then fails at the first checkpoint; a few MB do not.
PROBE_BYTES = 4 * 2**20


class PreflightError(ValueError):
  """An input that cannot be read or an output directory that cannot be written."""


class _TransientError(IOError):
  """An answer worth retrying (RETRIABLE_STATUSES)."""


def _check_status(response: requests.Response, what: str, ok: Tuple[int, ...]) -> None:
  """Raises _TransientError for a retriable status, IOError for any other unexpected one."""
  if response.status_code in ok:
    return
  error = _TransientError if response.status_code in RETRIABLE_STATUSES else IOError
  raise error(f"{what} failed: {describe_response(response)}")


def split_gcs_path(path: str) -> Tuple[str, str]:
  """('bucket', 'object/name') for 'gs://bucket/object/name'."""
  if not path.startswith(GCS_PREFIX):
    raise ValueError(f"{path!r} is not a gs:// path.")
  bucket, _, name = path[len(GCS_PREFIX):].partition("/")
  if not bucket:
    raise ValueError(f"{path!r} names no bucket.")
  return bucket, name


def _fix_hint(path: str, access: str) -> str:
  """Where the permission problem most likely lies for `path`, and how to fix it."""
  if path.startswith(GCS_PREFIX):
    bucket = split_gcs_path(path)[0]
    role = "roles/storage.objectAdmin" if access == "write" else "roles/storage.objectViewer"
    return (f"Bucket gs://{bucket}: check the path, then grant the account this job runs as "
            f"{role} on the bucket. On a Cloud TPU that is the TPU's service account "
            f"(service-PROJECT_NUMBER@cloud-tpu.iam.gserviceaccount.com): `gcloud storage "
            f"buckets add-iam-policy-binding gs://{bucket} --member=serviceAccount:ACCOUNT "
            f"--role={role}`.")
  return (f"Local path: check that it exists and that this user may {access} it "
          f"(`ls -ld {path}`).")


def _check_readable(path: str) -> None:
  """Opens and reads a byte of a file, or lists a directory, through tf.io.gfile."""
  if tf.io.gfile.isdir(path):
    tf.io.gfile.listdir(path)
  else:
    with tf.io.gfile.GFile(path, "rb") as f:
      f.read(1)


def _input_files(part: str) -> List[str]:
  """What one path names: glob matches, a file or directory, or a checkpoint prefix's files."""
  if any(c in part for c in _GLOB_CHARS):
    return tf.io.gfile.glob(part)
  if tf.io.gfile.exists(part):
    return [part]
  return tf.io.gfile.glob(part + ".*") if tf.io.gfile.exists(part + ".index") else []


def check_inputs_and_output(inputs: Dict[str, Optional[str]], output_dir_flag: str,
                            output_dir: Optional[str]) -> None:
  """Checks every input can be read and output_dir written, before any expensive work.

  Args:
    inputs: flag name -> path (file, directory, checkpoint prefix, glob, or several of these
      comma-separated, local or gs://); unset flags (None or empty) are skipped.
    output_dir_flag: the name of the output directory flag, for the message.
    output_dir: created if needed; a probe object of PROBE_BYTES is written, read back and
      deleted.

  Raises:
    PreflightError: naming the flag, the path, the bucket and the likely fix.
  """
  for flag, value in inputs.items():
    for part in distribution.comma_parts(value or ""):
      try:
        files = _input_files(part)
        if not files:
          is_glob = any(c in part for c in _GLOB_CHARS)
          raise PreflightError(f"--{flag}={part}: nothing exists at this path"
                               f"{' (the glob matches no file)' if is_glob else ''}. "
                               + _fix_hint(part, "read"))
        for path in files:
          _check_readable(path)
      except tf.errors.OpError as e:
        raise PreflightError(f"--{flag}={part} cannot be read ({e.message}). "
                             + _fix_hint(part, "read")) from e
  if output_dir:
    probe = os.path.join(output_dir, f".bert_tf_write_probe-{uuid.uuid4().hex[:12]}")
    try:
      tf.io.gfile.makedirs(output_dir)
      content = os.urandom(PROBE_BYTES)
      with tf.io.gfile.GFile(probe, "wb") as f:
        f.write(content)
      with tf.io.gfile.GFile(probe, "rb") as f:
        if f.read() != content:
          raise PreflightError(f"--{output_dir_flag}={output_dir}: a probe file read back "
                               "different bytes than were written.")
      tf.io.gfile.remove(probe)
    except tf.errors.OpError as e:
      if tf.io.gfile.exists(probe):
        tf.io.gfile.remove(probe)
      if partial_saves.NO_SPACE in e.message:
        raise PreflightError(f"--{output_dir_flag}={output_dir} has no room for a "
                             f"{PROBE_BYTES // 2**20} MB probe file"
                             f"{partial_saves.free_space(output_dir)}. Make room, or pass another "
                             f"--{output_dir_flag}.") from e
      raise PreflightError(f"--{output_dir_flag}={output_dir} is not writable ({e.message}). "
                           + _fix_hint(output_dir, "write")) from e


def local_crc32c(path: str) -> str:
  """The base64 crc32c of a local file, as GCS reports it in object metadata."""
  checksum = google_crc32c.Checksum()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      checksum.update(block)
  return base64.b64encode(checksum.digest()).decode("ascii")


def _session_file(local_path: str, gcs_path: str, size: int, crc32c: str) -> str:
  """Where the URL of an unfinished upload session is kept, so a rerun resumes it."""
  key = hashlib.sha256(f"{os.path.abspath(local_path)}|{gcs_path}|{size}|{crc32c}".encode())
  return os.path.join(tempfile.gettempdir(), "bert_tf_uploads", key.hexdigest()[:32] + ".json")


def redact_url(url: str) -> str:
  """`url` without its query, which in upload-session and signed URLs is a credential."""
  parts = urllib.parse.urlsplit(url)
  return urllib.parse.urlunsplit(parts._replace(query="REDACTED" if parts.query else "",
                                                fragment=""))


def describe_response(response: requests.Response) -> str:
  """An HTTP error for messages and logs: status, reason and the URL with its query redacted."""
  return f"HTTP {response.status_code} {response.reason} from {redact_url(response.url)}"


def _server_offset(http: requests.Session, url: str, size: int) -> Optional[int]:
  """Bytes the server holds for the session; `size` when done; None when the session is gone."""
  response = http.put(url, headers={"Content-Range": f"bytes */{size}"}, timeout=_TIMEOUT_S)
  if response.status_code in (200, 201):
    return size
  if response.status_code == 308:
    received = response.headers.get("Range")  # "bytes=0-N"
    return int(received.rsplit("-", 1)[1]) + 1 if received else 0
  if response.status_code in (404, 410):
    return None
  _check_status(response, "Querying an upload session", ())


def upload_file(client: storage.Client, local_path: str, gcs_path: str,
                chunk_size: int = CHUNK_SIZE, http: Optional[requests.Session] = None) -> bool:
  """Uploads a local file unless the object already has its size and crc32c.

  The upload is resumable: a dropped connection resumes from the bytes the server holds, and
  the session URL is kept in a private temp file so that a rerun after a crash resumes too.
  The object is created with the file's crc32c, which GCS verifies.

  Returns:
    True if bytes were sent, False if the object already matched.
  """
  if chunk_size % _CHUNK_QUANTUM:
    raise ValueError(f"chunk_size={chunk_size} is not a multiple of {_CHUNK_QUANTUM}.")
  bucket_name, name = split_gcs_path(gcs_path)
  size, crc32c = os.path.getsize(local_path), local_crc32c(local_path)
  blob = client.bucket(bucket_name).get_blob(name)
  if blob is not None and blob.size == size and blob.crc32c == crc32c:
    logging.info("Already staged (same size and crc32c): %s", gcs_path)
    return False
  http = http or requests.Session()
  state = _session_file(local_path, gcs_path, size, crc32c)
  url = None
  if os.path.exists(state):
    with open(state, encoding="utf-8") as f:
      url = json.load(f)["url"]
  for attempt in range(_MAX_ATTEMPTS):
    if attempt:
      time.sleep(BACKOFF_S * 2 ** (attempt - 1))
    try:
      offset = _server_offset(http, url, size) if url else None
    except (_TransientError, requests.ConnectionError) as e:
      logging.warning("Upload of %s to %s: %s; retrying.", local_path, gcs_path, e)
      continue
    if offset is None:
      blob = client.bucket(bucket_name).blob(name)
      blob.crc32c = crc32c
      url = blob.create_resumable_upload_session(size=size, client=client, checksum=None,
                                                 timeout=_TIMEOUT_S)
      os.makedirs(os.path.dirname(state), mode=0o700, exist_ok=True)
      with io_files.atomic_output(state) as tmp:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as f:
          json.dump({"url": url}, f)  # the URL grants upload rights: never logged
      offset = 0
    try:
      with open(local_path, "rb") as f:
        while offset < size:
          f.seek(offset)
          chunk = f.read(chunk_size)
          end = offset + len(chunk) - 1
          response = http.put(url, data=chunk, timeout=_TIMEOUT_S,
                              headers={"Content-Range": f"bytes {offset}-{end}/{size}"})
          _check_status(response, f"Uploading {local_path} to {gcs_path}", (200, 201, 308))
          offset = end + 1
      break
    except (_TransientError, requests.ConnectionError) as e:
      logging.warning("Upload of %s to %s interrupted (%s); resuming.", local_path, gcs_path,
                      e if isinstance(e, _TransientError) else type(e).__name__)
  else:
    raise IOError(f"Uploading {local_path} to {gcs_path} failed {_MAX_ATTEMPTS} times; run "
                  "again to resume where it stopped.")
  os.remove(state)
  blob = client.bucket(bucket_name).get_blob(name)
  if blob is None or blob.size != size or blob.crc32c != crc32c:
    raise IOError(f"{gcs_path} does not match {local_path} after upload (size or crc32c).")
  logging.info("Staged %s -> %s (%d bytes).", local_path, gcs_path, size)
  return True


def _glob_root(part: str) -> str:
  """The directory above the first glob character of `part` (or above `part` itself)."""
  cut = min((part.index(c) for c in _GLOB_CHARS if c in part), default=len(part))
  return os.path.dirname(part[:cut])


def _local_files(part: str) -> List[str]:
  """The local files one path names: glob matches, a file, a directory's tree, a checkpoint."""
  if any(c in part for c in _GLOB_CHARS):
    matches = glob.glob(part)
  else:
    matches = [part] if os.path.exists(part) else glob.glob(part + ".*")
  files = []
  for match in matches:
    if os.path.isdir(match):
      files.extend(os.path.join(d, n) for d, _, names in os.walk(match) for n in names)
    else:
      files.append(match)
  return files


def stage_inputs(client: storage.Client, inputs: Dict[str, Optional[str]],
                 stage_to: str) -> Dict[str, str]:
  """Uploads the local parts of each path flag under `stage_to` and returns the new values.

  Each flag gets its own prefix (`stage_to/FLAG/`, then `/0`, `/1`... when it has several
  comma-separated parts); directories, globs and checkpoint prefixes keep their layout below
  it. gs:// parts are kept as they are. Flags that are unset or fully remote are not returned.
  """
  split_gcs_path(stage_to)
  rewritten = {}
  for flag, value in inputs.items():
    parts = distribution.comma_parts(value or "")
    if all(part.startswith(GCS_PREFIX) for part in parts):
      continue
    new_parts = []
    for index, part in enumerate(parts):
      if part.startswith(GCS_PREFIX):
        new_parts.append(part)
        continue
      prefix = "/".join([stage_to.rstrip("/"), flag] + ([str(index)] if len(parts) > 1 else []))
      root = _glob_root(os.path.abspath(part))
      files = _local_files(part)
      if not files:
        raise FileNotFoundError(f"--{flag}={part}: nothing to stage, no such local file.")
      for path in files:
        relative = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
        upload_file(client, path, f"{prefix}/{relative}")
      new_parts.append(f"{prefix}/{os.path.relpath(os.path.abspath(part), root)}")
    rewritten[flag] = ",".join(new_parts)
    logging.info("--%s staged: %s -> %s", flag, value, rewritten[flag])
  return rewritten


def copy_back(client: storage.Client, gcs_dir: str, names: List[str],
              local_dir: str) -> List[str]:
  """Downloads `gcs_dir/NAME` for each name into `local_dir` (atomically, crc32c-checked).

  Raises:
    FileNotFoundError: naming the first object that does not exist.
  """
  bucket_name, prefix = split_gcs_path(gcs_dir.rstrip("/"))
  bucket = client.bucket(bucket_name)
  copied = []
  for name in names:
    target = io_files.join_under(local_dir, name)
    object_name = f"{prefix}/{name}" if prefix else name
    blob = bucket.get_blob(object_name)
    if blob is None:
      raise FileNotFoundError(f"gs://{bucket_name}/{object_name} does not exist, so it cannot "
                              f"be copied back to {local_dir}.")
    with io_files.atomic_output(target) as tmp:
      blob.download_to_filename(tmp, client=client, checksum="crc32c")
    copied.append(target)
    logging.info("Copied gs://%s/%s -> %s", bucket_name, object_name, target)
  return copied
