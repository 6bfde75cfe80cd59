"""Flags shared by run_squad.py, run_classifier.py and run_pretraining.py, and what they resolve to.

Names, defaults and meanings follow google-research/bert's scripts; extras are marked as such.
"""

import contextlib
import dataclasses
import hashlib
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

from absl import app, flags, logging

import tensorflow as tf
from google.cloud import storage

from bert_tf import checkpoints, gcs, io_utils, modeling, tokenization
from bert_tf.training import distribution
from bert_tf.training import trainer
from bert_tf.configs import BertConfig

FLAGS = flags.FLAGS


def define_model_flags() -> None:
  """vocab_file, bert_config_file, init_checkpoint, do_lower_case (+ mixed_precision)."""
  flags.DEFINE_string("vocab_file", None, "The vocabulary file the BERT model was trained on. "
                      "May be omitted when --init_checkpoint is a directory that holds vocab.txt.")
  flags.DEFINE_string("bert_config_file", None, "The config json file of the pre-trained BERT "
                      "model (Google bert_config.json or Hugging Face config.json). May be "
                      "omitted when --init_checkpoint is a directory that holds one.")
  flags.DEFINE_string("init_checkpoint", None, "Initial checkpoint: a Google TF1 checkpoint "
                      "(.../bert_model.ckpt), a bert_tf output directory or checkpoint, or a "
                      "Hugging Face BERT directory.")
  flags.DEFINE_bool("do_lower_case", True, "Whether to lower case the input text. True for "
                    "uncased models, False for cased ones. When not given, it is inferred from "
                    "the vocab; a value that contradicts the vocab is an error.")
  flags.DEFINE_enum("mixed_precision", None, ["float32", "mixed_bfloat16", "mixed_float16"],
                    "(bert_tf) Compute dtype policy: mixed_bfloat16 on TPU, mixed_float16 "
                    "(with loss scaling) on GPU.")


def define_training_flags(learning_rate: float, train_batch_size: int) -> None:
  """google-research's training flags plus bert_tf's optimizer and schedule extras."""
  flags.DEFINE_string("output_dir", None, "The output directory where the model checkpoints "
                      "and results will be written (local or gs://).")
  flags.DEFINE_integer("train_batch_size", train_batch_size, "Total batch size for training.")
  flags.DEFINE_float("learning_rate", learning_rate, "The initial learning rate for Adam.")
  flags.DEFINE_float("num_train_epochs", 3.0, "Total number of training epochs to perform.")
  flags.DEFINE_float("warmup_proportion", 0.1, "Proportion of training to perform linear "
                     "learning rate warmup for. E.g., 0.1 = 10% of training.")
  flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")
  flags.DEFINE_integer("iterations_per_loop", 1000, "How many steps to make in each call to "
                       "the accelerator (one tf.function).")
  flags.DEFINE_integer("keep_checkpoint_max", 5, "(bert_tf) Checkpoints to keep.")
  flags.DEFINE_enum("optimizer", "adamw", ["adamw", "lamb"], "(bert_tf) Optimizer.")
  flags.DEFINE_bool("decay_from_warmup_end", False, "(bert_tf) Decay the learning rate from its "
                    "full value at the end of warmup instead of google-research's schedule, "
                    "which drops it there.")
  flags.DEFINE_bool("use_xla", False, "(bert_tf) Compile the training step with XLA "
                    "(TPUs always compile).")
  flags.DEFINE_integer("seed", 12345, "(bert_tf) Random seed for initialisation and data order.")
  flags.DEFINE_bool("overwrite_output_dir", False, "(bert_tf) Train afresh in an --output_dir "
                    "that holds a run made with other flags, deleting its checkpoints. Without "
                    "it such a run is refused; a run with the same flags resumes.")
  distribution.define_flags()


def define_cloud_flags() -> None:
  """--stage_to and --local_results_dir: a remote TPU driven from a machine with local files."""
  flags.DEFINE_string("stage_to", None, "(bert_tf) gs://bucket/prefix: with a remote TPU, upload "
                      "local input files there (resumable, skipping objects whose size and "
                      "crc32c already match) and read them from there. Nothing local is deleted.")
  flags.DEFINE_string("local_results_dir", None, "(bert_tf) With --stage_to, a local directory "
                      "the predictions and evaluation results are copied back to after the run.")


