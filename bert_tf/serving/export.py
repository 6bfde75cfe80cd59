"""SavedModel export for serving (TF Serving, Vertex AI, `tf.saved_model.load`) from raw text.

  python -m bert_tf.serving.export --model_dir=OUTPUT_DIR --output_dir=EXPORT_DIR \
      [--task=squad|classifier] [--checkpoint=PREFIX]

reads what it needs from the training run's own files (bert_config.json, vocab.txt,
run_flags.json, training_state.json, best/best.json, the checkpoints); a flag replaces each.
Signatures (bert_tf.serving.raw_text builds them; nothing but tensorflow and tensorflow_text is
needed to load and run them):

- classifier: "serving_default" takes `text_a` (string [batch]) and, for pair tasks, `text_b`;
  returns `probabilities`, `logits` and `label` (the task's label names).
- squad: "serving_default" takes `question` and `context` (string [batch]); returns `answer`,
  `start_char` and `end_char` (Unicode characters into `context`, end exclusive, -1 for no
  answer) and `score` (the answer's start + end logit; SQuAD 2.0's null score for "").
- both: "serving_features" takes int32 `input_ids`, `input_mask`, `segment_ids`
  [batch, max_seq_length] and returns the model's logits, for clients that tokenize themselves.

`export_saved_model` writes the int32 signature alone for any model.
"""

import dataclasses
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

from absl import app, flags
import tensorflow as tf
import tf_keras

from bert_tf import modeling, tokenization
from bert_tf.checkpoints import formats
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.cli import errors as cli_errors
from bert_tf.io import files as io_files, run_directory, writable
from bert_tf.serving import raw_text
from bert_tf.training import history

INPUT_NAMES = raw_text.INPUT_NAMES
TASKS = ("classifier", "squad")
PAIR_TASKS = ("mnli", "mrpc", "xnli")  # run_classifier's sentence-pair tasks (tsv/csv: text_b)
SETTINGS_FILE = "bert_tf_serving.json"  # what the export was made with, beside saved_model.pb


@dataclasses.dataclass
class ServingSettings:
  """What the serving graph needs besides the model: the run's tokenizing and prediction flags."""
  task: str  # "classifier" or "squad"
  vocab_file: str
  do_lower_case: bool
  max_seq_length: int
  label_names: Optional[List[str]] = None  # classifier: the label of each logit
  pair: bool = False  # classifier: takes text_b
  doc_stride: int = 128  # squad, with run_squad's defaults
  max_query_length: int = 64
  version_2_with_negative: bool = False
  n_best_size: int = 20
  max_answer_length: int = 30
  null_score_diff_threshold: float = 0.0

  def __post_init__(self):
    if self.task not in TASKS:
      raise ValueError(f"--task={self.task!r}: expected one of {', '.join(TASKS)}.")
    if self.task == "classifier" and not self.label_names:
      raise ValueError("A classifier export needs its label names (--label_names).")


def serving_function(model: tf_keras.Model, seq_length: int
                     ) -> tf.types.experimental.ConcreteFunction:
  """The model's inference call on int32 [batch, seq_length] inputs, as a concrete function."""
  @tf.function(input_signature=[raw_text.features_spec(seq_length)])
  def serve(features):
    return model(features, training=False)
  return serve.get_concrete_function()


def _save(root: tf.Module, export_dir: str, signatures: Dict[str, Any],
          settings: Optional[Dict[str, Any]] = None, overwrite: bool = False) -> str:
  """tf.saved_model.save to a temporary sibling of `export_dir`, renamed when complete.

  A failed export leaves nothing at `export_dir`. An existing `export_dir` is an error, or with
  `overwrite` replaced (deleted just before the rename).
  """
  export_dir = export_dir.rstrip("/")
  if tf.io.gfile.exists(export_dir) and not overwrite:
    raise ValueError(f"{export_dir} already exists: export into a new directory (a SavedModel "
                     "is not overwritten in place).")
  parent = os.path.dirname(export_dir)
  if parent:
    tf.io.gfile.makedirs(parent)
  temporary = io_files.temporary_path(export_dir)
  # tf.saved_model.save round-trips absl's verbosity through set_verbosity, which leaves the
  # "absl" logger at WARNING: the caller's INFO logs would vanish for the rest of the process.
  absl_logger = logging.getLogger("absl")
  absl_level = absl_logger.level
  try:
    tf.saved_model.save(root, temporary, signatures=signatures)
    if settings is not None:
      io_files.write_json_atomic(os.path.join(temporary, SETTINGS_FILE), settings)
    if tf.io.gfile.exists(export_dir):
      tf.io.gfile.rmtree(export_dir)
    tf.io.gfile.rename(temporary, export_dir)
  finally:
    absl_logger.setLevel(absl_level)
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.rmtree(temporary)
  return export_dir


def export_saved_model(model: tf_keras.Model, export_dir: str, seq_length: int) -> str:
  """Writes `model` with an int32-features "serving_default" signature to the new `export_dir`."""
  return _save(model, export_dir, {"serving_default": serving_function(model, seq_length)})


