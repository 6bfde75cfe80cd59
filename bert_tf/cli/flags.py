"""Flags shared by run_squad.py, run_classifier.py and run_pretraining.py, and what they resolve to.

Names, defaults and meanings follow google-research/bert's scripts; extras are marked as such.
A script is flags -> a task config (`config_from_flags`) -> the model files and strategy
(`start_run`) -> the task's run; everything before training runs inside `user_errors`, so a
bad flag, file or line is one `error:` line, not a traceback.
"""

from __future__ import annotations  # storage.Client in annotations: imported when staging only

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Type

from absl import app, flags, logging

import tensorflow as tf

from bert_tf import modeling
from bert_tf.checkpoints import model_files
from bert_tf.cli.errors import user_errors  # pylint: disable=unused-import (the scripts' use)
from bert_tf.data import length_buckets
from bert_tf.io import gcs, files as io_files, run_lock
from bert_tf.tasks import task
from bert_tf.training import distribution, history, trainer

if TYPE_CHECKING:
  from google.cloud import storage

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
  # google-research's default was True, which lowercases (and for Hangul, decomposes into
  # jamo) the text of every cased model whose users forget the flag: here it is inferred.
  flags.DEFINE_bool("do_lower_case", None, "Whether to lower case the input text: true for "
                    "uncased models, false for cased ones. Default: inferred from the vocab; a "
                    "value that contradicts the vocab is an error.")
  flags.DEFINE_bool("allow_smaller_vocab", False, "(bert_tf) Accept a --vocab_file with fewer "
                    "tokens than the embedding table of --init_checkpoint (otherwise refused as "
                    "probably another model's vocab).")
  flags.DEFINE_enum("mixed_precision", "auto", ["auto", "float32", "mixed_bfloat16",
                                                "mixed_float16"],
                    "(bert_tf) Compute dtype policy. auto: mixed_bfloat16 on TPUs and on GPUs of "
                    "compute capability 8.0+, mixed_float16 (with loss scaling) on older GPUs, "
                    "float32 on CPU; the log says which.")


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
  flags.DEFINE_float("max_seconds_per_loop", 20.0, "(bert_tf) A loop also ends with the first step "
                     "that starts after this many seconds of it, so progress shows at least "
                     "that often (SIGTERM and Ctrl-C stop after the current step).")
  flags.DEFINE_integer("keep_checkpoint_max", 5, "(bert_tf) Checkpoints to keep.")
  flags.DEFINE_enum("optimizer", "adamw", ["adamw", "lamb"], "(bert_tf) Optimizer.")
  flags.DEFINE_float("weight_decay_rate", 0.01, "(bert_tf) Decoupled weight decay (every "
                     "variable but LayerNorm and biases), google-research's 0.01.")
  flags.DEFINE_float("max_grad_norm", 1.0, "(bert_tf) Clip gradients to this global norm "
                     "(google-research's 1.0); 0 turns clipping off.")
  flags.DEFINE_bool("adam_bias_correction", False, "(bert_tf) With --optimizer=adamw, the "
                    "standard bias-corrected AdamW (torch's and Hugging Face's) instead of "
                    "google-research's, which has no bias correction.")
  flags.DEFINE_integer("gradient_accumulation_steps", 1, "(bert_tf) Split each step's "
                       "--train_batch_size into this many micro-batches and sum their gradients "
                       "before the update: the same training in less memory.", lower_bound=1)
  flags.register_multi_flags_validator(
      ["train_batch_size", "gradient_accumulation_steps"],
      lambda f: f["train_batch_size"] % f["gradient_accumulation_steps"] == 0,
      "--train_batch_size must be a multiple of --gradient_accumulation_steps (each step "
      "accumulates micro-batches of train_batch_size / gradient_accumulation_steps).")
  flags.DEFINE_bool("decay_from_warmup_end", False, "(bert_tf) Decay the learning rate from its "
                    "full value at the end of warmup instead of google-research's schedule, "
                    "which drops it there.")
  flags.DEFINE_bool("use_xla", False, "(bert_tf) Compile the training step with XLA "
                    "(TPUs always compile).")
  flags.DEFINE_integer("seed", 12345, "(bert_tf) Random seed for initialisation and data order.")
  flags.DEFINE_integer("input_files_in_parallel", 16, "(bert_tf) Training files read at once: "
                       "each epoch takes the files in its own shuffled order, this many at a "
                       "time, interleaved and shuffled. More mixes the shards better; a resume "
                       "reads at most this many files.", lower_bound=1)
  flags.DEFINE_bool("overwrite_output_dir", False, "(bert_tf) Train afresh in an --output_dir "
                    "that holds a run made with other flags, deleting its checkpoints. Without "
                    "it such a run is refused; a run with the same flags resumes.")
  distribution.define_flags()


