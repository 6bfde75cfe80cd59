"""Fine-tuning, evaluating and predicting with BertClassifier: the work behind run_classifier.py.

Training runs in segments (one per epoch, or every --eval_steps steps), each ending in a trainer
checkpoint. After each segment the model is evaluated on the dev set (with --do_eval), a row goes
into training_stats.csv and training_curves.png, TensorBoard gets the metrics under
OUTPUT_DIR/eval, and with --keep_best_by the best model so far is kept in OUTPUT_DIR/best/.
The history, the best checkpoint and the early-stopping count are saved in classifier_state.json
after every segment, so an interrupted run resumes from its last checkpoint with its history.

Outputs, in google-research's formats where it had one: eval_results.txt (`key = value`) and
eval_results.json (with MCC, F1, per-class precision/recall and the confusion matrix),
test_results.tsv (one line of class probabilities per test example), test_metrics.json when the
test set is labeled (CoLA's out-of-domain set, NSMC), training_stats.csv, training_curves.png.
"""

import csv
import dataclasses
import io
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging
from matplotlib.figure import Figure

from bert_tf import checkpoints, io_utils, modeling, tokenization
from bert_tf.data import classifier as classifier_data
from bert_tf.tasks import classifier_metrics
from bert_tf.training import distribution
from bert_tf.data import pipeline as input_pipeline
from bert_tf.training import trainer
from bert_tf.configs import BertConfig

STATE_FILE = "classifier_state.json"
STATS_FILE = "training_stats.csv"
CURVES_FILE = "training_curves.png"
BEST_DIR = "best"


@dataclasses.dataclass
class TaskConfig:
  """What to run; names and defaults follow google-research's run_classifier flags."""
  task_name: str
  data_dir: str
  output_dir: str
  max_seq_length: int = 128
  do_train: bool = False
  do_eval: bool = False
  do_predict: bool = False
  train_batch_size: int = 32
  eval_batch_size: int = 8
  predict_batch_size: int = 8
  num_train_epochs: float = 3.0
  seed: int = 12345
  eval_every_epoch: bool = True
  eval_steps: Optional[int] = None
  keep_best_by: Optional[str] = None
  early_stopping_patience: int = 0
  xnli_language: str = "zh"
  mnli_mismatched: bool = False
  table: classifier_data.TableFormat = classifier_data.TableFormat()


def check_config(config: TaskConfig, bert_config: BertConfig) -> None:
  """google-research's checks and ours, before any expensive work; errors name the flag."""
  if not (config.do_train or config.do_eval or config.do_predict):
    raise ValueError("At least one of --do_train, --do_eval or --do_predict must be true.")
  if config.max_seq_length > bert_config.max_position_embeddings:
    raise ValueError(f"Cannot use --max_seq_length={config.max_seq_length} because the BERT "
                     "model was only trained up to sequence length "
                     f"{bert_config.max_position_embeddings} (max_position_embeddings).")
  if config.max_seq_length < 3:
    raise ValueError(f"--max_seq_length={config.max_seq_length} leaves no room for [CLS] a "
                     "[SEP] b [SEP]; use at least 3 (128 is usual).")
  if config.keep_best_by and config.keep_best_by not in classifier_metrics.SELECTABLE:
    raise ValueError(f"--keep_best_by={config.keep_best_by}: expected one of "
                     f"{', '.join(classifier_metrics.SELECTABLE)}.")
  if config.keep_best_by and config.do_train and not config.do_eval:
    raise ValueError("--keep_best_by picks among evaluations during training: add "
                     "--do_eval=true.")
  if config.early_stopping_patience and not config.keep_best_by:
    raise ValueError("--early_stopping_patience counts evaluations that do not improve the "
                     "--keep_best_by metric: set --keep_best_by (e.g. mcc or loss).")
  if config.eval_steps is not None and config.eval_steps <= 0:
    raise ValueError(f"--eval_steps={config.eval_steps} must be positive.")


# ---------------------------------------------------------------------------------------------
# Saved state


@dataclasses.dataclass
class TrainingState:
  """What a resumed run needs besides the trainer checkpoint."""
  label_list: List[str]
  history: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  best: Optional[Dict[str, Any]] = None  # metric, value, step, checkpoint
  evals_without_improvement: int = 0
  stopped_early: bool = False

  @classmethod
  def load(cls, output_dir: str) -> Optional["TrainingState"]:
    path = os.path.join(output_dir, STATE_FILE)
    if not tf.io.gfile.exists(path):
      return None
    return cls(**io_utils.read_json(path))

  def save(self, output_dir: str) -> None:
    io_utils.write_json_atomic(os.path.join(output_dir, STATE_FILE), dataclasses.asdict(self))


