"""The encoder's forward pass over packed rows (data/packing.py's layout), with the encoder's own layers.

BertEncoderV2 takes positions 0..L-1 (PositionEmbedding slices its table) and a 2-D padding mask
(SelfAttentionMask broadcasts it), so a row holding several examples needs its steps run with
position ids and a block-diagonal [rows, L, L] mask. tf-models' PackedSequenceEmbedding and
EncoderScaffold do that with variables of their own; here BertEncoderV2's own sub-layers run in
its order instead, so packed and unpacked models are one model: the same variables, checkpoints,
exports and --init_checkpoint. Each example's outputs equal its unpacked outputs (within float
rounding; tests/test_packed_modeling.py). Mirrors BertEncoderV2.call of tf-models-official 2.20
(embedding width = hidden size; no dense inputs, no output range).
"""

from typing import Dict

import tensorflow as tf
from official.nlp.modeling import networks

from bert_tf.data import packing

Features = Dict[str, tf.Tensor]
# Added to the logits of positions outside an example, so its softmax runs over its own positions.
_OUTSIDE = -1e9


def attention_mask(example_ids: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
  """[rows, L, L]: 1 where two positions belong to the same example (padding sees padding only)."""
  return tf.cast(tf.equal(example_ids[:, :, None], example_ids[:, None, :]), dtype)


def encode(encoder: networks.BertEncoderV2, features: Features, training: bool) -> tf.Tensor:
  """The sequence output [rows, L, hidden] of packed rows: embeddings with per-example position
  ids, then every transformer layer under the block-diagonal mask."""
  # pylint: disable=protected-access
  word_embeddings = encoder.get_embedding_layer()(features["input_ids"])
  table = encoder._position_embedding_layer._position_embeddings
  position_embeddings = tf.cast(tf.gather(table, features[packing.POSITION_IDS]),
                                word_embeddings.dtype)
  type_embeddings = encoder._type_embedding_layer(features["segment_ids"])
  embeddings = word_embeddings + position_embeddings + type_embeddings
  embeddings = encoder._embedding_norm_layer(embeddings)
  embeddings = encoder._embedding_dropout(embeddings, training=training)
  if encoder._embedding_projection is not None:
    embeddings = encoder._embedding_projection(embeddings)
  mask = attention_mask(features[packing.EXAMPLE_IDS], embeddings.dtype)
  x = embeddings
  for layer in encoder.transformer_layers:
    x = layer([x, mask], training=training)
  return x


def pool(encoder: networks.BertEncoderV2, sequence_output: tf.Tensor,
         example_starts: tf.Tensor) -> tf.Tensor:
  """[rows, E, hidden]: the pretrained pooler over each example's own [CLS]."""
  first_tokens = tf.gather(sequence_output, example_starts, batch_dims=1)
  return encoder.pooler_layer(first_tokens)


def per_example_logits(logits: tf.Tensor, example_ids: tf.Tensor,
                       max_examples: int) -> tf.Tensor:
  """[rows, E, L] from per-position logits [rows, L]: slot e keeps the positions of example e
  and pushes the rest to -1e9, so a softmax over L is one over the example's own positions."""
  slots = tf.range(1, max_examples + 1, dtype=example_ids.dtype)
  inside = tf.equal(example_ids[:, None, :], slots[None, :, None])
  return tf.where(inside, logits[:, None, :], tf.constant(_OUTSIDE, logits.dtype))
