"""What a run directory (a training --output_dir) means, wherever it is copied, moved or synced.

Every path a run records points inside its directory and is written relative to it, so a copy
(local or gs://, either way) means the same thing and never reaches back into the original. Older
runs recorded paths as typed or absolute: those are read by their file name inside the directory
(a checkpoint always lives there), with a log line, and never followed elsewhere.

`model_checkpoint` is the one rule every tool follows to pick the weights a directory stands for:
its best model (best/best.json) when it has one, else its latest checkpoint. `OUTPUT_DIR/best` on
its own means the same best model.

`set_aside_outputs` and `record_outputs` keep a run's outputs (predictions, evaluations) from
being replaced by those of other weights unannounced: each output's checkpoint is recorded, and
an output about to be rewritten from other weights is moved to previous_outputs/ with a warning.
"""

import dataclasses
import hashlib
import os
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import tensorflow as tf
from absl import logging
from google.protobuf import text_format

from bert_tf.io import files as io_files

BEST_DIR = "best"
BEST_FILE = "best.json"
STATE_FILE = "checkpoint"  # TensorFlow's checkpoint state ("which is latest"), text proto
OUTPUT_SOURCES_FILE = "output_sources.json"
PREVIOUS_OUTPUTS_DIR = "previous_outputs"

_logged: Set[Tuple[Any, ...]] = set()  # messages already logged: tools resolve the same directory several times


def _log_once(level: int, message: str, *args: Any) -> None:
  key = (message, *args)
  if key not in _logged:
    _logged.add(key)
    logging.log(level, message, *args)


def _normalized(path: str) -> str:
  return path.rstrip("/") if io_files.is_url(path) else os.path.abspath(path)


def relative_path(directory: str, path: str) -> Optional[str]:
  """`path` relative to `directory` ("best/ckpt-50") when it lies inside it, else None."""
  directory, path = _normalized(directory), _normalized(path)
  if not path.startswith(directory.rstrip("/") + "/"):
    return None
  return path[len(directory.rstrip("/")) + 1:]


def label(directory: str, path: str) -> str:
  """How a run records `path`: relative to `directory` when inside it, else as given."""
  return relative_path(directory, path) or path


def _in_directory(directory: str, recorded: str, where: str) -> str:
  """The file `recorded` (in file `where`) names inside `directory`: by its file name, since
  what a run records always lives there. A path recorded as typed or absolute is logged."""
  path = os.path.join(directory, os.path.basename(recorded.rstrip("/")))
  if os.path.dirname(recorded) not in ("", BEST_DIR) and _normalized(recorded) != _normalized(path):
    _log_once(logging.INFO, "%s records %s (a path as an older run typed it); reading it as %s, "
              "in this directory.", where, recorded, path)
  return path


def _exists(prefix: str) -> bool:
  return tf.io.gfile.exists(prefix + ".index")


# ---------------------------------------------------------------------------------------------
# The best model: OUTPUT_DIR/best/best.json


def best_record(checkpoint: str, **fields: Any) -> Dict[str, Any]:
  """best.json's content for a best checkpoint prefix in best/: its path as "best/NAME"."""
  return dict(fields, checkpoint=f"{BEST_DIR}/{os.path.basename(checkpoint)}")


