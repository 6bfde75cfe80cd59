"""The shape every task shares: SQuAD, the classifier and pretraining are each a Task.

A Task is made from its config, the model files and the distribution strategy, and runs the
same steps for every task:
  prepare   checks the config against the model, the batches against the replicas, and
            converts the data (the chief writes the records; other workers wait, then reuse them);
  train     trains in segments (every epoch, every --eval_steps, or in one go), each ending in a
            checkpoint and, when there is evaluation data, an evaluation: a row of
            training_stats.csv and training_curves.png, TensorBoard scalars under OUTPUT_DIR/eval,
            with --keep_best_by the best model in OUTPUT_DIR/best/ and with
            --early_stopping_patience a stop once it no longer improves;
  run       trains (or restores the model to use), evaluates and predicts with the model the
            output_dir means (run_directory.model_checkpoint: the best, else the last), and
            writes the outputs; earlier outputs of other weights are moved aside first.
The history of a run is kept in OUTPUT_DIR/training_state.json (training/history.py) after
every segment, so an interrupted run resumes from its last checkpoint with its history, best
model and patience. Subclasses say what differs: the model, loss and data, the metrics and the
output files.
"""

import contextlib
import dataclasses
import math
import os
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import tensorflow as tf
import tf_keras
from absl import logging

from bert_tf import tokenization
from bert_tf.checkpoints import formats, model_files
from bert_tf.cli import errors as cli_errors
from bert_tf.data import length_buckets, packing, pipeline
from bert_tf.io import files as io_files, run_directory
from bert_tf.serving import export
from bert_tf.training import best_checkpoint, distribution, history, trainer

EXPORT_DIR = "export"
# The files a training run writes in output_dir that belong to its weights: what
# --overwrite_output_dir deletes (the "checkpoint" index first, so a deletion cut short never
# leaves a checkpoint that looks complete). Feature caches and other files are kept.
RUN_OUTPUTS = ("checkpoint", "ckpt-*", best_checkpoint.BEST_DIR, EXPORT_DIR,
               trainer.TRAIN_DIR, trainer.EVAL_DIR, history.STATE_FILE, history.STATS_FILE,
               history.CURVES_FILE)
# The model's own files, copied into every training output_dir, so that the directory is an
# --init_checkpoint on its own.
CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
PACKED_TRAIN_FILE = "train_packed.tf_record"


@dataclasses.dataclass(kw_only=True)
class TaskConfig:
  """What every task's run needs; names follow google-research's flags.

  `training.num_train_steps` 0 means: from num_train_epochs and the number of training records,
  with warmup_proportion of them warming up.
  """
  training: trainer.TrainConfig
  do_train: bool = False
  do_eval: bool = False
  do_predict: bool = False
  max_seq_length: int = 128
  eval_batch_size: int = 8
  predict_batch_size: int = 8
  num_train_epochs: float = 3.0
  warmup_proportion: float = 0.1
  seed: int = 12345
  eval_every_epoch: bool = True
  eval_steps: Optional[int] = None
  keep_best_by: Optional[str] = None
  early_stopping_patience: int = 0
  export_dir: Optional[str] = None  # a SavedModel that serves raw text, after training
  # Training rows hold several examples each (data/packing.py); False: one example a row,
  # padded to max_seq_length, as google-research batches them.
  pack_sequences: bool = True
  # Evaluation and prediction run each example at the shortest of this many static lengths
  # that holds it (data/length_buckets.py; identical outputs); 0: all at max_seq_length.
  length_buckets: int = length_buckets.DEFAULT_NUM_BUCKETS

  @property
  def output_dir(self) -> str:
    return self.training.output_dir


def evaluation_steps(num_train_steps: int, steps_per_epoch: float, eval_every_epoch: bool,
                     eval_steps: Optional[int]) -> List[int]:
  """The steps that end a training segment: every eval_steps, else each epoch's end, and the end."""
  if eval_steps:
    points = range(eval_steps, num_train_steps, eval_steps)
  elif eval_every_epoch:
    points = (int(k * steps_per_epoch)
              for k in range(1, math.ceil(num_train_steps / steps_per_epoch) + 1))
  else:
    points = ()
  return sorted({p for p in points if 0 < p < num_train_steps} | {num_train_steps})


