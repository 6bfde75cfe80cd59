"""The BERT model with Google's semantics, built on tf-models-official's BertEncoderV2.

BertEncoderV2 already matches google-research/bert's modeling.py: embeddings (word + position +
token type) -> LayerNorm -> dropout, post-LN transformer blocks, a tanh pooler on [CLS] and
truncated-normal initialisation. Padding is masked with a large negative adder before the
softmax (-1e9 there, -10000 in Google's code): after exp() both are exactly zero in float32, so
outputs are identical except for rows that mask every position, which BERT never produces.

The heads follow Google's layout: masked-LM transform (dense + activation + LayerNorm) with
the output tied to the word embeddings plus a bias, next-sentence prediction on the pooled
output (label 0 = IsNext), a span labeler (start/end logits) and a sentence classifier.
All heads return float32 logits so losses are computed in float32 under mixed precision.
"""

from typing import Dict, Optional

import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers as nlp_layers
from official.nlp.modeling import networks

from bert_tf import packed_modeling
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.data import packing

Features = Dict[str, tf.Tensor]


def set_mixed_precision(policy: Optional[str]) -> None:
  """Sets the tf_keras global dtype policy: None/'float32', 'mixed_bfloat16' (TPU), 'mixed_float16' (GPU).

  Call before building a model. float16 needs loss scaling, which the trainer adds.
  """
  allowed = (None, "float32", "mixed_bfloat16", "mixed_float16")
  if policy not in allowed:
    raise ValueError(f"--mixed_precision={policy!r}: expected one of "
                     "float32, mixed_bfloat16 (TPU), mixed_float16 (GPU).")
  tf_keras.mixed_precision.set_global_policy(policy or "float32")


def _initializer(config: BertConfig) -> tf_keras.initializers.Initializer:
  return tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range)


def build_encoder(config: BertConfig) -> networks.BertEncoderV2:
  """A BertEncoderV2 with the config's sizes, activation and LayerNorm epsilon."""
  encoder = networks.BertEncoderV2(
      vocab_size=config.vocab_size,
      hidden_size=config.hidden_size,
      num_layers=config.num_hidden_layers,
      num_attention_heads=config.num_attention_heads,
      max_sequence_length=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size,
      inner_dim=config.intermediate_size,
      inner_activation=config.activation(),
      output_dropout=config.hidden_dropout_prob,
      attention_dropout=config.attention_probs_dropout_prob,
      initializer=_initializer(config),
      name="encoder")
  # BertEncoderV2 fixes epsilon at 1e-12 (Google's value); Hugging Face configs may set another.
  # Its LayerNorms read these attributes when first built, which has not happened yet.
  encoder._embedding_norm_layer.epsilon = config.layer_norm_eps  # pylint: disable=protected-access
  for block in encoder.transformer_layers:
    block._norm_epsilon = config.layer_norm_eps  # pylint: disable=protected-access
  encoder(encoder_inputs(dummy_features()))  # creates the variables (the MLM head ties to them)
  return encoder


def encoder_inputs(features: Features) -> Features:
  """Maps google-research feature names to BertEncoderV2's input names."""
  return dict(input_word_ids=features["input_ids"],
              input_mask=features["input_mask"],
              input_type_ids=features["segment_ids"])


