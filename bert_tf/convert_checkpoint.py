r"""Converts a BERT checkpoint between Google TF1, bert_tf TF2 and Hugging Face formats.

  python -m bert_tf.convert_checkpoint --input=uncased_L-12_H-768_A-12/bert_model.ckpt \
      --output=/tmp/bert_hf --to=hf

--input is anything --init_checkpoint accepts (see checkpoints.py); --vocab_file and
--bert_config_file default to the files beside it. --output is a new directory holding
  tf1: bert_model.ckpt.{index,data-*} with Google's variable names, bert_config.json, vocab.txt;
  tf2: a tf.train.Checkpoint(model=...) as the trainer writes, bert_config.json, vocab.txt;
  hf:  model.safetensors with Hugging Face's names, config.json, vocab.txt.
Only the weights the input holds are written (the encoder and whichever heads it has); nothing is
invented. The directory is written under a temporary name and renamed when complete.
"""

import json
import os
from typing import Optional

import tensorflow as tf
import tf_keras
from absl import app, flags, logging

from bert_tf import checkpoints, io_utils, script_flags
from bert_tf.configs import BertConfig

TF1_PREFIX = "bert_model.ckpt"
# Hugging Face architecture for each set of restored heads.
_HF_ARCHITECTURES = {
    ("masked_lm", "next_sentence"): "BertForPreTraining",
    ("masked_lm",): "BertForMaskedLM",
    ("next_sentence",): "BertForNextSentencePrediction",
    ("span_logits",): "BertForQuestionAnswering",
    ("classifier",): "BertForSequenceClassification",
    (): "BertModel",
}


def _write_tf1(model: tf_keras.Model, report: checkpoints.LoadReport, directory: str,
               config: BertConfig) -> None:
  prefix = os.path.join(directory, TF1_PREFIX)
  checkpoints.write_tf1_checkpoint(checkpoints.google_arrays(model, report.restored), prefix)
  io_utils.write_text_atomic(os.path.join(directory, "checkpoint"),
                             f'model_checkpoint_path: "{TF1_PREFIX}"\n'
                             f'all_model_checkpoint_paths: "{TF1_PREFIX}"\n')
  io_utils.write_text_atomic(os.path.join(directory, "bert_config.json"),
                             config.to_json_string())


def _write_tf2(model: tf_keras.Model, report: checkpoints.LoadReport, directory: str,
               config: BertConfig) -> None:
  restored = {name: getattr(model, name) for name in report.components}
  checkpoint = tf.train.Checkpoint(model=tf.train.Checkpoint(**restored))
  tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save()
  io_utils.write_text_atomic(os.path.join(directory, "bert_config.json"),
                             config.to_json_string())


def _write_hf(model: tf_keras.Model, report: checkpoints.LoadReport, directory: str,
              config: BertConfig) -> None:
  heads = tuple(c for c in report.components if c != checkpoints.ENCODER)
  arrays = checkpoints.to_hf_arrays(checkpoints.google_arrays(model, report.restored),
                                    prefix="bert." if heads else "")
  checkpoints.write_safetensors(arrays, os.path.join(directory, "model.safetensors"))
  hf_config = config.to_hugging_face_dict()
  hf_config["architectures"] = [_HF_ARCHITECTURES[heads]]
  if "classifier" in heads:
    num_labels = model.classifier.kernel.shape[-1]
    hf_config["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    hf_config["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
  io_utils.write_text_atomic(os.path.join(directory, "config.json"),
                             json.dumps(hf_config, indent=2, sort_keys=True) + "\n")


_WRITERS = {checkpoints.TF1: _write_tf1, checkpoints.TF2: _write_tf2, checkpoints.HF: _write_hf}


def convert_checkpoint(input_checkpoint: str, output_dir: str, to: str,
                       bert_config_file: Optional[str] = None,
                       vocab_file: Optional[str] = None) -> checkpoints.LoadReport:
  """Writes `input_checkpoint` as a new directory `output_dir` in format `to` (tf1, tf2 or hf)."""
  if to not in _WRITERS:
    raise ValueError(f"--to={to!r}: expected one of {sorted(_WRITERS)}.")
  output_dir = output_dir.rstrip("/")
  if tf.io.gfile.exists(output_dir):
    raise FileExistsError(f"--output={output_dir} already exists; remove it or choose a new "
                          "directory (conversion never overwrites).")
  vocab_file, bert_config_file = checkpoints.resolve_model_files(
      input_checkpoint, vocab_file, bert_config_file)
  config = BertConfig.from_json_file(bert_config_file)
  checkpoints.check_vocab_matches_config(vocab_file, config, bert_config_file)
  model = checkpoints.model_for_checkpoint(input_checkpoint, config)
  report = checkpoints.load_init_checkpoint(model, input_checkpoint, bert_config_file)
  if report.unused:
    logging.warning("Not converted (no place for them in a %s): %s", type(model).__name__,
                    ", ".join(report.unused))
  if to == checkpoints.TF1 and config.hidden_act == "gelu_exact":
    logging.warning("hidden_act=gelu_exact (erf GELU, Hugging Face's \"gelu\") is kept in "
                    "%s/bert_config.json so bert_tf reproduces the model exactly; Google's "
                    "modeling.py only has the tanh GELU and will reject it.", output_dir)
  tmp = io_utils.temporary_path(output_dir)
  try:
    tf.io.gfile.makedirs(tmp)
    _WRITERS[to](model, report, tmp, config)
    with tf.io.gfile.GFile(vocab_file, "rb") as src, tf.io.gfile.GFile(
        os.path.join(tmp, "vocab.txt"), "wb") as dst:
      dst.write(src.read())
  except BaseException:
    tf.io.gfile.rmtree(tmp)
    raise
  tf.io.gfile.rename(tmp, output_dir)
  logging.info("Wrote %s (%s: %s) to %s.", checkpoints.FORMAT_NAMES[to], type(model).__name__,
               ", ".join(report.components), output_dir)
  return report


def _define_flags() -> None:
  flags.DEFINE_string("input", None, "Checkpoint to convert: a Google TF1 checkpoint prefix, a "
                      "bert_tf checkpoint or output directory, or a Hugging Face BERT directory.")
  flags.DEFINE_string("output", None, "New directory to write (local or gs://).")
  flags.DEFINE_enum("to", None, sorted(_WRITERS), "Output format: tf1 (Google names), tf2 "
                    "(bert_tf's trainer) or hf (Hugging Face safetensors).")
  flags.DEFINE_string("bert_config_file", None, "Config of the input; defaults to "
                      "bert_config.json or config.json beside it.")
  flags.DEFINE_string("vocab_file", None, "Vocab of the input; defaults to vocab.txt beside it.")
  flags.mark_flags_as_required(["input", "output", "to"])


def main(argv):
  with script_flags.user_errors():  # a bad flag or file: one line, no traceback
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    convert_checkpoint(f.input, f.output, f.to, f.bert_config_file, f.vocab_file)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
