r"""Per-token activations of chosen BERT layers, as google-research/bert's extract_features.py.

  python -m bert_tf.serving.extract_features --input_file=input.txt --output_file=output.jsonl \
      --init_checkpoint=uncased_L-12_H-768_A-12/bert_model.ckpt --layers=-1,-2,-3,-4

--input_file has one text a line, or a pair as `text_a ||| text_b`. Each output line is Google's
JSON: {"linex_index": i, "features": [{"token": ..., "layers": [{"index": -1, "values": [...]}]}]}
with values rounded to 6 decimals. --init_checkpoint takes every format checkpoints/formats.py
reads;
--vocab_file and --bert_config_file default to the files beside it and --do_lower_case, when not
given, is inferred from the vocab. The output file appears only when complete.
"""

import dataclasses
import json
import os
import re
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from bert_tf import modeling, tokenization
from bert_tf.checkpoints import formats, model_files
from bert_tf.cli import flags as cli_flags
from bert_tf.data import sentence_pairs
from bert_tf.io import gcs, files as io_files

_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")


@dataclasses.dataclass
class InputExample:
  unique_id: int
  text_a: str
  text_b: Optional[str] = None


@dataclasses.dataclass
class InputFeatures:
  unique_id: int
  tokens: List[str]
  input_ids: List[int]
  input_mask: List[int]
  input_type_ids: List[int]


def read_examples(input_file: str) -> List[InputExample]:
  """One example a line of `input_file` (local or gs://); `a ||| b` is a pair, as in Google's."""
  with tf.io.gfile.GFile(input_file, "r") as f:
    lines = tokenization.convert_to_unicode(f.read()).split("\n")
  if lines[-1] == "":
    lines.pop()  # after the final newline
  examples = []
  for unique_id, line in enumerate(lines):
    match = _PAIR.match(line.strip())
    if match:
      examples.append(InputExample(unique_id, match.group(1), match.group(2)))
    else:
      examples.append(InputExample(unique_id, line.strip()))
  return examples


def convert_examples_to_features(examples: Iterable[InputExample], seq_length: int,
                                 tokenizer: tokenization.FullTokenizer) -> List[InputFeatures]:
  """[CLS] a [SEP] (b [SEP]), truncated to `seq_length` and zero-padded, as Google's."""
  features = []
  for example in examples:
    packed = sentence_pairs.pack(tokenizer, example.text_a, example.text_b, seq_length)
    features.append(InputFeatures(example.unique_id, packed.tokens, packed.input_ids,
                                  packed.input_mask, packed.segment_ids))
  return features


def parse_layers(layers: str, num_layers: int) -> List[int]:
  """Layer indexes from "-1,-2": Python-style indexes into the encoder's `num_layers` outputs."""
  try:
    indexes = [int(x) for x in layers.split(",")]
  except ValueError as e:
    raise ValueError(f"--layers={layers!r}: expected comma-separated integers such as "
                     "-1,-2,-3,-4.") from e
  bad = [i for i in indexes if not -num_layers <= i < num_layers]
  if bad:
    raise ValueError(f"--layers={layers!r}: {bad} out of range for a model with {num_layers} "
                     f"layers (use -{num_layers}..{num_layers - 1}).")
  return indexes


def layer_features(model: modeling.BertModel, features: Sequence[InputFeatures],
                   layer_indexes: Sequence[int], batch_size: int) -> Iterator[dict]:
  """Google's JSON object for each feature: every token with the chosen layers' values."""
  predict = tf.function(lambda batch: [model(batch)["all_layers"][i] for i in layer_indexes],
                        reduce_retracing=True)
  for start in range(0, len(features), batch_size):
    batch = features[start:start + batch_size]
    outputs = predict(dict(
        input_ids=tf.constant([f.input_ids for f in batch], tf.int32),
        input_mask=tf.constant([f.input_mask for f in batch], tf.int32),
        segment_ids=tf.constant([f.input_type_ids for f in batch], tf.int32)))
    outputs = [np.asarray(o) for o in outputs]
    for row, feature in enumerate(batch):
      yield {"linex_index": feature.unique_id, "features": [
          {"token": token, "layers": [
              {"index": index, "values": [round(float(x), 6) for x in output[row, position]]}
              for index, output in zip(layer_indexes, outputs)]}
          for position, token in enumerate(feature.tokens)]}


def extract_features(input_file: str, output_file: str, init_checkpoint: str,
                     vocab_file: Optional[str] = None, bert_config_file: Optional[str] = None,
                     layers: str = "-1,-2,-3,-4", max_seq_length: int = 128,
                     batch_size: int = 32, do_lower_case: Optional[bool] = None) -> int:
  """Writes the activations of `layers` for every line of `input_file` as JSON lines to
  `output_file` (atomically); returns the number of lines written."""
  if not init_checkpoint:
    raise ValueError("--init_checkpoint is required: features of a random model are useless.")
  files = model_files.resolve(init_checkpoint, vocab_file, bert_config_file, do_lower_case)
  config = files.config
  if not 3 <= max_seq_length <= config.max_position_embeddings:
    raise ValueError(f"--max_seq_length={max_seq_length}: must be between 3 and "
                     f"max_position_embeddings={config.max_position_embeddings} of "
                     f"{files.config_file}.")
  if batch_size < 1:
    raise ValueError(f"--batch_size={batch_size}: must be at least 1.")
  layer_indexes = parse_layers(layers, config.num_hidden_layers)
  if tf.io.gfile.isdir(output_file):
    raise ValueError(f"--output_file={output_file} is a directory: name the file to write, e.g. "
                     f"--output_file={os.path.join(output_file, 'features.jsonl')}.")
  # Before any model is loaded: a missing input, an output under a file or one not writable.
  gcs.check_inputs_and_output({"input_file": input_file}, "output_file",
                              os.path.dirname(output_file))
  features = convert_examples_to_features(read_examples(input_file), max_seq_length,
                                          files.tokenizer())
  model = modeling.build_model(modeling.BertModel(config))
  formats.load_init_checkpoint(model, init_checkpoint, files.config_file)
  with io_files.atomic_output(output_file) as tmp:
    with tf.io.gfile.GFile(tmp, "w") as writer:
      for output in layer_features(model, features, layer_indexes, batch_size):
        writer.write(json.dumps(output) + "\n")
  logging.info("Wrote features of %d lines to %s.", len(features), output_file)
  return len(features)


def _define_flags() -> None:
  """google-research's extract_features flags (plus the shared model flags)."""
  cli_flags.define_model_flags()
  flags.DEFINE_string("input_file", None, "Text to embed: one text a line, or `a ||| b`.")
  flags.DEFINE_string("output_file", None, "JSON lines to write.")
  flags.DEFINE_string("layers", "-1,-2,-3,-4", "Comma-separated layer indexes to output.")
  flags.DEFINE_integer("max_seq_length", 128, "The maximum total input sequence length after "
                       "WordPiece tokenization; longer sequences are truncated, shorter padded.")
  flags.DEFINE_integer("batch_size", 32, "Batch size for predictions.")
  flags.mark_flags_as_required(["input_file", "output_file", "init_checkpoint"])


def main(argv):
  with cli_flags.user_errors(argv):  # a bad flag or file: one line, no traceback
    f = flags.FLAGS
    cli_flags.apply_mixed_precision(tf.distribute.get_strategy())
    extract_features(f.input_file, f.output_file, f.init_checkpoint, f.vocab_file,
                     f.bert_config_file, f.layers, f.max_seq_length, f.batch_size,
                     f.do_lower_case if f["do_lower_case"].present else None)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