class BertModel(tf_keras.Model):
  """The bare encoder: sequence output, pooled output and every layer's output."""

  def __init__(self, config: BertConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.encoder = build_encoder(config)

  def call(self, features: Features, training: bool = False) -> Dict[str, tf.Tensor]:
    outputs = self.encoder(encoder_inputs(features), training=training)
    return dict(sequence_output=tf.cast(outputs["sequence_output"], tf.float32),
                pooled_output=tf.cast(outputs["pooled_output"], tf.float32),
                all_layers=[tf.cast(x, tf.float32) for x in outputs["encoder_outputs"]])


class BertPretrainer(tf_keras.Model):
  """Encoder + masked-LM head (tied to word embeddings) + next-sentence head (unless
  next_sentence_prediction is false: masked LM only, no nsp_logits).

  Packed rows (data/packed_pretraining.py) give mlm_logits per row prediction [rows, M, vocab]
  and nsp_logits per instance slot [rows, E, 2], each from its own [CLS] through the pooler.
  """

  def __init__(self, config: BertConfig, next_sentence_prediction: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.encoder = build_encoder(config)
    self.masked_lm = nlp_layers.MaskedLM(
        embedding_table=self.encoder.get_embedding_table(),
        activation=config.activation(),
        initializer=_initializer(config),
        name="cls/predictions")
    self.next_sentence = tf_keras.layers.Dense(
        2, kernel_initializer=_initializer(config),
        name="cls/seq_relationship") if next_sentence_prediction else None

  def call(self, features: Features, training: bool = False) -> Dict[str, tf.Tensor]:
    packed = packing.is_packed(features)
    if packed:
      sequence_output = packed_modeling.encode(self.encoder, features, training)
    else:
      outputs = self.encoder(encoder_inputs(features), training=training)
      sequence_output = outputs["sequence_output"]
    mlm_logits = self.masked_lm(sequence_output, masked_positions=features["masked_lm_positions"])
    logits = dict(mlm_logits=tf.cast(mlm_logits, tf.float32))
    if self.next_sentence is not None:
      pooled = (packed_modeling.pool(self.encoder, sequence_output,
                                     features[packing.EXAMPLE_STARTS])
                if packed else outputs["pooled_output"])
      logits["nsp_logits"] = tf.cast(self.next_sentence(pooled), tf.float32)
    return logits


class BertSpanLabeler(tf_keras.Model):
  """Encoder + one dense layer giving start and end logits per token (SQuAD).

  Packed rows (data/packing.py) give logits per row position [rows, L]; each window's own
  positions are its logits (packed_modeling.per_example_logits).
  """

  def __init__(self, config: BertConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.encoder = build_encoder(config)
    self.span_logits = tf_keras.layers.Dense(
        2, kernel_initializer=_initializer(config), name="cls/squad")

  def call(self, features: Features, training: bool = False) -> Dict[str, tf.Tensor]:
    if packing.is_packed(features):
      sequence_output = packed_modeling.encode(self.encoder, features, training)
    else:
      sequence_output = self.encoder(encoder_inputs(features), training=training)[
          "sequence_output"]
    logits = tf.cast(self.span_logits(sequence_output), tf.float32)
    start_logits, end_logits = tf.unstack(logits, axis=-1)
    return dict(start_logits=start_logits, end_logits=end_logits)


class BertClassifier(tf_keras.Model):
  """Encoder + dropout + dense on the pooled output (sentence or pair classification).

  Packed rows (data/packing.py) give logits per example slot [rows, E, num_labels], each from
  its own [CLS].
  """

  def __init__(self, config: BertConfig, num_labels: int, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.num_labels = num_labels
    self.encoder = build_encoder(config)
    self.dropout = tf_keras.layers.Dropout(config.hidden_dropout_prob)
    self.classifier = tf_keras.layers.Dense(
        num_labels, kernel_initializer=_initializer(config), name="output")

  def call(self, features: Features, training: bool = False) -> Dict[str, tf.Tensor]:
    if packing.is_packed(features):
      pooled = packed_modeling.pool(
          self.encoder, packed_modeling.encode(self.encoder, features, training),
          features[packing.EXAMPLE_STARTS])
    else:
      pooled = self.encoder(encoder_inputs(features), training=training)["pooled_output"]
    logits = self.classifier(self.dropout(pooled, training=training))
    return dict(logits=tf.cast(logits, tf.float32))


def dummy_features(seq_length: int = 8, batch_size: int = 1,
                   max_predictions_per_seq: int = 2) -> Features:
  """Zero-valued features that build every variable of any model above."""
  shape = (batch_size, seq_length)
  return dict(input_ids=tf.zeros(shape, tf.int32),
              input_mask=tf.ones(shape, tf.int32),
              segment_ids=tf.zeros(shape, tf.int32),
              masked_lm_positions=tf.zeros((batch_size, max_predictions_per_seq), tf.int32))


def build_model(model: tf_keras.Model) -> tf_keras.Model:
  """Creates all variables of `model` by calling it once on dummy features."""
  model(dummy_features(), training=False)
  return model