def serving_module(model: tf_keras.Model, settings: ServingSettings) -> raw_text.ServingModule:
  """The raw-text serving module of `settings.task` around `model`."""
  if settings.task == "classifier":
    return raw_text.TextClassifier(model, settings.vocab_file, settings.do_lower_case,
                                   settings.max_seq_length, settings.label_names, settings.pair)
  return raw_text.QuestionAnswerer(
      model, settings.vocab_file, settings.do_lower_case, settings.max_seq_length,
      settings.doc_stride, settings.max_query_length, settings.version_2_with_negative,
      settings.n_best_size, settings.max_answer_length, settings.null_score_diff_threshold)


def signatures(module: raw_text.ServingModule) -> Dict[str, tf.types.experimental.ConcreteFunction]:
  """"serving_default" (raw text) and "serving_features" (int32 features) of a serving module."""
  if isinstance(module, raw_text.TextClassifier):
    return {"serving_default": module.classify.get_concrete_function(),
            "serving_features": module.classify_features.get_concrete_function()}
  return {"serving_default": module.answer.get_concrete_function(),
          "serving_features": module.span_logits.get_concrete_function()}


def export_run(model: tf_keras.Model, settings: ServingSettings, export_dir: str,
               overwrite: bool = False) -> str:
  """Writes the raw-text SavedModel of a trained `model` to `export_dir` (atomically); returns it.

  `settings` are the run's (ServingSettings); with `overwrite` an existing export is replaced.
  """
  module = serving_module(model, settings)
  recorded = dataclasses.asdict(settings)
  recorded["vocab_file"] = os.path.basename(settings.vocab_file)  # its content is in the graph
  return _save(module, export_dir, signatures(module), recorded, overwrite)


# ---------------------------------------------------------------------------------------------
# Reading a training run's files


@dataclasses.dataclass
class RunFiles:
  """Everything an export of a run needs, resolved from its files and the flags."""
  settings: ServingSettings
  bert_config_file: str
  checkpoint: str


def _read_json(path: str) -> Optional[Any]:
  """The JSON at `path`, or None when the file does not exist."""
  if not tf.io.gfile.exists(path):
    return None
  try:
    return io_files.read_json(path)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}).") from None


def _run_file(model_dir: str, name: str, given: Optional[str], flag: str) -> str:
  """`given`, else MODEL_DIR/NAME; an error naming both when neither exists."""
  path = given or os.path.join(model_dir, name)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} does not exist: pass --{flag}." if not given else
                            f"--{flag}={given} does not exist.")
  return path


def _checkpoint(model_dir: str, given: Optional[str]) -> str:
  """--checkpoint, else the one the run directory means (its best model, else its latest)."""
  if given:
    return given
  chosen = run_directory.model_checkpoint(model_dir)
  if chosen is None:
    raise FileNotFoundError(f"{model_dir} holds no checkpoint (nor "
                            f"{run_directory.BEST_DIR}/{run_directory.BEST_FILE}): pass "
                            "--checkpoint.")
  return chosen.prefix


def read_run(model_dir: str, overrides: Optional[Dict[str, Any]] = None) -> RunFiles:
  """Resolves an export's settings: each from `overrides` (the flags; None = not given) or else
  from the run's files in `model_dir`. A setting found in neither is an error naming the file
  it was looked for in and the flag that replaces it, before anything is built."""
  given = {key: value for key, value in (overrides or {}).items() if value is not None}
  flags_path = os.path.join(model_dir, history.RUN_FLAGS_FILE)
  run_flags = _read_json(flags_path) or {}

  def setting(name: str, default: Any = None, required: bool = True) -> Any:
    if name in given:
      return given[name]
    if name in run_flags:
      return run_flags[name]
    if required:
      where = f"{flags_path} has no {name!r}" if run_flags else f"{flags_path} does not exist"
      raise ValueError(f"{where}: pass --{name}.")
    return default

  task = given.get("task") or ("classifier" if "task_name" in run_flags else
                               "squad" if "doc_stride" in run_flags else None)
  if task is None:
    where = (f"{flags_path} names neither a classifier (task_name) nor a SQuAD run (doc_stride)"
             if run_flags else f"{flags_path} does not exist")
    raise ValueError(f"{where}: pass --task=classifier or --task=squad.")
  vocab_file = _run_file(model_dir, "vocab.txt", given.get("vocab_file"), "vocab_file")
  config_file = _run_file(model_dir, "bert_config.json", given.get("bert_config_file"),
                          "bert_config_file")
  do_lower_case = tokenization.resolve_do_lower_case(
      vocab_file, setting("do_lower_case", required=False))
  values: Dict[str, Any] = dict(task=task, vocab_file=vocab_file, do_lower_case=do_lower_case,
                                max_seq_length=setting("max_seq_length"))
  if task == "classifier":
    values["label_names"] = given.get("label_names") or _label_names(model_dir)
    task_name = str(run_flags.get("task_name", "")).lower()
    values["pair"] = given.get("pair", task_name in PAIR_TASKS or (
        task_name in ("tsv", "csv") and run_flags.get("text_b_column") is not None))
  else:
    values.update(doc_stride=setting("doc_stride"), max_query_length=setting("max_query_length"),
                  version_2_with_negative=setting("version_2_with_negative"))
    for name in ("n_best_size", "max_answer_length", "null_score_diff_threshold"):
      values[name] = setting(name, getattr(ServingSettings, name), required=False)
  return RunFiles(ServingSettings(**values), config_file,
                  _checkpoint(model_dir, given.get("checkpoint")))