def check_and_stage_paths(input_flags: Sequence[str],
                          config: distribution.StrategyConfig) -> Optional[storage.Client]:
  """Preflight of the input flags and --output_dir, then --stage_to, before any expensive work.

  With --stage_to and a remote TPU, local inputs are uploaded and their flags rewritten; then a
  remote TPU must see only gs:// paths. Returns the storage client used for staging (for
  `copy_results_back`), or None when nothing was staged.
  """
  inputs = {name: FLAGS[name].value for name in input_flags}
  gcs.check_inputs_and_output(inputs, "output_dir", FLAGS.output_dir)
  client = None
  if FLAGS.stage_to:
    if distribution.is_remote_tpu(config):
      client = storage.Client()
      for name, value in gcs.stage_inputs(client, inputs, FLAGS.stage_to).items():
        FLAGS[name].value = value
    else:
      logging.info("--stage_to is ignored: no remote TPU, so local files are read directly.")
  distribution.remote_tpu_requires_gcs(
      config, {**{name: FLAGS[name].value for name in input_flags}, "output_dir": FLAGS.output_dir})
  return client


def copy_results_back(client: Optional[storage.Client], names: List[str]) -> None:
  """Copies output_dir/NAME for each name to --local_results_dir when inputs were staged."""
  if client is None or not FLAGS.local_results_dir:
    return
  copied = gcs.copy_back(client, FLAGS.output_dir, names, FLAGS.local_results_dir)
  print(f"Copied back to {FLAGS.local_results_dir}: {', '.join(copied)}")


RUN_FLAGS_FILE = "run_flags.json"
# Training flags of every script that change the weights a run ends with. Not among them, so a
# rerun after a disconnect may change them: do_eval/do_predict, batch sizes for evaluation,
# checkpoint and loop frequencies, TPU/strategy flags, mixed_precision/use_xla, --stage_to.
TRAINING_FLAGS = ("init_checkpoint", "train_batch_size", "learning_rate", "optimizer",
                  "decay_from_warmup_end", "seed")
# What a previous run left that --overwrite_output_dir deletes (the "checkpoint" index first, so
# a deletion cut short never leaves a checkpoint that looks complete); other files are kept.
_RUN_OUTPUTS = ("checkpoint", "ckpt-*", "best", "export", "train", "eval",
                "classifier_state.json", RUN_FLAGS_FILE)


def file_fingerprint(path: str) -> str:
  """sha256 of a (small) file's bytes, so a model file is compared by content, not by path."""
  with tf.io.gfile.GFile(path, "rb") as f:
    return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def model_settings(config: BertConfig, vocab_file: Optional[str] = None,
                   do_lower_case: Optional[bool] = None) -> Dict[str, Any]:
  """What identifies a model for check_output_dir: its config values, vocab bytes, lowercasing."""
  settings: Dict[str, Any] = {f"bert_config_file[{key}]": value
                              for key, value in config.to_dict().items()}
  if vocab_file:
    settings["vocab_file"] = file_fingerprint(vocab_file)
  if do_lower_case is not None:
    settings["do_lower_case"] = do_lower_case
  return settings


def check_output_dir_flags(model: Dict[str, Any], training_flags: Sequence[str],
                           strategy: tf.distribute.Strategy, output_dir: Optional[str] = None
                           ) -> None:
  """check_output_dir with the script's flags: --output_dir, --do_train, --overwrite_output_dir."""
  check_output_dir(output_dir or FLAGS.output_dir, model,
                   {name: FLAGS[name].value for name in training_flags}, FLAGS.do_train,
                   FLAGS.overwrite_output_dir, trainer.is_chief(strategy))