# ---------------------------------------------------------------------------------------------
# Model, evaluation and prediction


def classification_loss(features: Dict[str, tf.Tensor],
                        outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
  """Per-example softmax cross-entropy, as google-research's create_model computes it."""
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=features["label_ids"],
                                                        logits=outputs["logits"])


def eval_dataset(feature_file: classifier_data.FeatureFile, seq_length: int,
                 batch_size: int) -> tf.data.Dataset:
  """Every record once, in order; the last batch padded with is_real_example = 0 (TPU shapes)."""
  dataset = input_pipeline.evaluation_dataset(
      feature_file.path, classifier_data.feature_parser(seq_length), batch_size)
  return input_pipeline.pad_to_full_batches(dataset, batch_size)


def _logits(strategy: tf.distribute.Strategy, model: tf_keras.Model,
            feature_file: classifier_data.FeatureFile, seq_length: int,
            batch_size: int) -> Dict[str, np.ndarray]:
  """Logits and labels of the real examples of `feature_file`, in file order."""
  outputs = trainer.predict(strategy, model, eval_dataset(feature_file, seq_length, batch_size),
                            ["logits"], passthrough_keys=["label_ids", "is_real_example"])
  real = outputs["is_real_example"].astype(bool)
  if real.sum() != feature_file.num_examples:
    raise RuntimeError(f"{feature_file.path}: {int(real.sum())} predictions for "
                       f"{feature_file.num_examples} examples; the padding logic is broken.")
  return dict(logits=outputs["logits"][real], label_ids=outputs["label_ids"][real])


def evaluate(strategy: tf.distribute.Strategy, model: tf_keras.Model,
             feature_file: classifier_data.FeatureFile, seq_length: int, batch_size: int,
             label_list: Sequence[str]) -> Dict[str, Any]:
  """classifier_metrics.classification_metrics over every example of `feature_file`, once."""
  outputs = _logits(strategy, model, feature_file, seq_length, batch_size)
  return classifier_metrics.classification_metrics(outputs["logits"], outputs["label_ids"],
                                                   label_list)


def predict_probabilities(strategy: tf.distribute.Strategy, model: tf_keras.Model,
                          feature_file: classifier_data.FeatureFile, seq_length: int,
                          batch_size: int) -> Dict[str, np.ndarray]:
  """Class probabilities [num_examples, num_labels] (and logits, labels) in file order."""
  outputs = _logits(strategy, model, feature_file, seq_length, batch_size)
  outputs["probabilities"] = classifier_metrics.softmax(outputs["logits"])
  return outputs


def _build_model(strategy: tf.distribute.Strategy, bert_config: BertConfig,
                 num_labels: int, seed: int) -> modeling.BertClassifier:
  with strategy.scope():
    tf_keras.utils.set_random_seed(seed)
    return modeling.build_model(modeling.BertClassifier(bert_config, num_labels))


def _restore(model: tf_keras.Model, source: str, what: str) -> None:
  report = checkpoints.load_init_checkpoint(model, source)
  if "classifier" not in report.components:
    logging.warning("%s (%s) has no classifier layer: %s uses a randomly initialised one, so "
                    "its predictions mean nothing until the model is fine-tuned.", source,
                    what, type(model).__name__)


def restore_for_inference(strategy: tf.distribute.Strategy, bert_config: BertConfig,
                          num_labels: int, config: TaskConfig, state: Optional[TrainingState],
                          init_checkpoint: Optional[str]) -> tf_keras.Model:
  """The model to evaluate or predict with when this run did not train it.

  The best checkpoint with --keep_best_by (if training kept one), else the latest checkpoint
  in output_dir (google-research's choice), else --init_checkpoint.
  """
  best = state.best if state and config.keep_best_by else None
  latest = tf.train.latest_checkpoint(config.output_dir)
  if config.keep_best_by and not best:
    logging.warning("--keep_best_by=%s, but %s records no best checkpoint (was it trained with "
                    "--keep_best_by?); falling back to the latest checkpoint.",
                    config.keep_best_by, config.output_dir)
  if best:
    source, what = best["checkpoint"], f"best by {best['metric']}"
  elif latest:
    source, what = latest, "latest checkpoint"
  elif init_checkpoint:
    source, what = init_checkpoint, "--init_checkpoint"
  else:
    raise ValueError(f"Nothing to evaluate or predict with: {config.output_dir} holds no "
                     "checkpoint and --init_checkpoint is not set. Train first "
                     "(--do_train=true) or point --init_checkpoint at a fine-tuned model.")
  model = _build_model(strategy, bert_config, num_labels, config.seed)
  _restore(model, source, what)
  logging.info("Evaluating/predicting with %s (%s).", source, what)
  return model


