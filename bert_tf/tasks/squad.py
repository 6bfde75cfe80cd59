"""SQuAD 1.1 / 2.0 and KorQuAD 1.0 with BertSpanLabeler: the task behind run_squad.py.

Data preparation and answer post-processing live in data/squad_examples.py, squad_features.py,
squad_records.py and squad_predictions.py; this task trains on the cached feature files, runs the
model over the evaluation features and scores or writes the answers. With --eval_every_epoch (or
--eval_steps, or --keep_best_by) and a predict file with answers, the model is scored with the
dataset's own metric (SQuAD 1.1, SQuAD 2.0 or KorQuAD 1.0, as bert_tf.evaluate chooses it) after
every training segment, like the classifier.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
import tf_keras
from absl import logging

from bert_tf import evaluate, modeling, packed_modeling
from bert_tf.data import length_buckets, packing, pipeline
from bert_tf.data import squad_examples, squad_predictions, squad_records
from bert_tf.io import files as io_files
from bert_tf.serving import export
from bert_tf.tasks import task
from bert_tf.training import trainer

OUTPUT_NAMES = ("predictions", "nbest_predictions", "null_odds")
EVAL_RESULTS_FILE = "eval_results.json"


@dataclasses.dataclass(kw_only=True)
class SquadConfig(task.TaskConfig):
  """SQuAD's own settings; names and defaults follow google-research's run_squad flags."""
  train_file: Optional[str] = None
  predict_file: Optional[str] = None
  max_seq_length: int = 384
  doc_stride: int = 128
  max_query_length: int = 64
  version_2_with_negative: bool = False
  n_best_size: int = 20
  max_answer_length: int = 30
  null_score_diff_threshold: float = 0.0
  num_workers: int = 0
  eval_every_epoch: bool = False  # google-research predicts once, after training


def span_loss(features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
  """google-research's loss: mean of the start and end cross-entropies, per example.

  Packed rows: per example slot [rows, E], each softmax over its window's own positions
  (google-research's also covers the window's padding, whose logits are not masked).
  """
  def cross_entropy(logits, positions):
    if packing.is_packed(features):
      starts = features[packing.EXAMPLE_STARTS]
      logits = packed_modeling.per_example_logits(logits, features[packing.EXAMPLE_IDS],
                                                  starts.shape[1])
      positions = positions + starts
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positions, logits=logits)
  return 0.5 * (cross_entropy(outputs["start_logits"], features["start_positions"]) +
                cross_entropy(outputs["end_logits"], features["end_positions"]))


def predict(strategy: tf.distribute.Strategy, model: modeling.BertSpanLabeler,
            metadata: Dict[str, Any], predict_batch_size: int,
            num_buckets: int = 0) -> List[squad_predictions.RawResult]:
  """Start/end logits for every evaluation feature, as google-research's RawResults.

  With `num_buckets`, each window runs at its length bucket's length (data/length_buckets.py)
  and its logits cover its own tokens only, so the n-best never looks at padding positions:
  the same answers as the padded path's whenever no padding position ranks among a window's
  n_best_size best logits (google-research counts those in the n-best, then skips them).
  """
  seq_length = metadata["max_seq_length"]
  if num_buckets:
    logits = ["start_logits", "end_logits"]
    outputs = length_buckets.predict(
        strategy, model, metadata["file_pattern"],
        squad_records.feature_parser(seq_length, False), seq_length, predict_batch_size, logits,
        passthrough_keys=["unique_ids"], num_buckets=num_buckets, per_position_keys=logits)
    return [squad_predictions.RawResult(int(unique_id), start, end) for unique_id, start, end in
            zip(outputs["unique_ids"], outputs["start_logits"], outputs["end_logits"])]
  dataset = squad_records.make_dataset(metadata["file_pattern"], seq_length,
                                       is_training=False, batch_size=predict_batch_size,
                                       drop_remainder=False)
  # Full batches keep shapes static (TPUs need it); the padding has unique_id 0 and is dropped.
  dataset = pipeline.pad_to_full_batches(dataset, predict_batch_size)
  outputs = trainer.predict(strategy, model, dataset, ["start_logits", "end_logits"],
                            passthrough_keys=["unique_ids"])
  return [squad_predictions.RawResult(int(unique_id), start, end)
          for unique_id, start, end in zip(outputs["unique_ids"], outputs["start_logits"],
                                           outputs["end_logits"]) if unique_id]


def output_files(output_dir: str) -> Dict[str, str]:
  """google-research's prediction file names inside output_dir."""
  return {name: os.path.join(output_dir, f"{name}.json") for name in OUTPUT_NAMES}