def _read_best_file(best_dir: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(best_dir, BEST_FILE)
  if not tf.io.gfile.exists(path):
    return None
  best = io_files.read_json(path)
  if not isinstance(best, dict) or not best.get("checkpoint"):
    raise ValueError(f"{path} names no checkpoint: delete it (the run keeps a new best model) "
                     "or name a checkpoint prefix instead of the directory.")
  checkpoint = _in_directory(best_dir, best["checkpoint"], path)
  if not _exists(checkpoint):
    raise FileNotFoundError(f"{path} names {best['checkpoint']}, but {checkpoint}.index does not "
                            "exist (a copy cut short?): copy best/ again, or name another "
                            "checkpoint prefix.")
  return dict(best, checkpoint=checkpoint)


def read_best(output_dir: str) -> Optional[Dict[str, Any]]:
  """The best model of a run (metric, value, step, checkpoint: the prefix in this directory), or
  None. Raises when best.json names a checkpoint that is not there."""
  return _read_best_file(os.path.join(output_dir, BEST_DIR))


def _is_best_dir(directory: str) -> bool:
  """Whether `directory` is a run's best/ (it holds best.json)."""
  return tf.io.gfile.exists(os.path.join(directory, BEST_FILE))


def model_file_directories(directory: str) -> List[str]:
  """Where the vocab and config of a checkpoint in `directory` are: there, and for a run's
  best/ also in the run directory above it (training writes them there once)."""
  if _is_best_dir(directory):
    return [directory, os.path.dirname(directory.rstrip("/"))]
  return [directory]


# ---------------------------------------------------------------------------------------------
# The latest checkpoint: TensorFlow's "checkpoint" state file


def latest_checkpoint(directory: str) -> Optional[str]:
  """The latest checkpoint the state file names, as the prefix inside `directory` (a path
  elsewhere, absolute as TensorFlow may write it, is read by its name), or None."""
  if not tf.io.gfile.exists(os.path.join(directory, STATE_FILE)):
    return None
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return None
  prefix = _in_directory(directory, state.model_checkpoint_path,
                         os.path.join(directory, STATE_FILE))
  if not _exists(prefix):
    _log_once(logging.WARNING, "%s names %s, which is not in %s: ignored.",
              os.path.join(directory, STATE_FILE), state.model_checkpoint_path, directory)
    return None
  return prefix


def make_checkpoint_state_relative(directory: str) -> None:
  """Rewrites TensorFlow's state file with names relative to `directory` when it holds other
  paths, so that a checkpoint manager on a copy never resumes from (or deletes in) the original."""
  path = os.path.join(directory, STATE_FILE)
  if not tf.io.gfile.exists(path):
    return
  state = tf.train.get_checkpoint_state(directory)  # relative entries come back joined
  if state is None:
    return
  names = [os.path.basename(p) for p in state.all_model_checkpoint_paths]
  name = os.path.basename(state.model_checkpoint_path)
  joined = [os.path.join(directory, n) for n in [name, *names]]
  if [_normalized(p) for p in [state.model_checkpoint_path, *state.all_model_checkpoint_paths]
      ] == [_normalized(p) for p in joined]:
    return
  logging.info("%s names checkpoints outside %s (%s): rewritten with their names in it.", path,
               directory, state.model_checkpoint_path)
  state.model_checkpoint_path = name
  del state.all_model_checkpoint_paths[:]
  state.all_model_checkpoint_paths.extend(names)
  io_files.write_text_atomic(path, text_format.MessageToString(state))


# ---------------------------------------------------------------------------------------------
# The one rule


@dataclasses.dataclass(frozen=True)
class ModelCheckpoint:
  """The checkpoint a directory stands for, and why."""
  prefix: str
  best: Optional[Dict[str, Any]]  # best.json's record when it is the best model

  @property
  def description(self) -> str:
    if self.best:
      value = self.best.get("value")
      shown = f"{value:.4f}" if isinstance(value, (int, float)) else value
      return f"the best model by {self.best.get('metric')} {shown} at step {self.best.get('step')}"
    return "the latest checkpoint"


def model_checkpoint(directory: str) -> Optional[ModelCheckpoint]:
  """The checkpoint a run directory (or a run's best/) means: its best model when it has one
  (logged, with the latest it was preferred to), else its latest checkpoint, else None."""
  directory = directory.rstrip("/")
  best = _read_best_file(directory) or read_best(directory)
  latest = latest_checkpoint(directory)
  if best:
    _log_once(logging.INFO, "%s means %s: %s (its latest checkpoint is %s).", directory,
              ModelCheckpoint(best["checkpoint"], best).description, best["checkpoint"],
              latest or "none")
    return ModelCheckpoint(best["checkpoint"], best)
  return ModelCheckpoint(latest, None) if latest else None


# ---------------------------------------------------------------------------------------------
# Outputs and the weights they came from


def weights_source(output_dir: str, checkpoint: str) -> Dict[str, Any]:
  """What identifies the weights at `checkpoint`: its path as the run records it, and the
  SHA-256 of its .index (which holds every tensor's checksum), so a retrained ckpt-150 differs."""
  source: Dict[str, Any] = {"checkpoint": label(output_dir, checkpoint)}
  if _exists(checkpoint):
    with tf.io.gfile.GFile(checkpoint + ".index", "rb") as f:
      source["index_sha256"] = hashlib.sha256(f.read()).hexdigest()
  return source


def _sources_path(output_dir: str) -> str:
  return os.path.join(output_dir, OUTPUT_SOURCES_FILE)


def _read_sources(output_dir: str) -> Dict[str, Dict[str, Any]]:
  path = _sources_path(output_dir)
  return io_files.read_json(path) if tf.io.gfile.exists(path) else {}


def set_aside_outputs(output_dir: str, source: Dict[str, Any]) -> List[str]:
  """Moves each output an earlier run wrote from other weights than `source` to
  previous_outputs/CHECKPOINT/, with a warning naming both checkpoints; returns the moved names."""
  moved: Dict[str, List[str]] = {}  # the earlier checkpoint -> the names moved
  for name, old in sorted(_read_sources(output_dir).items()):
    path = os.path.join(output_dir, name)
    if old == source or not tf.io.gfile.exists(path):
      continue
    checkpoint = str(old.get("checkpoint"))
    tf.io.gfile.makedirs(_previous_outputs(output_dir, checkpoint))
    tf.io.gfile.rename(path, os.path.join(_previous_outputs(output_dir, checkpoint), name),
                       overwrite=True)
    moved.setdefault(checkpoint, []).append(name)
  for checkpoint, names in moved.items():
    logging.warning("%s in %s came from %s; this run uses %s, so they are moved to %s, not "
                    "overwritten.", ", ".join(names), output_dir, checkpoint,
                    source.get("checkpoint"), _previous_outputs(output_dir, checkpoint))
  return [name for names in moved.values() for name in names]


def _previous_outputs(output_dir: str, checkpoint: str) -> str:
  """Where the outputs of `checkpoint` go when other weights replace them."""
  return os.path.join(output_dir, PREVIOUS_OUTPUTS_DIR,
                      checkpoint.strip("/").replace("/", "_").replace(":", "_"))


def record_outputs(output_dir: str, names: Sequence[str], source: Dict[str, Any]) -> None:
  """Records that outputs `names` (in output_dir) were written with the weights of `source`."""
  if not names:
    return
  sources = _read_sources(output_dir)
  sources.update({name: source for name in names})
  io_files.write_json_atomic(_sources_path(output_dir), sources)
