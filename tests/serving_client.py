"""Runs SavedModel signatures in a fresh process that imports only tensorflow and tensorflow_text.

  python serving_client.py REQUESTS.json RESPONSES.json

REQUESTS.json: [{"export_dir": ..., "signature": ..., "inputs": {name: list}}, ...]; the
responses are each signature's outputs as lists (strings decoded), plus "modules": the bert_tf,
tf-models-official and tf_keras modules that were imported (none must be; TensorFlow itself
imports Keras 3). Tests start it with
`run`, with the project off sys.path, as a serving client would run.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict, List


def _plain(value: Any) -> Any:
  """A JSON-friendly copy of an output's list: bytes decoded as UTF-8."""
  if isinstance(value, list):
    return [_plain(item) for item in value]
  return value.decode("utf-8") if isinstance(value, bytes) else value


def _serve(requests_path: str, responses_path: str) -> None:
  import importlib.util
  # `make install` installs bert_tf editable, importable from anywhere through a finder; a
  # serving client has no bert_tf, so that finder goes.
  sys.meta_path[:] = [finder for finder in sys.meta_path
                      if not getattr(finder, "__module__", "").startswith("__editable__")]
  assert importlib.util.find_spec("bert_tf") is None, "bert_tf must not be importable here"
  import tensorflow as tf
  import tensorflow_text  # noqa: F401  (registers the ops the tokenizer uses)
  with open(requests_path, encoding="utf-8") as f:
    requests = json.load(f)
  loaded: Dict[str, Any] = {}
  responses = []
  for request in requests:
    if request["export_dir"] not in loaded:
      loaded[request["export_dir"]] = tf.saved_model.load(request["export_dir"])
    signature = loaded[request["export_dir"]].signatures[request["signature"]]
    dtypes = {name: spec.dtype for name, spec in signature.structured_input_signature[1].items()}
    outputs = signature(**{name: tf.constant(value, dtypes[name])
                           for name, value in request["inputs"].items()})
    responses.append({name: _plain(value.numpy().tolist()) for name, value in outputs.items()})
  modules = sorted(name for name in sys.modules
                   if name.split(".")[0] in ("bert_tf", "official", "tf_keras"))
  with open(responses_path, "w", encoding="utf-8") as f:
    json.dump(dict(responses=responses, modules=modules), f)


def run(requests: List[Dict[str, Any]], workdir: str) -> Dict[str, Any]:
  """Serves `requests` in a fresh Python (this file, run from `workdir`); returns its output."""
  requests_path = os.path.join(workdir, "requests.json")
  responses_path = os.path.join(workdir, "responses.json")
  with open(requests_path, "w", encoding="utf-8") as f:
    json.dump(requests, f)
  # Nor what importing bert_tf set in this process's environment (TF_USE_LEGACY_KERAS).
  env = {key: value for key, value in os.environ.items()
         if key not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  # -I: isolated mode, so neither the project directory nor PYTHONPATH is on sys.path.
  process = subprocess.run([sys.executable, "-I", os.path.abspath(__file__), requests_path,
                            responses_path], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=300)
  assert process.returncode == 0, process.stderr[-3000:]
  with open(responses_path, encoding="utf-8") as f:
    return json.load(f)


if __name__ == "__main__":
  _serve(*sys.argv[1:])
