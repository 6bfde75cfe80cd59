"""Masked-LM + next-sentence pretraining with BertPretrainer: the task behind run_pretraining.py.

Losses and metrics are google-research's: the masked-LM loss is the masked_lm_weights-weighted
mean of the token cross-entropies (sum / (sum of weights + 1e-5)) over each replica's batch, as
each TPU core computed it, plus the mean next-sentence cross-entropy.

The data says how to train (DataFormat, from the first record of every file and the metadata):
records with masked_lm_* features are masked already (static, google-research's); records
without are masked batch by batch in the pipeline (dynamic: data.masking, with the
masked_lm_prob, max_predictions_per_seq and whole-word masking the metadata records, and the
vocab's [MASK] and ## tokens, so dynamic data needs --vocab_file). Records without
next_sentence_labels train the masked LM alone: no next-sentence head, loss or metrics.

With pack_sequences (the default) training reads packed rows (data/packed_pretraining.py):
several instances a row, each with its own positions, attention, [CLS] for next-sentence
prediction and masked positions (dynamic data: masked instance by instance in the pipeline); the
loss of a step is the same as over its instances unpacked (pretraining_loss). Evaluation reads
the records as they are.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
import tf_keras
from absl import logging
from google.protobuf import message

from bert_tf import modeling
from bert_tf import tokenization
from bert_tf.checkpoints import convert, formats
from bert_tf.corpus import shards
from bert_tf.data import masking, packed_pretraining, packing, pipeline
from bert_tf.io import files as io_files
from bert_tf.io import run_directory
from bert_tf.tasks import task
from bert_tf.training import trainer

MLM_METRICS = ("masked_lm_accuracy", "masked_lm_loss")
METRICS = (*MLM_METRICS, "next_sentence_accuracy", "next_sentence_loss")
# The evaluation's masks of dynamic data come from their own stream of seeds (the training
# pipelines' streams are their input_pipeline_ids): the same for every evaluation of a run.
EVAL_MASK_STREAM = -1
_INPUT_FEATURES = ("input_ids", "input_mask", "segment_ids")


@dataclasses.dataclass(frozen=True)
class DataFormat:
  """How create_pretraining_data made a data set: what training reads and trains."""
  dynamic: bool = False  # unmasked records, masked in the pipeline
  next_sentence_prediction: bool = True  # next_sentence_labels, and the NSP head
  masked_lm_prob: Optional[float] = None  # dynamic only: the masking the metadata records
  do_whole_word_mask: Optional[bool] = None

  def describe(self) -> str:
    masking_flags = (f" (masked_lm_prob={self.masked_lm_prob}, "
                     f"do_whole_word_mask={self.do_whole_word_mask})" if self.dynamic else "")
    return (f"{'dynamically' if self.dynamic else 'statically'} masked records "
            f"{'with' if self.next_sentence_prediction else 'without'} next-sentence labels"
            + masking_flags)


def feature_spec(max_seq_length: int, max_predictions_per_seq: int,
                 data_format: DataFormat = DataFormat()) -> Dict[str, tf.io.FixedLenFeature]:
  """create_pretraining_data's features (masked_lm_weights is float) in `data_format`."""
  lengths = dict.fromkeys(_INPUT_FEATURES, max_seq_length)
  if not data_format.dynamic:
    lengths.update(masked_lm_positions=max_predictions_per_seq,
                   masked_lm_ids=max_predictions_per_seq)
  if data_format.next_sentence_prediction:
    lengths["next_sentence_labels"] = 1
  spec = pipeline.int_features(lengths)
  if not data_format.dynamic:
    spec["masked_lm_weights"] = tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32)
  return spec


def _first_features(path: str):
  """The features of the first tf.train.Example in `path`, or None when it holds no record."""
  try:
    record = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    return None if record is None else tf.train.Example.FromString(
        record.numpy()).features.feature
  except (tf.errors.OpError, message.DecodeError) as e:
    raise ValueError(f"{path} is not a TFRecord file of tf.train.Examples ({e}); check "
                     "--input_file, or make the data with python -m "
                     "bert_tf.corpus.create_pretraining_data.") from None