def _label_names(model_dir: str) -> List[str]:
  """The classifier's label list, as training recorded it in training_state.json."""
  path = os.path.join(model_dir, history.STATE_FILE)
  state = _read_json(path)
  labels = state.get("extras", {}).get("label_list") if isinstance(state, dict) else None
  if not labels:
    raise ValueError(f"{path} " + ("does not exist" if state is None else "records no "
                     "extras.label_list") + ": pass --label_names (in the run's label order).")
  return [str(label) for label in labels]


def load_model(run: RunFiles) -> tf_keras.Model:
  """The run's model, built from its config and restored from its checkpoint, heads included."""
  config = BertConfig.from_json_file(run.bert_config_file)
  settings = run.settings
  if settings.max_seq_length > config.max_position_embeddings:
    raise ValueError(f"max_seq_length ({settings.max_seq_length}) exceeds the model's "
                     f"max_position_embeddings ({config.max_position_embeddings}) in "
                     f"{run.bert_config_file}.")
  model = (modeling.BertClassifier(config, len(settings.label_names))
           if settings.task == "classifier" else modeling.BertSpanLabeler(config))
  model = modeling.build_model(model)
  report = formats.load_init_checkpoint(model, run.checkpoint, run.bert_config_file)
  if report.initialized:
    raise ValueError(f"{run.checkpoint} lacks the {settings.task} head ({report.initialized[0]} "
                     "...): export a fine-tuned checkpoint, not a pre-trained one.")
  return model


# ---------------------------------------------------------------------------------------------
# Command line

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The export's flags; every one but --model_dir and --output_dir defaults to the run's own."""
  flags.DEFINE_string("model_dir", None, "The training run's --output_dir.")
  flags.DEFINE_string("output_dir", None, "The SavedModel directory to write (must not exist).")
  flags.DEFINE_enum("task", None, list(TASKS), "Default: from run_flags.json.")
  flags.DEFINE_string("checkpoint", None, "Checkpoint prefix. Default: the one --model_dir "
                      "means: its best model (best/best.json), else its latest checkpoint.")
  flags.DEFINE_string("vocab_file", None, "Default: MODEL_DIR/vocab.txt.")
  flags.DEFINE_string("bert_config_file", None, "Default: MODEL_DIR/bert_config.json.")
  flags.DEFINE_bool("do_lower_case", None, "Default: run_flags.json's, else from the vocab.")
  flags.DEFINE_integer("max_seq_length", None, "Default: run_flags.json's.")
  flags.DEFINE_list("label_names", None, "Classifier labels, in the model's order. Default: "
                    "training_state.json's label_list.")
  flags.DEFINE_bool("pair", None, "Classifier takes text_b. Default: from the run's task_name.")
  flags.DEFINE_integer("doc_stride", None, "SQuAD. Default: run_flags.json's.")
  flags.DEFINE_integer("max_query_length", None, "SQuAD. Default: run_flags.json's.")
  flags.DEFINE_bool("version_2_with_negative", None, "SQuAD. Default: run_flags.json's.")
  flags.DEFINE_integer("n_best_size", None, "SQuAD. Default: run_flags.json's, else 20.")
  flags.DEFINE_integer("max_answer_length", None, "SQuAD. Default: run_flags.json's, else 30.")
  flags.DEFINE_float("null_score_diff_threshold", None, "SQuAD 2.0. Default: run_flags.json's, "
                     "else 0.0.")


_OVERRIDES = ("task", "checkpoint", "vocab_file", "bert_config_file", "do_lower_case",
              "max_seq_length", "label_names", "pair", "doc_stride", "max_query_length",
              "version_2_with_negative", "n_best_size", "max_answer_length",
              "null_score_diff_threshold")


def main(argv: Sequence[str]) -> None:
  with cli_errors.user_errors(argv):  # a bad flag or file: one line, no traceback
    if not FLAGS.model_dir or not FLAGS.output_dir:
      raise ValueError("--model_dir (the training run) and --output_dir (the export) are "
                       "required.")
    if tf.io.gfile.exists(FLAGS.output_dir):
      raise ValueError(f"--output_dir={FLAGS.output_dir} already exists: export into a new "
                       "directory.")
    writable.check_writable(os.path.dirname(FLAGS.output_dir.rstrip("/")), "output_dir",
                            FLAGS.output_dir)
    run = read_run(FLAGS.model_dir, {name: FLAGS[name].value for name in _OVERRIDES})
    export_run(load_model(run), run.settings, FLAGS.output_dir)
  print(f"Exported {run.checkpoint} ({run.settings.task}) to {FLAGS.output_dir}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