def _has_answers(dataset: Dict[str, Any]) -> bool:
  return any(qa.get("answers") for article in dataset["data"]
             for paragraph in article["paragraphs"] for qa in paragraph["qas"])


class SquadTask(task.Task):
  """Fine-tunes a span labeler and predicts (and, with answers, scores) the predict file."""
  head = "span_logits"
  metrics = ("exact_match", "f1")
  higher_is_better = ("exact_match", "f1")
  eval_data_hint = "add --do_predict=True with a --predict_file whose questions have answers"

  def __init__(self, config: SquadConfig, *args: Any):
    super().__init__(config, *args)
    self.train_meta: Optional[Dict[str, Any]] = None
    self.eval_meta: Optional[Dict[str, Any]] = None
    self._dataset: Optional[Dict[str, Any]] = None
    self._eval_data = None

  def check_task(self) -> None:
    """google-research's length check, then both files read (seconds): a malformed train or
    predict file fails before anything is written or converted."""
    config = self.config
    if config.max_seq_length <= config.max_query_length + 3:
      raise ValueError(f"The max_seq_length ({config.max_seq_length}) must be greater than "
                       f"max_query_length ({config.max_query_length}) + 3")
    examples = []
    if config.do_train:
      examples = squad_examples.read_squad_examples(config.train_file, True,
                                                    config.version_2_with_negative)
    if config.do_predict:
      self._dataset = self._read_predict_file()
    if examples:
      self.warn_if_vocab_misfits(text for example in examples[:200] for text in (
          example.question_text, " ".join(example.doc_tokens[:100])))

  def _read_predict_file(self) -> Dict[str, Any]:
    """The predict file's JSON, checked as SQuAD (a clear error naming the place if not)."""
    squad_examples.read_squad_examples(self.config.predict_file, False,
                                       self.config.version_2_with_negative)
    return io_files.read_json(self.config.predict_file)

  @property
  def predict_dataset(self) -> Dict[str, Any]:
    """The predict file's JSON (read once)."""
    if self._dataset is None:
      self._dataset = self._read_predict_file()
    return self._dataset

  def has_eval_data(self) -> bool:
    return self.config.do_predict and _has_answers(self.predict_dataset)

  def prepare_data(self) -> None:
    config = self.config
    tokenizer = self.files.tokenizer()

    def prepare(input_file: str, is_training: bool) -> Dict[str, Any]:
      return squad_records.prepare_features(
          input_file, tokenizer, self.files.vocab_file, config.max_seq_length, config.doc_stride,
          config.max_query_length, is_training, config.version_2_with_negative,
          output_dir=config.output_dir, num_workers=config.num_workers)

    # Both files up front, so that prediction cannot fail after hours of training.
    if config.do_train:
      self.train_meta = prepare(config.train_file, True)
      logging.info("%d training examples became %d features (document windows); training "
                   "steps count features, as google-research's counted examples.",
                   self.train_meta["num_examples"], self.train_meta["num_features"])
      if config.pack_sequences:
        self.pack_training_data(self.train_meta["file_pattern"],
                                squad_records.metadata_path(config.output_dir, True),
                                ("start_positions", "end_positions", "unique_ids"))
    if config.do_predict:
      self.eval_meta = prepare(config.predict_file, False)

  def build_model(self) -> tf_keras.Model:
    return modeling.build_model(modeling.BertSpanLabeler(self.files.config))

  def loss(self, features: trainer.Features, outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    return span_loss(features, outputs)

  def num_train_records(self) -> int:
    return self.train_meta["num_features"]

  def train_files(self) -> str:
    return self.train_meta["file_pattern"]

  def train_dataset(self, context: tf.distribute.InputContext,
                    start_batch: int) -> tf.data.Dataset:
    if self.packed:
      return self.packed_train_dataset(context, start_batch)
    config = self.config
    return squad_records.make_dataset(self.train_meta["file_pattern"], config.max_seq_length,
                                      is_training=True,
                                      batch_size=config.training.train_batch_size,
                                      drop_remainder=True, input_context=context,
                                      seed=config.seed, start_batch=start_batch,
                                      files_in_parallel=config.training.input_files_in_parallel)

  def _answers(self, model: tf_keras.Model):
    """(predictions, n-best, null odds) of `model` on the predict file."""
    config = self.config
    if self._eval_data is None:
      self._eval_data = squad_records.load_eval_data(config.output_dir, config.predict_file)
    examples, features = self._eval_data
    results = predict(self.strategy, model, self.eval_meta, config.predict_batch_size,
                      config.length_buckets)
    return squad_predictions.compute_predictions(
        examples, features, results, config.n_best_size, config.max_answer_length,
        self.files.do_lower_case, config.version_2_with_negative,
        config.null_score_diff_threshold)

  def _score(self, predictions: Dict[str, str], null_odds: Dict[str, float]) -> Dict[str, Any]:
    """The dataset's own metric; exact_match and f1 under those names for every version."""
    metrics = evaluate.evaluate(self.predict_dataset, predictions, na_probs=(
        null_odds if self.config.version_2_with_negative else None))
    metrics.setdefault("exact_match", metrics.get("exact"))
    return metrics

  def evaluate(self, model: tf_keras.Model) -> Dict[str, Any]:
    predictions, _, null_odds = self._answers(model)
    return self._score(predictions, null_odds)

  def serving_settings(self) -> export.ServingSettings:
    config = self.config
    return export.ServingSettings(
        "squad", self.files.vocab_file, self.files.do_lower_case, config.max_seq_length,
        doc_stride=config.doc_stride, max_query_length=config.max_query_length,
        version_2_with_negative=config.version_2_with_negative, n_best_size=config.n_best_size,
        max_answer_length=config.max_answer_length,
        null_score_diff_threshold=config.null_score_diff_threshold)

  def predict(self, model: tf_keras.Model, step: int, results: Dict[str, Any]) -> List[str]:
    """predictions.json, nbest_predictions.json, null_odds.json (SQuAD 2.0) and, when the
    predict file has answers, eval_results.json."""
    predictions, nbest, null_odds = self._answers(model)
    if not self.chief:
      return []  # every worker predicts its share; the chief gathers them and writes the files
    config = self.config
    paths = output_files(config.output_dir)
    io_files.write_json_atomic(paths["predictions"], predictions)
    io_files.write_json_atomic(paths["nbest_predictions"], nbest)
    written = ["predictions", "nbest_predictions"]
    if config.version_2_with_negative:
      io_files.write_json_atomic(paths["null_odds"], null_odds)
      written.append("null_odds")
    logging.info("Predicted %d questions: %s", len(predictions), paths["predictions"])
    results["predictions"] = paths["predictions"]
    names = [os.path.basename(paths[name]) for name in written]
    if self.has_eval_data():
      results["metrics"] = self._score(predictions, null_odds)
      io_files.write_json_atomic(os.path.join(config.output_dir, EVAL_RESULTS_FILE),
                                 dict(results["metrics"], global_step=step))
      names.append(EVAL_RESULTS_FILE)
    return names