def _differences(recorded: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
  return [f"  --{name}: {recorded.get(name)!r} then, {current.get(name)!r} now"
          for name in sorted(set(recorded) | set(current))
          if recorded.get(name) != current.get(name)]


def _delete_previous_run(output_dir: str) -> None:
  for pattern in _RUN_OUTPUTS:
    for path in tf.io.gfile.glob(os.path.join(output_dir, pattern)):
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      else:
        tf.io.gfile.remove(path)
  logging.info("--overwrite_output_dir: deleted the previous run's checkpoints in %s.",
               output_dir)


def check_output_dir(output_dir: str, model: Dict[str, Any], training: Dict[str, Any],
                     do_train: bool, overwrite: bool = False, chief: bool = True) -> None:
  """Refuses an --output_dir that holds a run made with other flags, before any work.

  `model` (vocab/config fingerprints, do_lower_case) must match for any run that uses the
  checkpoints there; `training` must match too when this run trains, which then records both in
  OUTPUT_DIR/run_flags.json (atomically; on the chief only). With `overwrite`
  (--overwrite_output_dir) a training run deletes the previous run's checkpoints instead.

  Raises:
    ValueError: naming each differing flag, its recorded and its current value, and the fixes.
  """
  path = os.path.join(output_dir, RUN_FLAGS_FILE)
  current = {**model, **training}
  if do_train and overwrite:
    if chief:
      _delete_previous_run(output_dir)
  elif tf.io.gfile.exists(path) and not tf.train.latest_checkpoint(output_dir):
    # A run that failed before its first checkpoint (e.g. on a bad data file) left only its
    # flags: nothing would be mixed, so the new flags replace them.
    logging.info("%s belongs to a run that saved no checkpoint; recording the new flags.", path)
  elif tf.io.gfile.exists(path):
    recorded = io_utils.read_json(path)
    compared = current if do_train else model
    differences = _differences({k: recorded.get(k) for k in compared}, compared)
    if differences:
      raise ValueError(
          f"--output_dir={output_dir} holds a run made with other flags ({path}):\n"
          + "\n".join(differences) + "\nRun with the same flags to resume it, add "
          "--overwrite_output_dir to delete its checkpoints and train afresh, or use a new "
          "--output_dir. If the same files only moved, delete run_flags.json to resume.")
    return
  if do_train and chief:
    io_utils.write_json_atomic(path, current)


@dataclasses.dataclass
class ModelFiles:
  """The resolved vocab, config and lowercasing of the model a script runs."""
  vocab_file: str
  config: BertConfig
  config_file: str  # where `config` was read, to name in errors
  do_lower_case: bool
  init_checkpoint: Optional[str]

  def tokenizer(self) -> tokenization.FullTokenizer:
    return tokenization.FullTokenizer(self.vocab_file, self.do_lower_case)

  def settings(self) -> Dict[str, Any]:
    return model_settings(self.config, self.vocab_file, self.do_lower_case)


def model_files(init_checkpoint: Optional[str], vocab_file: Optional[str],
                bert_config_file: Optional[str], do_lower_case: Optional[bool]) -> ModelFiles:
  """Fills vocab/config from `init_checkpoint` when omitted and checks that vocab, config and
  checkpoint agree, before any data is converted or model built. None: infer do_lower_case."""
  vocab_file, config_file = checkpoints.resolve_model_files(
      init_checkpoint, vocab_file, bert_config_file)
  config = BertConfig.from_json_file(config_file)
  tokenization.check_vocab(vocab_file)
  checkpoints.check_vocab_matches_config(vocab_file, config, config_file)
  if init_checkpoint:
    checkpoints.check_checkpoint_matches_config(init_checkpoint, config, config_file)
  do_lower_case = tokenization.resolve_do_lower_case(vocab_file, do_lower_case, init_checkpoint)
  return ModelFiles(vocab_file, config, config_file, do_lower_case, init_checkpoint)


def resolve_model_files() -> ModelFiles:
  """model_files from --init_checkpoint, --vocab_file, --bert_config_file, --do_lower_case."""
  given = FLAGS.do_lower_case if FLAGS["do_lower_case"].present else None
  return model_files(FLAGS.init_checkpoint, FLAGS.vocab_file, FLAGS.bert_config_file, given)


def strategy_config() -> distribution.StrategyConfig:
  return distribution.StrategyConfig.from_flags(FLAGS)


def train_config(num_train_steps: int, jit_compile: Optional[bool] = None) -> trainer.TrainConfig:
  """A TrainConfig from the training flags, warmup as a proportion of `num_train_steps`."""
  return trainer.TrainConfig(
      output_dir=FLAGS.output_dir,
      train_batch_size=FLAGS.train_batch_size,
      num_train_steps=num_train_steps,
      learning_rate=FLAGS.learning_rate,
      num_warmup_steps=int(num_train_steps * FLAGS.warmup_proportion),
      optimizer=FLAGS.optimizer,
      decay_from_warmup_end=FLAGS.decay_from_warmup_end,
      iterations_per_loop=FLAGS.iterations_per_loop,
      save_checkpoints_steps=FLAGS.save_checkpoints_steps,
      keep_checkpoint_max=FLAGS.keep_checkpoint_max,
      jit_compile=FLAGS.use_xla if jit_compile is None else jit_compile,
      mixed_precision=FLAGS.mixed_precision)


def apply_mixed_precision() -> None:
  modeling.set_mixed_precision(FLAGS.mixed_precision)
  if FLAGS.mixed_precision:
    logging.info("Mixed precision: %s (losses in float32).", FLAGS.mixed_precision)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
  """Exits with just the message (no traceback) on errors in flags, files and data."""
  try:
    yield
  except (ValueError, FileNotFoundError, app.UsageError) as e:  # PreflightError is a ValueError
    raise SystemExit(f"error: {e}") from e
  except (tf.errors.NotFoundError, tf.errors.PermissionDeniedError, tf.errors.AlreadyExistsError,
          tf.errors.FailedPreconditionError) as e:  # tf.io.gfile on a missing or locked path
    raise SystemExit(f"error: {e.message}") from e
