r"""Converts a BERT checkpoint between Google TF1, bert_tf TF2 and Hugging Face formats.

  python -m bert_tf.checkpoints.convert --input=uncased_L-12_H-768_A-12/bert_model.ckpt \
      --output=/tmp/bert_hf --to=hf

--input is anything --init_checkpoint accepts (see checkpoints/formats.py); --vocab_file and
--bert_config_file default to the files beside it. --output is a new directory holding
  tf1: bert_model.ckpt.{index,data-*} with Google's variable names, bert_config.json, vocab.txt;
  tf2: a tf.train.Checkpoint(model=...) as the trainer writes, bert_config.json, vocab.txt;
  hf:  model.safetensors with Hugging Face's names, config.json, vocab.txt, and
       tokenizer_config.json + special_tokens_map.json, so that transformers' AutoTokenizer
       lowercases exactly when the model was trained so (--do_lower_case, inferred from the vocab
       when not given: without the files transformers lowercases, which turns Hangul into jamo
       and cased words into [UNK]); a classifier's config.json names its labels (--label_names).
Only the weights the input holds are written (the encoder and whichever heads it has); nothing is
invented. The directory is written under a temporary name and renamed when complete.
"""

import json
import os
from typing import Dict, Optional, Sequence

import tensorflow as tf
import tf_keras
from absl import app, flags, logging

from bert_tf import tokenization
from bert_tf.checkpoints import formats
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.cli import flags as cli_flags
from bert_tf.io import files as io_files

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


def _write_tf1(model: tf_keras.Model, report: formats.LoadReport, directory: str,
               config: BertConfig) -> None:
  prefix = os.path.join(directory, TF1_PREFIX)
  formats.write_tf1_checkpoint(formats.google_arrays(model, report.restored), prefix)
  io_files.write_text_atomic(os.path.join(directory, "checkpoint"),
                             f'model_checkpoint_path: "{TF1_PREFIX}"\n'
                             f'all_model_checkpoint_paths: "{TF1_PREFIX}"\n')
  io_files.write_text_atomic(os.path.join(directory, "bert_config.json"),
                             config.to_json_string())


def _write_tf2(model: tf_keras.Model, report: formats.LoadReport, directory: str,
               config: BertConfig) -> None:
  restored = {name: getattr(model, name) for name in report.components}
  checkpoint = tf.train.Checkpoint(model=tf.train.Checkpoint(**restored))
  tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save()
  io_files.write_text_atomic(os.path.join(directory, "bert_config.json"),
                             config.to_json_string())


def _write_hf(model: tf_keras.Model, report: formats.LoadReport, directory: str,
              config: BertConfig, label_names: Optional[Sequence[str]]) -> None:
  heads = tuple(c for c in report.components if c != formats.ENCODER)
  arrays = formats.to_hf_arrays(formats.google_arrays(model, report.restored),
                                prefix="bert." if heads else "")
  formats.write_safetensors(arrays, os.path.join(directory, "model.safetensors"))
  hf_config = config.to_hugging_face_dict()
  hf_config["architectures"] = [_HF_ARCHITECTURES[heads]]
  if "classifier" in heads:
    names = label_names or [f"LABEL_{i}" for i in range(model.classifier.kernel.shape[-1])]
    hf_config["id2label"] = {str(i): name for i, name in enumerate(names)}
    hf_config["label2id"] = {name: i for i, name in enumerate(names)}
  io_files.write_text_atomic(os.path.join(directory, "config.json"),
                             json.dumps(hf_config, indent=2, sort_keys=True) + "\n")


# Hugging Face's names for BERT's special tokens.
_HF_SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                      "cls_token": "[CLS]", "mask_token": "[MASK]"}


def hf_special_tokens(vocab_file: str) -> Dict[str, Optional[str]]:
  """special_tokens_map.json: BERT's special tokens, null for one the vocab lacks (else
  transformers would add it with a new id past the word embeddings)."""
  vocab = tokenization.load_vocab(vocab_file)
  return {key: token if token in vocab else None for key, token in _HF_SPECIAL_TOKENS.items()}


def write_hf_tokenizer_files(directory: str, vocab_file: str, do_lower_case: bool,
                             config: BertConfig) -> None:
  """tokenizer_config.json and special_tokens_map.json, so that transformers' AutoTokenizer
  tokenizes as FullTokenizer(vocab_file, do_lower_case) does. Without them it lowercases and
  strips accents (NFD), which turns Hangul syllables into jamo and cased words into [UNK]."""
  special_tokens = hf_special_tokens(vocab_file)
  # strip_accents is left out: unset, transformers strips accents exactly when it lowercases, as
  # google-research's BasicTokenizer does; CJK ideographs are split off (tokenize_chinese_chars).
  tokenizer_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": do_lower_case,
                      "tokenize_chinese_chars": True,
                      "model_max_length": config.max_position_embeddings, **special_tokens}
  for name, contents in (("tokenizer_config.json", tokenizer_config),
                         ("special_tokens_map.json", special_tokens)):
    io_files.write_text_atomic(os.path.join(directory, name),
                               json.dumps(contents, indent=2, sort_keys=True) + "\n")


FORMATS = (formats.TF1, formats.TF2, formats.HF)


