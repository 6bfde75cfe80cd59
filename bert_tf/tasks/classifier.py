"""Sentence and sentence-pair classification with BertClassifier: the task behind run_classifier.py.

Outputs, in google-research's formats where it had one: eval_results.txt (`key = value`) and
eval_results.json (with MCC, F1, per-class precision/recall and the confusion matrix),
test_results.tsv (one line of class probabilities per test example), test_metrics.json when the
test set is labeled (CoLA's out-of-domain set, NSMC), and the shared training_stats.csv and
training_curves.png (see tasks/task.py). The label list is kept in training_state.json, so a
later evaluation- or prediction-only run of a tsv/csv task knows it.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from bert_tf import modeling
from bert_tf.cli.errors import summary
from bert_tf.data import classifier as classifier_data
from bert_tf.data import length_buckets, pipeline
from bert_tf.io import files as io_files
from bert_tf.serving import export
from bert_tf.tasks import classifier_metrics, task
from bert_tf.training import trainer

RECORD_FILES = dict(train="train.tf_record", dev="eval.tf_record", test="predict.tf_record")


@dataclasses.dataclass(kw_only=True)
class ClassifierConfig(task.TaskConfig):
  """The classifier's own settings; names and defaults follow google-research's flags."""
  task_name: str
  data_dir: str
  xnli_language: str = "zh"
  mnli_mismatched: bool = False
  table: classifier_data.TableFormat = classifier_data.TableFormat()
  test_results_with_labels: bool = False  # a header row and the predicted label's name


def classification_loss(features: Dict[str, tf.Tensor],
                        outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
  """Per-example softmax cross-entropy, as google-research's create_model computes it (packed
  rows: per example slot, [rows, E])."""
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=features["label_ids"],
                                                        logits=outputs["logits"])


def eval_dataset(feature_file: classifier_data.FeatureFile, seq_length: int,
                 batch_size: int) -> tf.data.Dataset:
  """Every record once, in order; the last batch padded with is_real_example = 0 (TPU shapes)."""
  dataset = pipeline.evaluation_dataset(
      feature_file.path, classifier_data.feature_parser(seq_length), batch_size)
  return pipeline.pad_to_full_batches(dataset, batch_size)


def _logits(strategy: tf.distribute.Strategy, model: tf_keras.Model,
            feature_file: classifier_data.FeatureFile, seq_length: int,
            batch_size: int, num_buckets: int = 0) -> Dict[str, np.ndarray]:
  """Logits and labels of the real examples of `feature_file`, in file order; with
  `num_buckets`, each example computed at its length bucket's (identical logits, less work)."""
  if num_buckets:
    outputs = length_buckets.predict(
        strategy, model, feature_file.path, classifier_data.feature_parser(seq_length),
        seq_length, batch_size, ["logits"], passthrough_keys=["label_ids"],
        num_buckets=num_buckets)
  else:
    outputs = trainer.predict(strategy, model, eval_dataset(feature_file, seq_length, batch_size),
                              ["logits"], passthrough_keys=["label_ids", "is_real_example"])
    real = outputs["is_real_example"].astype(bool)
    outputs = dict(logits=outputs["logits"][real], label_ids=outputs["label_ids"][real])
  if len(outputs["logits"]) != feature_file.num_examples:
    raise RuntimeError(f"{feature_file.path}: {len(outputs['logits'])} predictions for "
                       f"{feature_file.num_examples} examples; the padding logic is broken.")
  return outputs


def weights_fingerprint(model: tf_keras.Model) -> Tuple[float, ...]:
  """The sum of each weight of `model`, in one transfer: equal for the same weights, different
  once training or a restored checkpoint changes any."""
  return tuple(tf.stack([tf.reduce_sum(tf.cast(w, tf.float64)) for w in model.weights]).numpy())


def predict_probabilities(strategy: tf.distribute.Strategy, model: tf_keras.Model,
                          feature_file: classifier_data.FeatureFile, seq_length: int,
                          batch_size: int, num_buckets: int = 0) -> Dict[str, np.ndarray]:
  """Class probabilities [num_examples, num_labels] (and logits, labels) in file order."""
  outputs = _logits(strategy, model, feature_file, seq_length, batch_size, num_buckets)
  outputs["probabilities"] = classifier_metrics.softmax(outputs["logits"])
  return outputs