# ---------------------------------------------------------------------------------------------
# Output files


def write_eval_results(output_dir: str, metrics: Dict[str, Any], global_step: int,
                       extra: Dict[str, Any]) -> Dict[str, str]:
  """eval_results.txt (google-research's sorted `key = value` lines) and eval_results.json."""
  scalars = dict(eval_accuracy=metrics["accuracy"], eval_loss=metrics["loss"],
                 eval_mcc=metrics["mcc"], eval_f1=metrics["f1"],
                 eval_num_examples=metrics["num_examples"], global_step=global_step,
                 loss=metrics["loss"])
  paths = dict(txt=os.path.join(output_dir, "eval_results.txt"),
               json=os.path.join(output_dir, "eval_results.json"))
  io_utils.write_text_atomic(paths["txt"], "".join(f"{key} = {scalars[key]}\n"
                                                   for key in sorted(scalars)))
  io_utils.write_json_atomic(paths["json"], dict(metrics, global_step=global_step, **extra))
  return paths


def write_test_results(path: str, probabilities: np.ndarray) -> None:
  """google-research's test_results.tsv: per example, its class probabilities tab-separated."""
  lines = ("\t".join(str(np.float32(p)) for p in row) + "\n" for row in probabilities)
  io_utils.write_text_atomic(path, "".join(lines))


def _stats_columns(metric: str) -> List[str]:
  columns = ["epoch", "step", "train_loss", "val_loss", "val_accuracy"]
  if metric != "accuracy":
    columns.append(f"val_{metric}")
  return columns + ["training_time", "validation_time"]


def write_training_stats(path: str, history: Sequence[Dict[str, Any]], metric: str) -> None:
  """One CSV row per evaluation point; times in seconds, empty cells for what was not measured."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, _stats_columns(metric), extrasaction="ignore",
                          lineterminator="\n")
  writer.writeheader()
  for row in history:
    writer.writerow({k: "" if row.get(k) is None else row[k] for k in _stats_columns(metric)})
  io_utils.write_text_atomic(path, buffer.getvalue())


def _duration(seconds: Optional[float]) -> str:
  if seconds is None:
    return "-"
  minutes, seconds = divmod(int(round(seconds)), 60)
  return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def stats_table(history: Sequence[Dict[str, Any]], metric: str) -> str:
  """training_stats as an aligned text table, times as h:mm:ss."""
  columns = _stats_columns(metric)

  def cell(row: Dict[str, Any], column: str) -> str:
    value = row.get(column)
    if column.endswith("_time"):
      return _duration(value)
    if value is None:
      return "-"
    return f"{value:.4f}" if isinstance(value, float) and column != "epoch" else f"{value:g}"

  cells = [columns] + [[cell(row, c) for c in columns] for row in history]
  widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
  return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells)


def plot_training_curves(path: str, history: Sequence[Dict[str, Any]], metric: str,
                         best_step: Optional[int] = None) -> None:
  """training_curves.png: train/validation loss and the validation metrics by epoch."""
  figure = Figure(figsize=(10, 4), dpi=100)
  loss_axes, metric_axes = figure.subplots(1, 2)
  epochs = [row["epoch"] for row in history]

  def series(axes, key, label, marker):
    points = [(e, row[key]) for e, row in zip(epochs, history) if row.get(key) is not None]
    if points:
      axes.plot(*zip(*points), marker=marker, label=label)

  series(loss_axes, "train_loss", "training", "o")
  series(loss_axes, "val_loss", "validation", "s")
  series(metric_axes, "val_accuracy", "validation accuracy", "o")
  if metric != "accuracy":
    series(metric_axes, f"val_{metric}", f"validation {metric}", "s")
  for axes, title in ((loss_axes, "Loss"), (metric_axes, "Validation metrics")):
    if best_step is not None:
      best_epoch = next(row["epoch"] for row in history if row["step"] == best_step)
      axes.axvline(best_epoch, color="grey", linestyle=":", label="best checkpoint")
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.grid(alpha=0.3)
    if axes.has_data():
      axes.legend()
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png")
  with io_utils.atomic_output(path) as temporary:
    with tf.io.gfile.GFile(temporary, "wb") as f:
      f.write(buffer.getvalue())


def _write_summaries(writer: tf.summary.SummaryWriter, metrics: Dict[str, Any],
                     step: int) -> None:
  with writer.as_default(step=step):
    for key in ("loss", "accuracy", "mcc", "f1"):
      tf.summary.scalar(key, metrics[key])
  writer.flush()


# ---------------------------------------------------------------------------------------------
# Training


def evaluation_steps(num_train_steps: int, steps_per_epoch: float, eval_every_epoch: bool,
                     eval_steps: Optional[int]) -> List[int]:
  """The steps that end a training segment: every eval_steps, else each epoch's end, and the end."""
  if eval_steps:
    points = range(eval_steps, num_train_steps, eval_steps)
  elif eval_every_epoch:
    points = (int(k * steps_per_epoch) for k in range(1, math.ceil(num_train_steps /
                                                                   steps_per_epoch) + 1))
  else:
    points = ()
  return sorted({p for p in points if 0 < p < num_train_steps} | {num_train_steps})