def _file_format(path: str, feature) -> Tuple[DataFormat, int]:
  """The format of the file whose first record has `feature`, and its max_predictions_per_seq."""
  missing = [name for name in _INPUT_FEATURES if name not in feature]
  if missing:
    raise ValueError(f"{path} is not pretraining data: it lacks {', '.join(missing)}. Make "
                     "it with python -m bert_tf.corpus.create_pretraining_data.")
  next_sentence = "next_sentence_labels" in feature
  if "masked_lm_positions" in feature:
    return (DataFormat(next_sentence_prediction=next_sentence),
            len(feature["masked_lm_positions"].int64_list.value))
  metadata = shards.read_metadata(path)
  if not metadata or metadata.get("masking") != "dynamic":
    raise ValueError(f"{path} holds unmasked records (no masked_lm_positions) but no "
                     "create_pretraining_data metadata with masking=dynamic says how to mask "
                     "them. Keep OUTPUT_FILE.metadata.json beside the shards, or make the data "
                     "again with python -m bert_tf.corpus.create_pretraining_data.")
  return (DataFormat(True, next_sentence, metadata["masked_lm_prob"],
                     metadata["do_whole_word_mask"]), metadata["max_predictions_per_seq"])


def check_data_shapes(file_pattern: str, max_seq_length: int,
                      max_predictions_per_seq: int) -> DataFormat:
  """The data's format; fails early, naming the file and flags, when data was made with other
  lengths or files differ in format. Reads one record of every file, so shards made with
  different flags are found too."""
  formats: Dict[DataFormat, str] = {}
  for path in pipeline.list_files(file_pattern):
    feature = _first_features(path)
    if feature is None:
      continue  # An empty shard adds nothing to training.
    data_format, predictions = _file_format(path, feature)
    found = (len(feature["input_ids"].int64_list.value), predictions)
    if found != (max_seq_length, max_predictions_per_seq):
      raise ValueError(
          f"{path} was made with max_seq_length={found[0]}, max_predictions_per_seq={found[1]} "
          f"but the flags say --max_seq_length={max_seq_length} "
          f"--max_predictions_per_seq={max_predictions_per_seq}. Pass the data's values, or "
          "recreate the data with the flags' values (every file of the pattern must match).")
    formats.setdefault(data_format, path)
    if len(formats) > 1:
      (first, first_path), (other, other_path) = formats.items()
      raise ValueError(f"{other_path} holds {other.describe()} but {first_path} holds "
                       f"{first.describe()}: a run reads one kind of data. Pass files made with "
                       "the same create_pretraining_data flags.")
  if not formats:
    raise ValueError(f"{file_pattern} holds no record; check --input_file.")
  return next(iter(formats))


def _mlm_token_losses(features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor]):
  log_probs = tf.nn.log_softmax(outputs["mlm_logits"], axis=-1)
  labels = features["masked_lm_ids"]
  token_losses = -tf.gather(log_probs, labels, batch_dims=2)
  return token_losses, log_probs


def pretraining_loss(features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
  """Per-example losses whose batch mean is google-research's total loss (MLM + NSP; MLM alone
  for a model without the next-sentence head). Packed rows: per instance slot [rows, E]
  (_packed_pretraining_loss)."""
  token_losses, _ = _mlm_token_losses(features, outputs)
  weights = features["masked_lm_weights"]
  if packing.is_packed(features):
    return _packed_pretraining_loss(features, outputs, token_losses * weights)
  batch = tf.cast(tf.shape(weights)[0], tf.float32)
  # Each example's share of the batch-normalised MLM loss, scaled so the trainer's mean over
  # the batch gives sum(loss * weight) / (sum(weight) + 1e-5).
  mlm = tf.reduce_sum(token_losses * weights, axis=1) * batch / (tf.reduce_sum(weights) + 1e-5)
  if "nsp_logits" not in outputs:
    return mlm
  nsp = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.reshape(features["next_sentence_labels"], [-1]), logits=outputs["nsp_logits"])
  return mlm + nsp