def define_packing_flags() -> None:
  """--pack_sequences: several training examples to a row (run_classifier.py, run_squad.py)."""
  flags.DEFINE_bool("pack_sequences", True, "(bert_tf) Train on rows of --max_seq_length that "
                    "hold several examples each, every one with its own [CLS], positions and "
                    "attention, --train_batch_size examples a step on average: the same model "
                    "without computing padding. false: one example a row, padded, as "
                    "google-research batches them. Evaluation and prediction are unchanged.")


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
      from google.cloud import storage  # pylint: disable=import-outside-toplevel
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


# Training flags of every script that change the weights a run ends with (the data order too:
# --seed, --input_files_in_parallel). Not among them, so a rerun after a disconnect may change
# them: do_eval/do_predict, batch sizes for evaluation, checkpoint and loop frequencies
# (max_seconds_per_loop too), TPU/strategy flags, mixed_precision/use_xla,
# --gradient_accumulation_steps (the same effective batch: a machine with less memory may resume
# with more micro-batches), --stage_to.
TRAINING_FLAGS = ("init_checkpoint", "train_batch_size", "learning_rate", "optimizer",
                  "adam_bias_correction", "weight_decay_rate", "max_grad_norm",
                  "decay_from_warmup_end", "seed", "input_files_in_parallel")
# What a previous run left that --overwrite_output_dir deletes (the "checkpoint" index first, so
# a deletion cut short never leaves a checkpoint that looks complete); other files are kept.
_RUN_OUTPUTS = (*task.RUN_OUTPUTS, history.RUN_FLAGS_FILE)


def check_output_dir_flags(model: Dict[str, Any], training_flags: Sequence[str],
                           strategy: tf.distribute.Strategy, output_dir: Optional[str] = None
                           ) -> None:
  """check_output_dir with the script's flags: --output_dir, --do_train, --overwrite_output_dir."""
  check_output_dir(output_dir or FLAGS.output_dir, model,
                   {name: FLAGS[name].value for name in training_flags}, FLAGS.do_train,
                   FLAGS.overwrite_output_dir, distribution.is_chief(strategy))


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
  path = os.path.join(output_dir, history.RUN_FLAGS_FILE)
  current = {**model, **training}
  if do_train and overwrite:
    if chief:
      _delete_previous_run(output_dir)
  elif tf.io.gfile.exists(path) and not tf.train.latest_checkpoint(output_dir):
    # A run that failed before its first checkpoint (e.g. on a bad data file) left only its
    # flags: nothing would be mixed, so the new flags replace them.
    logging.info("%s belongs to a run that saved no checkpoint; recording the new flags.", path)
  elif tf.io.gfile.exists(path):
    recorded = io_files.read_json(path)
    compared = current if do_train else model
    differences = _differences({k: recorded.get(k) for k in compared}, compared)
    if differences and not do_train:  # --overwrite_output_dir applies to training runs only
      raise ValueError(
          f"--output_dir={output_dir} holds a model trained with another model's files "
          f"({path}):\n" + "\n".join(differences) + "\nEvaluate or predict with the vocab, "
          "config and lowercasing it was trained with (or leave --vocab_file and "
          f"--bert_config_file out and pass --init_checkpoint={output_dir}), or point "
          "--output_dir at the run you mean.")
    if differences:
      raise ValueError(
          f"--output_dir={output_dir} holds a run made with other flags ({path}):\n"
          + "\n".join(differences) + "\nRun with the same flags to resume it, add "
          "--overwrite_output_dir to delete its checkpoints and train afresh, or use a new "
          "--output_dir. If the same files only moved, delete run_flags.json to resume.")
    return
  if do_train and chief:
    io_files.write_json_atomic(path, current)