def _check_label_names(model: tf_keras.Model, label_names: Sequence[str], to: str) -> None:
  """Label names are for a classifier's Hugging Face config: one distinct name per logit."""
  if to != formats.HF:
    raise ValueError(f"--label_names applies to --to=hf only (config.json's id2label), not "
                     f"--to={to}.")
  classifier = getattr(model, "classifier", None)
  if classifier is None:
    raise ValueError(f"--label_names={','.join(label_names)}: the input has no classifier head "
                     f"(it converts to a {type(model).__name__}); leave the flag out.")
  num_labels = classifier.kernel.shape[-1]
  if len(label_names) != num_labels or len(set(label_names)) != num_labels:
    raise ValueError(f"--label_names={','.join(label_names)}: the classifier has {num_labels} "
                     f"labels; give {num_labels} distinct names, in label-id order (run_classifier"
                     "'s --label_list order).")


def convert_checkpoint(input_checkpoint: str, output_dir: str, to: str,
                       bert_config_file: Optional[str] = None,
                       vocab_file: Optional[str] = None, do_lower_case: Optional[bool] = None,
                       label_names: Optional[Sequence[str]] = None) -> formats.LoadReport:
  """Writes `input_checkpoint` as a new directory `output_dir` in format `to` (tf1, tf2 or hf).

  For hf, `do_lower_case` (the model's training lowercasing; None: inferred from the vocab) goes
  into tokenizer_config.json, and `label_names` (a classifier's labels by id) into config.json.
  Everything is checked before the model is built.
  """
  if to not in FORMATS:
    raise ValueError(f"--to={to!r}: expected one of {', '.join(FORMATS)}.")
  output_dir = output_dir.rstrip("/")
  if tf.io.gfile.exists(output_dir):
    raise ValueError(f"--output={output_dir} already exists; remove it or choose a new "
                     "directory (conversion never overwrites).")
  vocab_file, bert_config_file = formats.resolve_model_files(
      input_checkpoint, vocab_file, bert_config_file, flag="input")
  config = BertConfig.from_json_file(bert_config_file)
  formats.check_vocab_matches_config(vocab_file, config, bert_config_file)
  formats.check_checkpoint_matches_config(input_checkpoint, config, bert_config_file,
                                          flag="input")
  if to == formats.HF:
    do_lower_case = tokenization.resolve_do_lower_case(vocab_file, do_lower_case,
                                                       input_checkpoint, flag="input")
  model = formats.model_for_checkpoint(input_checkpoint, config, flag="input")
  if label_names:
    _check_label_names(model, label_names, to)
  report = formats.load_init_checkpoint(model, input_checkpoint, bert_config_file,
                                        flag="input")
  if report.unused:
    logging.warning("Not converted (no place for them in a %s): %s", type(model).__name__,
                    ", ".join(report.unused))
  if to == formats.TF1 and config.hidden_act == "gelu_exact":
    logging.warning("hidden_act=gelu_exact (erf GELU, Hugging Face's \"gelu\") is kept in "
                    "%s/bert_config.json so bert_tf reproduces the model exactly; Google's "
                    "modeling.py only has the tanh GELU and will reject it.", output_dir)
  tmp = io_files.temporary_path(output_dir)
  try:
    tf.io.gfile.makedirs(tmp)
    if to == formats.HF:
      _write_hf(model, report, tmp, config, label_names)
      write_hf_tokenizer_files(tmp, vocab_file, do_lower_case, config)
    elif to == formats.TF1:
      _write_tf1(model, report, tmp, config)
    else:
      _write_tf2(model, report, tmp, config)
    with tf.io.gfile.GFile(vocab_file, "rb") as src, tf.io.gfile.GFile(
        os.path.join(tmp, "vocab.txt"), "wb") as dst:
      dst.write(src.read())
  except BaseException:
    tf.io.gfile.rmtree(tmp)
    raise
  tf.io.gfile.rename(tmp, output_dir)
  logging.info("Wrote %s (%s: %s) to %s.", formats.FORMAT_NAMES[to], type(model).__name__,
               ", ".join(report.components), output_dir)
  return report


def _define_flags() -> None:
  flags.DEFINE_string("input", None, "Checkpoint to convert: a Google TF1 checkpoint prefix, a "
                      "bert_tf checkpoint or output directory, or a Hugging Face BERT directory.")
  flags.DEFINE_string("output", None, "New directory to write (local or gs://).")
  flags.DEFINE_enum("to", None, list(FORMATS), "Output format: tf1 (Google names), tf2 "
                    "(bert_tf's trainer) or hf (Hugging Face safetensors).")
  flags.DEFINE_string("bert_config_file", None, "Config of the input; defaults to "
                      "bert_config.json or config.json beside it.")
  flags.DEFINE_string("vocab_file", None, "Vocab of the input; defaults to vocab.txt beside it.")
  flags.DEFINE_bool("do_lower_case", None, "hf: whether the model was trained on lowercased "
                    "text, for tokenizer_config.json. When not given, it is inferred from the "
                    "vocab (cased entries mean False); a value that contradicts the vocab is an "
                    "error.")
  flags.DEFINE_list("label_names", None, "hf, a classifier: its label names in id order (e.g. "
                    "negative,positive), for config.json's id2label; default LABEL_0, LABEL_1...")
  flags.mark_flags_as_required(["input", "output", "to"])


def main(argv):
  with cli_flags.user_errors(argv):  # a bad flag or file: one line, no traceback
    f = flags.FLAGS
    convert_checkpoint(f.input, f.output, f.to, f.bert_config_file, f.vocab_file,
                       f.do_lower_case, f.label_names)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