def _packed_pretraining_loss(features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor],
                             weighted_token_losses: tf.Tensor) -> tf.Tensor:
  """Per instance slot [rows, E]: its share of the batch's weighted-mean MLM loss plus its NSP
  cross-entropy, so that the trainer's sum over slots (empty ones weigh 0) divided by the
  instance count is google-research's loss over the batch's instances unpacked: the
  masked_lm_weights-weighted mean of the token cross-entropies, normalised by the batch's own
  weights (sum / (sum of weights + 1e-5)), plus the mean NSP loss over the real instances.

  What changes with packing: a replica's batch holds a varying number of instances, so the
  trainer weighs each replica's (and micro-batch's) loss by its share of the step's instances
  where unpacked batches of equal size weigh equally; on one replica the loss is the same.
  """
  example_weights = features[packing.EXAMPLE_WEIGHTS]
  # The instance of each prediction is the example_ids at its position (padding: weight 0).
  slots = tf.gather(features[packing.EXAMPLE_IDS], features["masked_lm_positions"],
                    batch_dims=1) - 1
  per_slot = tf.einsum("rm,rme->re", weighted_token_losses,
                       tf.one_hot(slots, example_weights.shape[1], dtype=tf.float32))
  mlm = per_slot * tf.reduce_sum(example_weights) / (
      tf.reduce_sum(features["masked_lm_weights"]) + 1e-5)
  if "nsp_logits" not in outputs:
    return mlm
  return mlm + tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=features[packed_pretraining.NEXT_SENTENCE_LABELS], logits=outputs["nsp_logits"])


def _metric_sums(features: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor]
                 ) -> Dict[str, tf.Tensor]:
  """Sums from which the eval metrics are ratios (so they add up over batches and replicas)."""
  token_losses, log_probs = _mlm_token_losses(features, outputs)
  weights = features["masked_lm_weights"]
  correct = tf.cast(tf.equal(tf.argmax(log_probs, -1, output_type=tf.int32),
                             features["masked_lm_ids"]), tf.float32)
  sums = dict(mlm_loss=tf.reduce_sum(token_losses * weights),
              mlm_correct=tf.reduce_sum(correct * weights), mlm_weight=tf.reduce_sum(weights))
  if "nsp_logits" not in outputs:
    return sums
  labels = tf.reshape(features["next_sentence_labels"], [-1])
  nsp_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                              logits=outputs["nsp_logits"])
  nsp_correct = tf.cast(tf.equal(tf.argmax(outputs["nsp_logits"], -1, output_type=tf.int32),
                                 labels), tf.float32)
  return dict(sums, nsp_loss=tf.reduce_sum(nsp_losses), nsp_correct=tf.reduce_sum(nsp_correct),
              examples=tf.cast(tf.size(labels), tf.float32))


def evaluate(strategy: tf.distribute.Strategy, model: modeling.BertPretrainer, file_pattern: str,
             max_seq_length: int, max_predictions_per_seq: int, eval_batch_size: int,
             max_eval_steps: int, data_format: DataFormat = DataFormat(),
             masker: Optional[masking.DynamicMasker] = None, seed: int = 0) -> Dict[str, float]:
  """google-research's eval metrics over up to max_eval_steps full batches of the input
  (dynamic data masked by `masker`, with the same masks for a seed at every evaluation)."""
  parser = pipeline.example_parser(feature_spec(max_seq_length, max_predictions_per_seq,
                                                data_format))
  dataset = pipeline.evaluation_dataset(file_pattern, parser, eval_batch_size,
                                              drop_remainder=True).take(max_eval_steps)
  if data_format.dynamic:
    dataset = masking.mask_dataset(dataset, masker, seed, EVAL_MASK_STREAM)

  @tf.function
  def step(features):
    return _metric_sums(features, model(features, training=False))

  totals: Dict[str, float] = {}
  for features in strategy.experimental_distribute_dataset(dataset):
    trainer.check_stop_request(strategy)  # during training, a SIGTERM stops an evaluation too
    sums = strategy.run(step, args=(features,))
    for key, value in sums.items():
      totals[key] = totals.get(key, 0.0) + float(
          strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None))
  if not totals:
    raise ValueError(f"{file_pattern} has fewer than eval_batch_size={eval_batch_size} records; "
                     "lower --eval_batch_size.")
  metrics = dict(
      masked_lm_accuracy=totals["mlm_correct"] / totals["mlm_weight"],
      masked_lm_loss=totals["mlm_loss"] / totals["mlm_weight"])
  metrics["loss"] = metrics["masked_lm_loss"]
  if "examples" in totals:
    metrics.update(next_sentence_accuracy=totals["nsp_correct"] / totals["examples"],
                   next_sentence_loss=totals["nsp_loss"] / totals["examples"])
    metrics["loss"] += metrics["next_sentence_loss"]
  return metrics


@dataclasses.dataclass(kw_only=True)
class PretrainingConfig(task.TaskConfig):
  """Pretraining's own settings; `training` holds num_train_steps and num_warmup_steps."""
  input_file: str
  eval_input_file: Optional[str] = None  # default: input_file, as google-research does
  max_predictions_per_seq: int = 20
  max_eval_steps: int = 100
  eval_every_epoch: bool = False
  # None: as the data says (next_sentence_labels or not); a value the data contradicts fails.
  next_sentence_prediction: Optional[bool] = None