def write_test_results(path: str, probabilities: np.ndarray,
                       label_list: Optional[Sequence[str]] = None) -> None:
  """google-research's test_results.tsv: per example, its class probabilities tab-separated.

  With `label_list`, a header row (the labels, then "prediction") and, per row, the predicted
  label's name after the probabilities.
  """
  rows = [[str(np.float32(p)) for p in row] for row in probabilities]
  if label_list is not None:
    rows = [[*label_list, "prediction"]] + [
        row + [label_list[int(np.argmax(p))]] for row, p in zip(rows, probabilities)]
  io_files.write_text_atomic(path, "".join("\t".join(row) + "\n" for row in rows))


class ClassifierTask(task.Task):
  """Fine-tunes, evaluates and predicts a sentence (pair) classifier."""
  head = "classifier"
  selectable_metrics = classifier_metrics.SELECTABLE
  higher_is_better = classifier_metrics.HIGHER_IS_BETTER

  def __init__(self, config: ClassifierConfig, *args: Any):
    super().__init__(config, *args)
    table = config.table
    recorded = self.state.extras.get("label_list")
    if recorded and not table.label_list:
      table = dataclasses.replace(table, label_list=recorded)
    self.processor = classifier_data.get_processor(config.task_name, config.xnli_language,
                                                   config.mnli_mismatched, table)
    # The validation metrics shown: the loss, accuracy and the task's own (MCC for CoLA).
    self.metrics = tuple(dict.fromkeys(["loss", "accuracy", self.processor.metric]))
    self.files_by_split: Dict[str, classifier_data.FeatureFile] = {}
    self.examples: Dict[str, List[classifier_data.InputExample]] = {}
    self.label_list: List[str] = []
    # (feature file, weights_fingerprint) -> its logits and labels (see _outputs).
    self._scored: Dict[Tuple[str, Tuple[float, ...]], Dict[str, np.ndarray]] = {}

  def check_task(self) -> None:
    if self.config.max_seq_length < 3:
      raise ValueError(f"--max_seq_length={self.config.max_seq_length} leaves no room for "
                       "[CLS] a [SEP] b [SEP]; use at least 3 (128 is usual).")

  def prepare_data(self) -> None:
    config = self.config
    splits = [split for split, wanted in (("train", config.do_train), ("dev", config.do_eval),
                                          ("test", config.do_predict)) if wanted]
    self.examples = {split: self.processor.examples(config.data_dir, split) for split in splits}
    self.warn_if_vocab_misfits(text for examples in self.examples.values()
                               for example in examples[:500]
                               for text in (example.text_a, example.text_b) if text)
    self.label_list = self.processor.get_labels()
    recorded = self.state.extras.get("label_list")
    if recorded and recorded != self.label_list:
      raise ValueError(f"{config.output_dir} holds a model trained with the labels "
                       f"{summary(recorded)}, but this run has {summary(self.label_list)}: use "
                       "another --output_dir (or the same --task_name and --label_list).")
    tokenizer = self.files.tokenizer()
    sources = {split: self.processor.find_file(config.data_dir, split) for split in splits}
    self.files_by_split = {}
    for split in splits:
      same = next((done for done in self.files_by_split if sources[done] == sources[split]), None)
      if same:  # NSMC validates on its test file: converted (and scored, see _outputs) once
        logging.info("The %s and %s sets are one file, %s: converted once.", same, split,
                     sources[split])
        self.files_by_split[split] = self.files_by_split[same]
        continue
      self.files_by_split[split] = classifier_data.prepare_features(
          self.examples[split], self.label_list, config.max_seq_length, tokenizer,
          os.path.join(config.output_dir, RECORD_FILES[split]))
    if config.do_train and config.pack_sequences:
      train_file = self.files_by_split["train"].path
      self.pack_training_data(train_file, train_file + ".json", ("label_ids",))
    if config.do_train and self.chief and not recorded:
      self.state.extras["label_list"] = self.label_list  # for later eval/predict-only runs
      self.state.save(config.output_dir)

  def build_model(self) -> tf_keras.Model:
    return modeling.build_model(modeling.BertClassifier(self.files.config, len(self.label_list)))

  def loss(self, features: trainer.Features, outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    return classification_loss(features, outputs)

  def num_train_records(self) -> int:
    return self.files_by_split["train"].num_examples

  def train_files(self) -> str:
    return self.files_by_split["train"].path

  def train_dataset(self, context: tf.distribute.InputContext,
                    start_batch: int) -> tf.data.Dataset:
    if self.packed:
      return self.packed_train_dataset(context, start_batch)
    batch = self.config.training.train_batch_size
    return pipeline.training_dataset(
        self.files_by_split["train"].path, classifier_data.feature_parser(
            self.config.max_seq_length), context.get_per_replica_batch_size(batch),
        seed=self.config.seed, start_batch=start_batch,
        files_in_parallel=self.config.training.input_files_in_parallel, input_context=context,
        counts_cache_dir=self.config.output_dir)

  def _outputs(self, model: tf_keras.Model, split: str, batch_size: int) -> Dict[str, np.ndarray]:
    """predict_probabilities of `split`, once per feature file and weights: NSMC's dev and
    test sets are one file, which the last evaluation during training, --do_eval and
    --do_predict would otherwise each score with the same model."""
    feature_file = self.files_by_split[split]
    key = (feature_file.path, weights_fingerprint(model))
    if key in self._scored:
      logging.info("%s was scored with these weights already: reusing its outputs.",
                   feature_file.path)
    else:
      self._scored[key] = predict_probabilities(self.strategy, model, feature_file,
                                                self.config.max_seq_length, batch_size,
                                                self.config.length_buckets)
    return self._scored[key]

  def evaluate(self, model: tf_keras.Model) -> Dict[str, Any]:
    outputs = self._outputs(model, "dev", self.config.eval_batch_size)
    return classifier_metrics.classification_metrics(outputs["logits"], outputs["label_ids"],
                                                     self.label_list)

  def write_evaluation(self, metrics: Dict[str, Any], step: int) -> List[str]:
    """eval_results.txt (google-research's sorted `key = value` lines) and eval_results.json."""
    output_dir = self.config.output_dir
    io_files.write_key_values(os.path.join(output_dir, "eval_results.txt"), dict(
        eval_accuracy=metrics["accuracy"], eval_loss=metrics["loss"], eval_mcc=metrics["mcc"],
        eval_f1=metrics["f1"], eval_num_examples=metrics["num_examples"], global_step=step,
        loss=metrics["loss"]))
    io_files.write_json_atomic(os.path.join(output_dir, "eval_results.json"), dict(
        metrics, global_step=step, task_name=self.config.task_name,
        task_metric=self.processor.metric, label_list=self.label_list,
        eval_file=self.processor.find_file(self.config.data_dir, "dev")))
    return ["eval_results.txt", "eval_results.json"]

  def predict(self, model: tf_keras.Model, step: int, results: Dict[str, Any]) -> List[str]:
    outputs = self._outputs(model, "test", self.config.predict_batch_size)
    labeled = all(example.label is not None for example in self.examples["test"])
    if labeled:
      results["test"] = classifier_metrics.classification_metrics(
          outputs["logits"], outputs["label_ids"], self.label_list)
    if not self.chief:
      return []
    path = os.path.join(self.config.output_dir, "test_results.tsv")
    write_test_results(path, outputs["probabilities"],
                       self.label_list if self.config.test_results_with_labels else None)
    logging.info("Wrote the class probabilities of %d test examples to %s.",
                 len(self.examples["test"]), path)
    results["test_results"] = path
    if not labeled:
      return ["test_results.tsv"]
    io_files.write_json_atomic(os.path.join(self.config.output_dir, "test_metrics.json"),
                               dict(results["test"], global_step=step))
    return ["test_results.tsv", "test_metrics.json"]

  def serving_settings(self) -> export.ServingSettings:
    config = self.config
    pair = config.task_name in export.PAIR_TASKS or config.table.text_b_column is not None
    return export.ServingSettings("classifier", self.files.vocab_file, self.files.do_lower_case,
                                  config.max_seq_length, label_names=self.label_list, pair=pair)

  def finish(self, results: Dict[str, Any]) -> None:
    files = {split: self.processor.find_file(self.config.data_dir, split)
             for split in self.examples}
    results.update(label_list=self.label_list, task_metric=self.processor.metric, files=files)