def _seconds(start: float) -> float:
  return round(time.time() - start, 1)


def train(strategy: tf.distribute.Strategy, bert_config: BertConfig, config: TaskConfig,
          train_file: classifier_data.FeatureFile, eval_file: Optional[
              classifier_data.FeatureFile], state: TrainingState,
          make_train_config: Callable[[int], trainer.TrainConfig],
          init_checkpoint: Optional[str], task_metric: str) -> tf_keras.Model:
  """Trains in segments with evaluation, best-checkpoint keeping and early stopping; resumable.

  Returns the model to evaluate and predict with: the best one with --keep_best_by, else the last.
  """
  steps_per_epoch = train_file.num_examples / config.train_batch_size
  num_train_steps = int(steps_per_epoch * config.num_train_epochs)
  if num_train_steps < 1:
    raise ValueError(f"{train_file.num_examples} training examples at train_batch_size="
                     f"{config.train_batch_size} and num_train_epochs={config.num_train_epochs} "
                     "give no training step; lower --train_batch_size or raise "
                     "--num_train_epochs.")
  train_config = make_train_config(num_train_steps)
  if train_config.train_batch_size != config.train_batch_size:
    raise ValueError(f"The TrainConfig's train_batch_size={train_config.train_batch_size} "
                     f"differs from the TaskConfig's {config.train_batch_size}.")
  seq_length = config.max_seq_length
  label_list = state.label_list

  def model_fn() -> tf_keras.Model:
    tf_keras.utils.set_random_seed(config.seed)
    return modeling.build_model(modeling.BertClassifier(bert_config, len(label_list)))

  def dataset_fn(context: tf.distribute.InputContext, start_batch: int) -> tf.data.Dataset:
    # Whole epochs are skipped by arithmetic on resume when one pipeline reads every record.
    share = train_file.num_examples if context.num_input_pipelines == 1 else None
    return input_pipeline.training_dataset(
        train_file.path, classifier_data.feature_parser(seq_length),
        context.get_per_replica_batch_size(config.train_batch_size), seed=config.seed,
        start_batch=start_batch, records_per_epoch=share, input_context=context)

  def init_fn(model: tf_keras.Model) -> None:
    if init_checkpoint:
      checkpoints.load_init_checkpoint(model, init_checkpoint)
    else:
      logging.warning("No --init_checkpoint: training from randomly initialised weights.")

  run = trainer.Trainer(strategy, train_config, model_fn, classification_loss, dataset_fn,
                        init_fn)
  # Rows after the restored checkpoint (its files were lost) would be rewritten, so drop them.
  state.history = [row for row in state.history if row["step"] <= run.step]
  done = {row["step"] for row in state.history}
  chief = trainer.is_chief(strategy)
  writer = (tf.summary.create_file_writer(os.path.join(config.output_dir, "eval"))
            if chief else tf.summary.create_noop_writer())
  logging.info("%d examples, %.1f steps per epoch, %d steps; segments end at steps %s.",
               train_file.num_examples, steps_per_epoch, num_train_steps,
               evaluation_steps(num_train_steps, steps_per_epoch, config.eval_every_epoch,
                                config.eval_steps))
  # One SIGTERM handler over all segments: one arriving during an evaluation stops the next.
  with trainer.sigterm_requests():
    for stop in evaluation_steps(num_train_steps, steps_per_epoch, config.eval_every_epoch,
                                 config.eval_steps):
      if state.stopped_early:
        logging.info("Stopped early at step %d (see %s); not training further.",
                     state.history[-1]["step"], STATE_FILE)
        break
      if stop in done:
        continue
      started = time.time()
      run.train(stop_at_step=stop)
      row = dict(epoch=round(stop / steps_per_epoch, 2), step=stop, train_loss=run.mean_loss,
                 training_time=_seconds(started) if run.mean_loss is not None else None)
      if eval_file is not None:
        started = time.time()
        metrics = evaluate(strategy, run.model, eval_file, seq_length, config.eval_batch_size,
                           label_list)
        row.update(val_loss=metrics["loss"], val_accuracy=metrics["accuracy"],
                   validation_time=_seconds(started))
        row[f"val_{task_metric}"] = metrics[task_metric]
        _write_summaries(writer, metrics, stop)
        logging.info("Step %d (epoch %.2f): validation loss %.4f, accuracy %.4f, %s %.4f.", stop,
                     row["epoch"], metrics["loss"], metrics["accuracy"], task_metric,
                     metrics[task_metric])
        if config.keep_best_by:
          _keep_best(strategy, run.model, config, state, metrics, stop)
      state.history.append(row)
      if chief:
        state.save(config.output_dir)
        write_training_stats(os.path.join(config.output_dir, STATS_FILE), state.history,
                             task_metric)
        plot_training_curves(os.path.join(config.output_dir, CURVES_FILE), state.history,
                             task_metric, state.best["step"] if state.best else None)
  if config.keep_best_by and state.best:
    logging.info("Best %s %.4f at step %d: restoring %s.", state.best["metric"],
                 state.best["value"], state.best["step"], state.best["checkpoint"])
    distribution.barrier(strategy)  # the chief has finished writing it
    _restore(run.model, state.best["checkpoint"], "best")
  return run.model