def resolve_model_files(**options: Any) -> model_files.ModelFiles:
  """model_files.resolve from --init_checkpoint, --vocab_file, --bert_config_file and
  --do_lower_case (inferred from the vocab when not given)."""
  given = FLAGS.do_lower_case if FLAGS["do_lower_case"].present else None
  return model_files.resolve(FLAGS.init_checkpoint, FLAGS.vocab_file, FLAGS.bert_config_file,
                             given, allow_smaller_vocab=FLAGS.allow_smaller_vocab, **options)


def strategy_config() -> distribution.StrategyConfig:
  return distribution.StrategyConfig.from_flags(FLAGS)


def train_config(num_train_steps: int = 0, jit_compile: Optional[bool] = None
                 ) -> trainer.TrainConfig:
  """A TrainConfig from the training flags, warmup as a proportion of `num_train_steps` (0: the
  task counts the steps from --num_train_epochs and its data, see tasks/task.py)."""
  return trainer.TrainConfig(
      output_dir=FLAGS.output_dir,
      train_batch_size=FLAGS.train_batch_size,
      num_train_steps=num_train_steps,
      learning_rate=FLAGS.learning_rate,
      num_warmup_steps=int(num_train_steps * FLAGS["warmup_proportion"].value),
      optimizer=FLAGS.optimizer,
      weight_decay_rate=FLAGS.weight_decay_rate,
      max_grad_norm=FLAGS.max_grad_norm,
      decay_from_warmup_end=FLAGS.decay_from_warmup_end,
      iterations_per_loop=FLAGS.iterations_per_loop,
      max_seconds_per_loop=FLAGS.max_seconds_per_loop,
      save_checkpoints_steps=FLAGS.save_checkpoints_steps,
      keep_checkpoint_max=FLAGS.keep_checkpoint_max,
      jit_compile=FLAGS.use_xla if jit_compile is None else jit_compile,
      mixed_precision=FLAGS.mixed_precision,
      gradient_accumulation_steps=FLAGS.gradient_accumulation_steps,
      adam_bias_correction=FLAGS.adam_bias_correction,
      input_files_in_parallel=FLAGS.input_files_in_parallel)


def define_evaluation_flags(eval_every_epoch: bool, metrics: Sequence[str]) -> None:
  """Evaluation during training, the best checkpoint and early stopping (bert_tf extras)."""
  flags.DEFINE_bool("eval_every_epoch", eval_every_epoch, "(bert_tf) Evaluate at the end of "
                    "every epoch (training_stats.csv, training_curves.png, TensorBoard).")
  flags.DEFINE_integer("eval_steps", None, "(bert_tf) Evaluate every this many steps instead "
                       "of every epoch.")
  flags.DEFINE_enum("keep_best_by", None, list(metrics), "(bert_tf) Keep the checkpoint with "
                    "the best value of this validation metric (in OUTPUT_DIR/best/) and "
                    "evaluate/predict with it; evaluates every epoch unless --eval_steps.")
  flags.DEFINE_integer("early_stopping_patience", 0, "(bert_tf) Stop after this many "
                       "evaluations in a row without a better --keep_best_by metric (0: never).")
  flags.DEFINE_integer("length_buckets", length_buckets.DEFAULT_NUM_BUCKETS, "(bert_tf) "
                       "Evaluation and prediction run each example at the shortest of this many "
                       "static lengths (multiples of 16) that holds it, not at max_seq_length: "
                       "the same outputs, less padding computed. 0: every example at "
                       "max_seq_length, as google-research.")


# Flags that change which checkpoint training ends with (and so the final weights): the
# evaluation points decide the best checkpoint and when patience runs out.
EVALUATION_FLAGS = ("eval_every_epoch", "eval_steps", "keep_best_by", "early_stopping_patience")


def apply_demo_flags(values: Dict[str, Any]) -> None:
  """Sets each flag in `values` that the command line did not give."""
  for name, value in values.items():
    if not FLAGS[name].present:
      FLAGS[name].value = value