class PretrainingTask(task.Task):
  """Pretrains BertPretrainer; with --keep_best_by_loss keeps the lowest-loss model (KcBERT)."""
  selectable_metrics = ("loss",)
  scores_training_loss = True
  eval_data_hint = "add --do_eval=true"

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._formats: Dict[str, DataFormat] = {}

  @property
  def eval_input(self) -> str:
    return self.config.eval_input_file or self.config.input_file

  def data_format(self, pattern: str) -> DataFormat:
    """The format of the records of `pattern` (checked against the flags once)."""
    if pattern not in self._formats:
      config = self.config
      self._formats[pattern] = check_data_shapes(pattern, config.max_seq_length,
                                                 config.max_predictions_per_seq)
    return self._formats[pattern]

  @property
  def next_sentence_prediction(self) -> bool:
    """Whether the model has the next-sentence head: whether the data has its labels."""
    return self.data_format(self.config.input_file).next_sentence_prediction

  @property
  def metrics(self) -> Tuple[str, ...]:
    return ("loss", *(METRICS if self.next_sentence_prediction else MLM_METRICS))

  def check_task(self) -> None:
    """The records were made with the flags' lengths (and vocab): one record of every file; a
    next-sentence head is trained and evaluated on data with its labels only; every shard is the
    size (and holds the records) its metadata recorded."""
    config = self.config
    for pattern in dict.fromkeys([config.input_file, self.eval_input]):
      shards.check_shards(pipeline.list_files(pattern))
      data_format = self.data_format(pattern)
      wanted = config.next_sentence_prediction
      if wanted is None:
        wanted = self.next_sentence_prediction
      if data_format.next_sentence_prediction != wanted:
        flag = ("--next_sentence_prediction" if config.next_sentence_prediction is not None
                else f"--input_file={config.input_file}")
        raise ValueError(
            f"{pattern} holds {data_format.describe()}, but {flag} asks for a model "
            f"{'with' if wanted else 'without'} the next-sentence head. Make the data with "
            "create_pretraining_data --next_sentence_prediction="
            f"{str(wanted).lower()}, or pass data made that way.")
      if data_format.dynamic and not self.files.vocab_file:
        raise ValueError(f"{pattern} holds {data_format.describe()}: masking them needs the "
                         "vocab ([MASK], random tokens, ## word pieces). Pass --vocab_file.")
      if self.files.vocab_file:
        shards.check_data_vocab(pipeline.list_files(pattern)[0],
                                self.files.vocab_file)
      logging.info("%s: %s. %s", pattern, data_format.describe(), (
          "Masking is dynamic: each record gets new masks every time it is read, so every "
          "epoch sees other masked words" if data_format.dynamic else
          "Masking is static: create_pretraining_data chose the masks, the same in every "
          "epoch (one set per --dupe_factor copy)"))

  def masker(self, pattern: str) -> Optional[masking.DynamicMasker]:
    """The masker of dynamically masked data (None for static data)."""
    data_format = self.data_format(pattern)
    if not data_format.dynamic:
      return None
    return masking.DynamicMasker(tokenization.load_vocab(self.files.vocab_file),
                                 self.config.max_predictions_per_seq, data_format.masked_lm_prob,
                                 data_format.do_whole_word_mask)

  def prepare_data(self) -> None:
    """create_pretraining_data made the records; with packing, they are packed into rows."""
    config = self.config
    if not (config.do_train and config.pack_sequences):
      return
    packed = packed_pretraining.prepare_packed(
        pipeline.list_files(config.input_file), config.max_seq_length,
        config.max_predictions_per_seq, self.next_sentence_prediction, config.seed,
        os.path.join(config.output_dir, task.PACKED_TRAIN_FILE),
        self.data_format(config.input_file).masked_lm_prob)
    self.use_packed_rows(packed, packed_pretraining.packed_parser(packed))

  def build_model(self) -> tf_keras.Model:
    return modeling.build_model(modeling.BertPretrainer(self.files.config,
                                                        self.next_sentence_prediction))

  def loss(self, features: trainer.Features, outputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    return pretraining_loss(features, outputs)

  def num_train_records(self) -> Optional[int]:
    """The instances of the input, when its create_pretraining_data metadata covers it."""
    return shards.count_instances(self.config.input_file)

  def train_files(self) -> str:
    return self.config.input_file

  def train_dataset(self, context: tf.distribute.InputContext,
                    start_batch: int) -> tf.data.Dataset:
    """Batches from `start_batch` on; dynamic data is masked batch by batch, batch k of this
    input pipeline with the seed of (seed, input pipeline, k), so a resume re-creates its masks."""
    config = self.config
    data_format = self.data_format(config.input_file)
    masker = self.masker(config.input_file)
    if self.packed:
      dataset = self.packed_train_dataset(context, start_batch)
      if masker:
        masker = packed_pretraining.PackedMasker(masker, self.packed.max_predictions_per_row)
    else:
      parser = pipeline.example_parser(feature_spec(config.max_seq_length,
                                                    config.max_predictions_per_seq, data_format))
      dataset = pipeline.training_dataset(
          config.input_file, parser,
          context.get_per_replica_batch_size(config.training.train_batch_size), seed=config.seed,
          start_batch=start_batch, files_in_parallel=config.training.input_files_in_parallel,
          input_context=context, counts_cache_dir=config.output_dir)
    if masker:
      dataset = masking.mask_dataset(dataset, masker, config.seed, context.input_pipeline_id,
                                     start_batch)
    return dataset

  def evaluate(self, model: tf_keras.Model) -> Dict[str, Any]:
    config = self.config
    return evaluate(self.strategy, model, self.eval_input, config.max_seq_length,
                    config.max_predictions_per_seq, config.eval_batch_size, config.max_eval_steps,
                    self.data_format(self.eval_input), self.masker(self.eval_input), config.seed)

  def write_evaluation(self, metrics: Dict[str, Any], step: int) -> List[str]:
    """google-research's eval_results.txt: 'key = value' lines, sorted."""
    io_files.write_key_values(os.path.join(self.config.output_dir, "eval_results.txt"),
                              {**metrics, "global_step": step})
    return ["eval_results.txt"]

  def finish(self, results: Dict[str, Any]) -> None:
    """Exports the best (or last) model for fine-tuning and Hugging Face, with the vocab."""
    if not self.config.do_train:
      return
    if not self.files.vocab_file:
      logging.warning("No --vocab_file: the model is not exported (the exports carry vocab.txt).")
      return
    if not self.chief:
      return
    source = self.model_source
    results["exported_from"] = source
    results["exports"] = export_model(self.config.output_dir, source, self.files.config_file,
                                      self.files.vocab_file, self.files.do_lower_case)


EXPORT_FORMATS = (formats.TF1, formats.TF2, formats.HF)
EXPORT_SOURCE = "exported_from.json"


def export_model(output_dir: str, source: str, bert_config_file: str, vocab_file: str,
                 do_lower_case: Optional[bool] = None) -> Dict[str, str]:
  """Writes checkpoint `source` to OUTPUT_DIR/export/{tf1,tf2,hf}; returns format -> directory.

  `do_lower_case` is the lowercasing the model was trained with, for the Hugging Face
  tokenizer files (None: inferred from the vocab).

  Each directory appears complete or not at all (written under a temporary name, then renamed),
  and records its source (relative to output_dir, with the checkpoint's fingerprint): an export
  of other weights is replaced, a current one is kept.
  """
  written = {}
  recorded = run_directory.weights_source(output_dir, source)
  for fmt in EXPORT_FORMATS:
    target = os.path.join(output_dir, task.EXPORT_DIR, fmt)
    record = os.path.join(target, EXPORT_SOURCE)
    written[fmt] = target
    if tf.io.gfile.exists(record) and io_files.read_json(record) == recorded:
      logging.info("%s already holds %s; not exported again.", target, source)
      continue
    tmp = io_files.temporary_path(target)
    try:
      convert.convert_checkpoint(source, tmp, fmt, bert_config_file, vocab_file,
                                 do_lower_case)
      io_files.write_json_atomic(os.path.join(tmp, EXPORT_SOURCE), recorded)
      if tf.io.gfile.exists(target):
        logging.warning("%s held an export of %s; replaced by one of %s.", target,
                        io_files.read_json(record).get("checkpoint") if tf.io.gfile.exists(record)
                        else "unrecorded weights", recorded["checkpoint"])
        tf.io.gfile.rmtree(target)
      tf.io.gfile.rename(tmp, target)
    finally:
      if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    logging.info("Exported %s as %s to %s.", source, formats.FORMAT_NAMES[fmt], target)
  return written