def _keep_best(strategy: tf.distribute.Strategy, model: tf_keras.Model, config: TaskConfig,
               state: TrainingState, metrics: Dict[str, Any], step: int) -> None:
  """Saves the model as the new best if it improves the metric, else counts towards patience.

  A new best is written under a new prefix before the state names it, so a crash at any point
  leaves the state naming a complete checkpoint; older bests are then deleted.
  """
  metric = config.keep_best_by
  value = metrics[metric]
  if classifier_metrics.is_better(metric, value, state.best["value"] if state.best else None):
    prefix = os.path.join(config.output_dir, BEST_DIR, f"ckpt-{step}")
    trainer.write_checkpoint(strategy, tf.train.Checkpoint(model=model), prefix)
    previous = state.best["checkpoint"] if state.best else None
    state.best = dict(metric=metric, value=value, step=step, checkpoint=prefix)
    state.evals_without_improvement = 0
    chief = trainer.is_chief(strategy)
    if chief:
      state.save(config.output_dir)
    if chief and previous and previous != prefix:
      for path in tf.io.gfile.glob(previous + ".*"):
        tf.io.gfile.remove(path)
    logging.info("New best %s: %.4f at step %d, saved to %s.", metric, value, step, prefix)
    return
  state.evals_without_improvement += 1
  patience = config.early_stopping_patience
  logging.info("%s %.4f does not improve on %.4f (step %d): %d evaluation(s) without "
               "improvement%s.", metric, value, state.best["value"], state.best["step"],
               state.evals_without_improvement, f" of {patience} allowed" if patience else "")
  if patience and state.evals_without_improvement >= patience:
    state.stopped_early = True
    logging.info("Early stopping: %s has not improved for %d evaluations.", metric, patience)


# ---------------------------------------------------------------------------------------------
# The whole run


def _check_batches(config: TaskConfig, strategy: tf.distribute.Strategy) -> None:
  kind = distribution.replica_kind(strategy)
  for wanted, name in ((config.do_train, "train_batch_size"), (config.do_eval, "eval_batch_size"),
                       (config.do_predict, "predict_batch_size")):
    if wanted:
      distribution.check_global_batch(getattr(config, name), strategy.num_replicas_in_sync,
                                      name, kind)