def config_from_flags(config_class: Type[task.TaskConfig], **values: Any) -> task.TaskConfig:
  """A task config whose fields take the values of the flags of the same names (`values` win);
  `training` is train_config()."""
  fields = {field.name for field in dataclasses.fields(config_class)} - {"training"}
  given = {name: FLAGS[name].value for name in fields if name in FLAGS}
  return config_class(**{"training": train_config(), **given, **values})


# Numeric flags and the values that make sense, checked before any work (when a script has them).
_POSITIVE = ("train_batch_size", "eval_batch_size", "predict_batch_size", "iterations_per_loop",
             "save_checkpoints_steps", "keep_checkpoint_max", "max_seq_length", "doc_stride",
             "max_query_length", "n_best_size", "max_answer_length", "max_predictions_per_seq",
             "num_train_steps", "max_eval_steps", "gradient_accumulation_steps", "eval_steps",
             "learning_rate", "num_train_epochs", "max_seconds_per_loop")
_NOT_NEGATIVE = ("num_warmup_steps", "early_stopping_patience", "num_workers", "length_buckets",
                 "weight_decay_rate", "max_grad_norm")
_FRACTIONS = ("warmup_proportion",)


def check_flag_ranges() -> None:
  """Refuses numeric flags outside the values that make sense (a negative learning rate trains
  to nonsense and exits 0), naming the flag."""
  def given(names):
    return [(name, FLAGS[name].value) for name in names
            if name in FLAGS and FLAGS[name].value is not None]

  for name, value in given(_POSITIVE):
    if value <= 0:
      raise app.UsageError(f"--{name}={value} must be positive.")
  for name, value in given(_NOT_NEGATIVE):
    if value < 0:
      raise app.UsageError(f"--{name}={value} must be 0 or more.")
  for name, value in given(_FRACTIONS):
    if not 0 <= value <= 1:
      raise app.UsageError(f"--{name}={value} must be between 0 and 1 (e.g. 0.1 for 10%).")


def start_run(input_flags: Sequence[str], **model_options: Any
              ) -> Tuple[model_files.ModelFiles, tf.distribute.Strategy,
                         Optional[storage.Client]]:
  """What a script does before its task: preflight and staging of `input_flags` and
  --output_dir, the model files, mixed precision and the strategy.

  Returns the model files, the strategy and the storage client that staged inputs (or None).
  """
  check_flag_ranges()
  config = strategy_config()
  distribution.check_tpu_support(config)  # a TensorFlow without TPU support, in seconds
  client = check_and_stage_paths(input_flags, config)
  files = resolve_model_files(**model_options)
  strategy = distribution.resolve_strategy(config)
  apply_mixed_precision(strategy)
  return files, strategy, client


def prepare_task(run: task.Task, training_flags: Sequence[str]) -> None:
  """The task's checks (which read its inputs), the output_dir lock and guard, then its data: a
  bad flag, file or line, a run already writing there, or an output_dir of another run, fails
  before anything is written."""
  run.check()
  if run.chief:  # one run per output_dir at a time (the lock goes when the process ends)
    run_lock.RunLock(run.config.output_dir).acquire()
  check_output_dir_flags(run.files.settings(), training_flags, run.strategy,
                         run.config.output_dir)
  run.prepare()


def apply_mixed_precision(strategy: tf.distribute.Strategy) -> None:
  """Sets the dtype policy of --mixed_precision (auto: from the devices `strategy` runs on) and
  the flag to what it resolved to, for the trainer's loss scaling."""
  if FLAGS.mixed_precision == "auto":
    FLAGS.mixed_precision = distribution.auto_precision(strategy)
    logging.info("--mixed_precision=auto: %s on these %s (--mixed_precision=float32 opts out).",
                 FLAGS.mixed_precision, distribution.replica_kind(strategy))
  modeling.set_mixed_precision(FLAGS.mixed_precision)
  logging.info("Dtype policy: %s%s.", FLAGS.mixed_precision,
               "" if FLAGS.mixed_precision == "float32" else " (losses in float32)")