def _nothing_to_restore(output_dir: str) -> ValueError:
  return ValueError(f"Nothing to evaluate or predict with: {output_dir} holds no checkpoint and "
                    "--init_checkpoint is not set. Train first (--do_train=true) or point "
                    "--init_checkpoint at a fine-tuned model.")


def checkpoint_step(checkpoint: Optional[str]) -> int:
  """The step in a checkpoint prefix ending in -STEP (0 for None)."""
  return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


class Task:
  """One task's run; subclasses fill in the methods that raise NotImplementedError."""
  # The validation metrics of training_stats.csv, in order; those --keep_best_by may name (by
  # default the same); which of them improve upwards.
  metrics: Sequence[str] = ("loss",)
  selectable_metrics: Optional[Sequence[str]] = None
  higher_is_better: Sequence[str] = ()
  # The layer a fine-tuned checkpoint has (warned about when inference starts without it).
  head: Optional[str] = None
  # Whether, without evaluation data, --keep_best_by=loss scores the training loss (KcBERT did).
  scores_training_loss = False

  def __init__(self, config: TaskConfig, files: model_files.ModelFiles,
               strategy: tf.distribute.Strategy):
    self.config = config
    self.files = files
    self.strategy = strategy
    self.chief = distribution.is_chief(strategy)
    self.state = history.TrainingState.load(config.output_dir)
    self.model_source: Optional[str] = None  # the checkpoint evaluated and predicted with
    self._checked = self._prepared = False
    # With pack_sequences, the packed training rows and the parser of their batches.
    self.packed: Optional[packing.PackedFile] = None
    self.packed_parser: Optional[pipeline.Parser] = None

  # -------------------------------------------------------------------------------------------
  # What each task defines

  def check_task(self) -> None:
    """Task-specific checks of the config and inputs, in seconds (ValueErrors name flags)."""

  def prepare_data(self) -> None:
    """Reads and converts the data this run needs (the chief writes, see `prepare`)."""
    raise NotImplementedError

  def build_model(self) -> tf_keras.Model:
    raise NotImplementedError

  def loss(self, features: trainer.Features, outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    """Per-example training losses."""
    raise NotImplementedError

  def train_dataset(self, context: tf.distribute.InputContext,
                    start_batch: int) -> tf.data.Dataset:
    raise NotImplementedError

  def num_train_records(self) -> Optional[int]:
    """The training records in one epoch (None when unknown: then no epoch column)."""
    raise NotImplementedError

  def train_files(self) -> str:
    """The file pattern of the training records (named when one turns out damaged)."""
    raise NotImplementedError


  def steps_per_epoch(self) -> Optional[float]:
    """Training steps in one epoch (every training record once); None when unknown."""
    if self.packed:
      return self.packed.num_rows / self.rows_per_step()
    records = self.num_train_records()
    return records / self.config.training.train_batch_size if records else None

  def rows_per_step(self) -> int:
    """Packed rows in one global step: about --train_batch_size examples, whole rows for every
    replica and micro-batch."""
    training = self.config.training
    return packing.rows_per_step(
        training.train_batch_size, self.packed.num_examples, self.packed.num_rows,
        self.strategy.num_replicas_in_sync * training.gradient_accumulation_steps)

  def pack_training_data(self, file_pattern: str, source_metadata: str,
                         example_keys: Sequence[str]) -> None:
    """Packs the training features into rows (data/packing.py) and trains on them
    (use_packed_rows)."""
    config = self.config
    packed = packing.prepare_packed(file_pattern, source_metadata, config.max_seq_length,
                                    example_keys, config.seed,
                                    os.path.join(config.output_dir, PACKED_TRAIN_FILE))
    self.use_packed_rows(packed, packing.packed_parser(packed, example_keys))

  def use_packed_rows(self, packed: packing.PackedFile, parser: pipeline.Parser) -> None:
    """Trains on the rows of `packed`, batches parsed by `parser`, after checking that whole
    rows per replica can make a step of about --train_batch_size examples."""
    config = self.config
    self.packed, self.packed_parser = packed, parser
    batch, rows = config.training.train_batch_size, self.rows_per_step()
    packing.check_step_examples(
        batch, rows, packed.examples_per_row,
        self.strategy.num_replicas_in_sync * config.training.gradient_accumulation_steps,
        config.max_seq_length)
    logging.info("Packed training: %d rows a step hold %.1f examples on average "
                 "(--train_batch_size=%d); %.1f steps an epoch.", rows,
                 rows * packed.examples_per_row, batch, self.steps_per_epoch())

  def packed_train_dataset(self, context: tf.distribute.InputContext,
                           start_batch: int) -> tf.data.Dataset:
    """This input pipeline's batches of packed rows, from global step `start_batch` on."""
    training = self.config.training
    return pipeline.training_dataset(
        self.packed.path, self.packed_parser,
        context.get_per_replica_batch_size(self.rows_per_step()), seed=self.config.seed,
        start_batch=start_batch, files_in_parallel=training.input_files_in_parallel,
        input_context=context, counts_cache_dir=self.config.output_dir)

  def has_eval_data(self) -> bool:
    """Whether `evaluate` can score a model (a dev set with labels or answers)."""
    return self.config.do_eval

  def evaluate(self, model: tf_keras.Model) -> Dict[str, Any]:
    """Validation metrics of `model` (every name in `metrics` among them)."""
    raise NotImplementedError

  def write_evaluation(self, metrics: Dict[str, Any], step: int) -> List[str]:
    """Writes the final evaluation (chief only); returns the names written in output_dir."""
    raise NotImplementedError

  def predict(self, model: tf_keras.Model, step: int, results: Dict[str, Any]) -> List[str]:
    """Predicts (every worker), writes the outputs (chief), adds to `results`; returns names."""
    raise NotImplementedError

  def serving_settings(self) -> export.ServingSettings:
    """What a raw-text SavedModel of this task needs besides the model (for --export_dir)."""
    raise NotImplementedError

  def finish(self, results: Dict[str, Any]) -> None:
    """After evaluation and prediction (e.g. exports)."""

  # -------------------------------------------------------------------------------------------
  # The shared steps

  def _check_config(self) -> None:
    config = self.config
    if not (config.do_train or config.do_eval or config.do_predict):
      raise ValueError("At least one of --do_train, --do_eval or --do_predict must be true.")
    positions = self.files.config.max_position_embeddings
    if config.max_seq_length > positions:
      raise ValueError(f"--max_seq_length={config.max_seq_length} exceeds the model's "
                       f"max_position_embeddings={positions} in {self.files.config_file}.")
    metric = config.keep_best_by
    selectable = self.selectable_metrics or self.metrics
    if metric and metric not in selectable:
      raise ValueError(f"--keep_best_by={metric}: expected one of {', '.join(selectable)}.")
    if metric and config.do_train and not self.has_eval_data() and not (
        self.scores_training_loss and metric == "loss"):
      raise ValueError(f"--keep_best_by picks among evaluations during training, which need "
                       f"evaluation data: {self.eval_data_hint}.")
    if config.early_stopping_patience and not metric:
      raise ValueError("--early_stopping_patience counts evaluations that do not improve the "
                       "--keep_best_by metric: set --keep_best_by.")
    if config.eval_steps is not None and config.eval_steps <= 0:
      raise ValueError(f"--eval_steps={config.eval_steps} must be positive.")
    batches = {"train_batch_size": (config.do_train, config.training.train_batch_size),
               "eval_batch_size": (config.do_eval, config.eval_batch_size),
               "predict_batch_size": (config.do_predict, config.predict_batch_size)}
    distribution.check_batches(self.strategy, {name: size for name, (wanted, size)
                                               in batches.items() if wanted})

  eval_data_hint = "add --do_eval=true"

  def check(self) -> None:
    """Every check of the config against the model, the replicas and the inputs."""
    if not self._checked:
      self._check_config()
      self.check_task()
      if not self.config.do_train and not self._has_model_to_restore():
        raise _nothing_to_restore(self.config.output_dir)
      self._checked = True

  def prepare(self) -> None:
    """The checks, then the data: a bad flag, file or line fails here, before any training."""
    if self._prepared:
      return
    self.check()
    with distribution.chief_writes_first(self.strategy):
      if self.config.do_train and self.chief:
        self._write_model_files()
      self.prepare_data()
    self._prepared = True

  def warn_if_vocab_misfits(self, texts: Iterable[str]) -> None:
    """A loud warning when the vocab turns the data's words into [UNK] or Hangul jamo (an
    uncased English vocab on Korean text), measured on the first texts."""
    tokenization.warn_if_vocab_misfits(self.files.tokenizer(), texts, self.files.vocab_file)

  def _write_model_files(self) -> None:
    """bert_config.json and vocab.txt into output_dir (lowercasing is in run_flags.json)."""
    output_dir = self.config.output_dir
    io_files.write_text_atomic(os.path.join(output_dir, CONFIG_FILE),
                               self.files.config.to_json_string())
    vocab = os.path.join(output_dir, VOCAB_FILE)
    if self.files.vocab_file and os.path.abspath(self.files.vocab_file) != os.path.abspath(vocab):
      io_files.copy_atomic(self.files.vocab_file, vocab)

  def _train_config(self) -> trainer.TrainConfig:
    training = self.config.training
    if training.num_train_steps:
      return training
    records = self.num_train_records()
    steps = int(self.steps_per_epoch() * self.config.num_train_epochs)
    if steps < 1:
      raise ValueError(f"{records} training records at train_batch_size="
                       f"{training.train_batch_size} and num_train_epochs="
                       f"{self.config.num_train_epochs} give no training step; lower "
                       "--train_batch_size or raise --num_train_epochs.")
    return dataclasses.replace(training, num_train_steps=steps,
                               num_warmup_steps=int(steps * self.config.warmup_proportion))

  def _seeded_model(self) -> tf_keras.Model:
    tf_keras.utils.set_random_seed(self.config.seed)
    return self.build_model()

  def _init_weights(self, model: tf_keras.Model) -> None:
    if self.files.init_checkpoint:
      formats.load_init_checkpoint(model, self.files.init_checkpoint)
    else:
      logging.warning("No --init_checkpoint: training from randomly initialised weights.")

  def make_trainer(self) -> trainer.Trainer:
    """The task's Trainer (resumed from output_dir's latest checkpoint when there is one)."""
    self.prepare()
    return trainer.Trainer(self.strategy, self._train_config(), self._seeded_model, self.loss,
                           self.train_dataset, self._init_weights)

  @property
  def evaluates_during_training(self) -> bool:
    """With evaluation data: every epoch, every --eval_steps, or to keep the best model."""
    config = self.config
    return self.has_eval_data() and bool(config.eval_every_epoch or config.eval_steps
                                         or config.keep_best_by)

  def _keeper(self) -> Optional[best_checkpoint.BestCheckpointKeeper]:
    metric = self.config.keep_best_by
    if not metric:
      return None
    return best_checkpoint.BestCheckpointKeeper(self.strategy, self.config.output_dir, metric,
                                                metric in self.higher_is_better,
                                                (CONFIG_FILE, VOCAB_FILE))

  def _evaluations_without_improvement(self, keeper: best_checkpoint.BestCheckpointKeeper
                                       ) -> int:
    key = f"val_{keeper.metric}"
    best_step = keeper.best["step"] if keeper.best else 0
    return sum(1 for row in self.state.history
               if row["step"] > best_step and row.get(key) is not None)

  def _stopped_early(self, keeper: Optional[best_checkpoint.BestCheckpointKeeper]) -> bool:
    patience = self.config.early_stopping_patience
    return bool(keeper and patience and self._evaluations_without_improvement(keeper) >= patience)

  def train(self) -> tf_keras.Model:
    """Trains in segments with evaluation, best-checkpoint keeping and early stopping; resumable.

    Returns the model to evaluate and predict with: the best one with --keep_best_by, else the last.
    """
    self.prepare()
    config = self.config
    run = self.make_trainer()
    train_config = run.config
    records = self.num_train_records()
    steps_per_epoch = self.steps_per_epoch()
    by_epoch = bool(config.eval_every_epoch or config.keep_best_by) and steps_per_epoch
    stops = evaluation_steps(train_config.num_train_steps, steps_per_epoch, bool(by_epoch),
                             config.eval_steps)
    # Rows after the restored checkpoint (its files were lost) would be redone, so drop them.
    self.state.history = [row for row in self.state.history if row["step"] <= run.step]
    done = {row["step"] for row in self.state.history}
    keeper = self._keeper()
    writer = (tf.summary.create_file_writer(os.path.join(config.output_dir, trainer.EVAL_DIR))
              if self.chief else tf.summary.create_noop_writer())
    logging.info("%s training records, %s steps per epoch, %d steps; segments end at steps %s.",
                 records or "?", f"{steps_per_epoch:.1f}" if steps_per_epoch else "?",
                 train_config.num_train_steps, stops)
    if run.step >= train_config.num_train_steps:
      logging.info("Already trained to step %d: nothing to train.", run.step)
    # One SIGTERM handler over all segments: one arriving during an evaluation stops the next.
    with trainer.sigterm_requests(), self._naming_damaged_records():
      for stop in stops:
        if self._stopped_early(keeper):
          logging.info("Stopped early: %s has not improved for %d evaluations; not training "
                       "further.", keeper.metric, config.early_stopping_patience)
          break
        if stop in done:
          continue
        self._train_segment(run, stop, steps_per_epoch, keeper, writer)
    if keeper:
      distribution.barrier(self.strategy)  # the chief has finished writing best.json
    chosen = run_directory.model_checkpoint(config.output_dir)
    if chosen and chosen.best:
      if not keeper:
        logging.warning("%s holds %s from a run with --keep_best_by=%s, which this run (without "
                        "the flag) does not update; like every tool reading the directory, it "
                        "evaluates and predicts with it. Pass --keep_best_by=%s to keep it "
                        "current.", config.output_dir, chosen.description,
                        chosen.best.get("metric"), chosen.best.get("metric"))
      logging.info("Restoring %s: %s.", chosen.description, chosen.prefix)
      formats.load_init_checkpoint(run.model, chosen.prefix)
    self.model_source = chosen.prefix if chosen else None
    return run.model

  @contextlib.contextmanager
  def _naming_damaged_records(self) -> Iterator[None]:
    """Turns TensorFlow's DataLossError ("truncated record at 299435", no file named) into one
    error line naming the damaged training file and the fix."""
    try:
      yield
    except tf.errors.DataLossError as e:
      problem = pipeline.damaged_file(self.packed.path if self.packed else self.train_files())
      if problem is None:
        raise
      raise cli_errors.RunFault(
          f"{problem.rstrip('.')} (TensorFlow: {e.message.splitlines()[0]}). Copy the file "
          "again, or remove it and rerun the command that made it (run_squad and run_classifier "
          "rebuild their cached features; create_pretraining_data, a shard).") from e

  def _train_segment(self, run: trainer.Trainer, stop: int, steps_per_epoch: Optional[float],
                     keeper: Optional[best_checkpoint.BestCheckpointKeeper],
                     writer: tf.summary.SummaryWriter) -> None:
    """Trains to `stop`, evaluates, offers the model to the keeper, records the row."""
    started = time.time()
    run.train(stop_at_step=stop)
    previous = self.state.history[-1] if self.state.history else {"step": 0, "loss_sum": 0.0}
    # The trainer checkpoints its running loss sum, so a segment cut by a restart still gets
    # the mean over all its steps.
    row = dict(epoch=round(stop / steps_per_epoch, 2) if steps_per_epoch else None, step=stop,
               loss_sum=run.loss_sum,
               train_loss=(run.loss_sum - previous["loss_sum"]) / (stop - previous["step"]),
               training_time=round(time.time() - started, 1) if run.mean_loss is not None
               else None)
    metrics = None
    if self.evaluates_during_training:
      started = time.time()
      try:
        metrics = self.evaluate(run.model)
      except trainer.StopRequested:
        run.stop_for_request()
      recorded = dict.fromkeys([*self.metrics, *(self.selectable_metrics or ())])
      row.update({f"val_{name}": metrics[name] for name in recorded if name in metrics})
      row["validation_time"] = round(time.time() - started, 1)
      with writer.as_default(step=stop):
        for name in self.metrics:
          if name in metrics:
            tf.summary.scalar(name, metrics[name])
      writer.flush()
      logging.info("Step %d: validation %s.", stop, ", ".join(
          f"{name} {metrics[name]:.4f}" for name in self.metrics if name in metrics))
    elif keeper and self.scores_training_loss:
      metrics = {"loss": row["train_loss"]}
    if keeper and metrics:
      keeper.offer(run.model, stop, metrics[keeper.metric])
    self.state.history.append(row)
    if self.chief:
      self.state.save(self.config.output_dir)
      self._write_history(keeper)

  def _write_history(self, keeper: Optional[best_checkpoint.BestCheckpointKeeper]) -> None:
    rows, output_dir = self.state.history, self.config.output_dir
    shown = self.metrics if self.evaluates_during_training else ()
    history.write_stats(os.path.join(output_dir, history.STATS_FILE), rows, shown)
    history.plot_curves(os.path.join(output_dir, history.CURVES_FILE), rows, shown,
                        keeper.best["step"] if keeper and keeper.best else None)

  def _restore(self, source: str, what: str) -> tf_keras.Model:
    with self.strategy.scope():
      model = self._seeded_model()
    report = formats.load_init_checkpoint(model, source)
    if self.head and self.head not in report.components:
      logging.warning("%s (%s) has no %s layer: %s uses a randomly initialised one, so its "
                      "outputs mean nothing until the model is fine-tuned.", source, what,
                      self.head, type(model).__name__)
    logging.info("Evaluating/predicting with %s (%s).", source, what)
    return model

  def restore_for_inference(self) -> tf_keras.Model:
    """The model to evaluate or predict with when this run did not train it.

    The one a run directory means (run_directory.model_checkpoint: its best model when it has
    one, else its latest checkpoint), else --init_checkpoint.
    """
    config = self.config
    chosen = run_directory.model_checkpoint(config.output_dir)
    if config.keep_best_by and not (chosen and chosen.best):
      logging.warning("--keep_best_by=%s, but %s holds no best checkpoint (was it trained with "
                      "--keep_best_by?); using the latest checkpoint.", config.keep_best_by,
                      config.output_dir)
    if chosen:
      self.model_source = chosen.prefix
      return self._restore(chosen.prefix, chosen.description)
    if self.files.init_checkpoint:
      self.model_source = self.files.init_checkpoint
      return self._restore(self.files.init_checkpoint, "--init_checkpoint")
    raise _nothing_to_restore(config.output_dir)

  def _has_model_to_restore(self) -> bool:
    """Whether `restore_for_inference` finds a model: checked before any data is converted."""
    output_dir = self.config.output_dir
    return bool(self.files.init_checkpoint or tf.train.latest_checkpoint(output_dir)
                or best_checkpoint.read_best(output_dir))

  def _model_step(self) -> int:
    """The step of the model evaluated and predicted with (0 for --init_checkpoint's)."""
    source = self.model_source
    if not source or run_directory.relative_path(self.config.output_dir, source) is None:
      return 0
    return checkpoint_step(source)

  def run(self) -> Dict[str, Any]:
    """Trains, evaluates and predicts as the config asks; returns what it measured and wrote.

    "written": the output files (names in output_dir) this run wrote or updated.
    """
    self.prepare()
    config = self.config
    results: Dict[str, Any] = dict(written=[])
    if config.do_train:
      model = self.train()
      results["history"] = self.state.history
      results["best"] = (best_checkpoint.read_best(config.output_dir) if config.keep_best_by
                         else None)
      if self.chief and self.state.history:
        results["written"] += [history.STATS_FILE, history.CURVES_FILE]
    else:
      model = self.restore_for_inference()
    step = self._model_step()
    source = run_directory.weights_source(config.output_dir, self.model_source or "")
    if self.chief and (config.do_eval or config.do_predict):
      run_directory.set_aside_outputs(config.output_dir, source)
    trained = list(results["written"])
    if config.do_eval:
      started = time.time()
      metrics = results["eval"] = self.evaluate(model)
      if self.chief:
        count = f"{metrics['num_examples']} examples " if "num_examples" in metrics else ""
        logging.info("Evaluated %sin %.1f s: %s", count, time.time() - started, ", ".join(
            f"{name} {metrics[name]:.4f}" for name in self.metrics if name in metrics))
        results["written"] += self.write_evaluation(metrics, step)
    if config.do_predict:
      results["written"] += self.predict(model, step, results)
    if self.chief:
      run_directory.record_outputs(
          config.output_dir, [n for n in results["written"] if n not in trained], source)
    if config.export_dir and self.chief:
      results["export_dir"] = export.export_run(model, self.serving_settings(), config.export_dir,
                                                overwrite=True)
    self.finish(results)
    return results