def run(config: TaskConfig, bert_config: BertConfig, tokenizer: tokenization.FullTokenizer,
        init_checkpoint: Optional[str], strategy: tf.distribute.Strategy,
        make_train_config: Callable[[int], trainer.TrainConfig]) -> Dict[str, Any]:
  """Trains, evaluates and predicts as the config asks; returns what it measured and wrote.

  `make_train_config(num_train_steps)` gives the optimizer and checkpoint settings once the
  number of steps is known (script_flags.train_config in run_classifier.py). All inputs are read
  and converted before training, so a bad dev or test file fails in seconds, not after hours.
  """
  check_config(config, bert_config)
  _check_batches(config, strategy)
  state = TrainingState.load(config.output_dir)
  table = config.table
  if state and not table.label_list:
    table = dataclasses.replace(table, label_list=state.label_list)
  processor = classifier_data.get_processor(config.task_name, config.xnli_language,
                                            config.mnli_mismatched, table)
  splits = [split for split, wanted in (("train", config.do_train), ("dev", config.do_eval),
                                        ("test", config.do_predict)) if wanted]
  examples = {split: processor.examples(config.data_dir, split) for split in splits}
  label_list = processor.get_labels()
  if state and state.label_list != label_list:
    raise ValueError(f"{config.output_dir} holds a model trained with the labels "
                     f"{state.label_list}, but this run has {label_list}: use another "
                     "--output_dir (or the same --task_name and --label_list).")
  state = state or TrainingState(label_list=label_list)
  record_names = dict(train="train.tf_record", dev="eval.tf_record", test="predict.tf_record")
  # With several workers, all of them compute and only the chief writes: here the feature files,
  # which the others then find ready (the barriers pair up: one before, one after).
  chief = trainer.is_chief(strategy)
  if not chief:
    distribution.barrier(strategy)
  files = {split: classifier_data.prepare_features(
      examples[split], label_list, config.max_seq_length, tokenizer,
      os.path.join(config.output_dir, record_names[split])) for split in splits}
  if chief:
    distribution.barrier(strategy)
  task_metric = processor.metric
  # "written": the output files (names in output_dir) that this run wrote or updated.
  results: Dict[str, Any] = dict(label_list=label_list, task_metric=task_metric, written=[])

  if config.do_train:
    if chief and not tf.io.gfile.exists(os.path.join(config.output_dir, STATE_FILE)):
      state.save(config.output_dir)  # the labels, for later eval/predict-only runs
    model = train(strategy, bert_config, config, files["train"], files.get("dev"), state,
                  make_train_config, init_checkpoint, task_metric)
    results["history"] = state.history
    results["best"] = state.best
    if chief:
      results["written"] += [STATS_FILE, CURVES_FILE]
  else:
    model = restore_for_inference(strategy, bert_config, len(label_list), config, state,
                                  init_checkpoint)
  if config.keep_best_by and state.best:
    global_step = state.best["step"]
  else:
    global_step = _checkpoint_step(config.output_dir)

  if config.do_eval:
    started = time.time()
    metrics = evaluate(strategy, model, files["dev"], config.max_seq_length,
                       config.eval_batch_size, label_list)
    results["eval"] = metrics
    if chief:
      paths = write_eval_results(config.output_dir, metrics, global_step, dict(
          task_name=config.task_name, task_metric=task_metric, label_list=label_list,
          eval_file=processor.find_file(config.data_dir, "dev")))
      logging.info("Evaluated %d examples in %.1f s: %s", metrics["num_examples"],
                   time.time() - started, paths["txt"])
      results["written"] += [os.path.basename(path) for path in paths.values()]
  if config.do_predict:
    outputs = predict_probabilities(strategy, model, files["test"], config.max_seq_length,
                                    config.predict_batch_size)
    path = os.path.join(config.output_dir, "test_results.tsv")
    if chief:
      write_test_results(path, outputs["probabilities"])
      logging.info("Wrote the class probabilities of %d test examples to %s.",
                   len(examples["test"]), path)
      results["test_results"] = path
      results["written"].append(os.path.basename(path))
    if all(example.label is not None for example in examples["test"]):
      metrics = classifier_metrics.classification_metrics(outputs["logits"],
                                                          outputs["label_ids"], label_list)
      results["test"] = metrics
      if chief:
        io_utils.write_json_atomic(os.path.join(config.output_dir, "test_metrics.json"),
                                   dict(metrics, global_step=global_step))
        results["written"].append("test_metrics.json")
  return results


def _checkpoint_step(output_dir: str) -> int:
  """The step of the latest trainer checkpoint in output_dir (0 when there is none)."""
  latest = tf.train.latest_checkpoint(output_dir)
  return int(latest.rsplit("-", 1)[1]) if latest else 0
