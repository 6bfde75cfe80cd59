"""bert_tf.checkpoints.convert: TF1 <-> TF2 <-> Hugging Face, exact round trips, atomic output."""

import dataclasses
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy
import tensorflow as tf

from benchmarks.pretraining_data import corpus_sentences
from bert_tf import modeling, tokenization
from bert_tf.checkpoints import formats
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.checkpoints.convert import convert_checkpoint
from conftest import PROJECT_ROOT, shared_path
from tests import processes

TINY = BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=16, max_position_embeddings=16, type_vocab_size=2,
                  hidden_act="gelu_exact", layer_norm_eps=1e-7)


def _tf1_names(prefix):
  return {n for n in tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
          if not n.endswith(("/adam_m", "/adam_v", "global_step"))}


def _tf1_arrays(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in _tf1_names(prefix)}


def test_google_checkpoint_round_trip_tf1_tf2_hf_tf1_is_exact(tmp_path):
  directory = shared_path("tf1_checkpoint_tiny")
  original = _tf1_arrays(str(directory / "bert_model.ckpt"))
  convert_checkpoint(str(directory / "bert_model.ckpt"), str(tmp_path / "tf2"), "tf2")
  convert_checkpoint(str(tmp_path / "tf2"), str(tmp_path / "hf"), "hf")
  convert_checkpoint(str(tmp_path / "hf"), str(tmp_path / "tf1"), "tf1")

  assert sorted(os.listdir(tmp_path / "tf2")) == [
      "bert_config.json", "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index", "vocab.txt"]
  hf = safetensors.numpy.load_file(str(tmp_path / "hf" / "model.safetensors"))
  assert len(hf) == len(original)
  np.testing.assert_array_equal(hf["bert.encoder.layer.1.attention.self.query.weight"],
                                original["bert/encoder/layer_1/attention/self/query/kernel"].T)
  np.testing.assert_array_equal(hf["cls.seq_relationship.weight"],
                                original["cls/seq_relationship/output_weights"])
  np.testing.assert_array_equal(hf["cls.predictions.bias"], original["cls/predictions/output_bias"])
  hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert hf_config["architectures"] == ["BertForPreTraining"]
  assert hf_config["hidden_act"] == "gelu_new"  # Google's tanh GELU, in Hugging Face's words
  assert (tmp_path / "hf" / "vocab.txt").read_bytes() == (directory / "vocab.txt").read_bytes()

  prefix = str(tmp_path / "tf1" / "bert_model.ckpt")
  reader = tf.train.load_checkpoint(prefix)
  assert set(reader.get_variable_to_shape_map()) == set(original)
  for name, value in original.items():
    np.testing.assert_array_equal(reader.get_tensor(name), value, err_msg=name)
  assert tf.train.latest_checkpoint(str(tmp_path / "tf1")) == prefix
  config = BertConfig.from_json_file(str(tmp_path / "tf1" / "bert_config.json"))
  assert config == BertConfig.from_json_file(str(directory / "bert_config.json"))


def _tf2_classifier_dir(path):
  """A bert_tf output directory of a fine-tuned classifier, with its config and vocab."""
  model = modeling.build_model(modeling.BertClassifier(TINY, num_labels=3))
  tf.train.CheckpointManager(tf.train.Checkpoint(model=model, step=tf.Variable(9)), str(path),
                             max_to_keep=1).save()
  (path / "bert_config.json").write_text(TINY.to_json_string())
  (path / "vocab.txt").write_text("".join(f"w{i}\n" for i in range(TINY.vocab_size)))
  return model


def test_classifier_tf2_to_hf_and_back(tmp_path):
  model = _tf2_classifier_dir(tmp_path / "run")
  expected = formats.google_arrays(model)
  convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "hf"), "hf")
  hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert hf_config["architectures"] == ["BertForSequenceClassification"]
  assert hf_config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
  assert hf_config["hidden_act"] == "gelu" and hf_config["layer_norm_eps"] == 1e-7
  hf = safetensors.numpy.load_file(str(tmp_path / "hf" / "model.safetensors"))
  np.testing.assert_array_equal(hf["classifier.weight"], model.classifier.kernel.numpy().T)

  report = convert_checkpoint(str(tmp_path / "hf"), str(tmp_path / "back"), "tf2")
  assert report.components == ["encoder", "classifier"]
  restored = modeling.build_model(modeling.BertClassifier(TINY, num_labels=3))
  formats.load_init_checkpoint(restored, str(tmp_path / "back"))
  for name, value in formats.google_arrays(restored).items():
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  assert BertConfig.from_json_file(str(tmp_path / "back" / "bert_config.json")) == TINY


def test_encoder_only_hf_has_no_prefix_and_no_invented_heads(tmp_path):
  model = modeling.build_model(modeling.BertModel(TINY))
  tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(tmp_path / "run"),
                             max_to_keep=1).save()
  convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "hf"), "hf",
                     bert_config_file=_write(tmp_path / "cfg.json", TINY.to_json_string()),
                     vocab_file=_write(tmp_path / "v.txt", "a\nb\n"))
  names = set(safetensors.numpy.load_file(str(tmp_path / "hf" / "model.safetensors")))
  assert "embeddings.word_embeddings.weight" in names and "pooler.dense.weight" in names
  assert not any(n.startswith(("bert.", "cls.", "classifier")) for n in names)
  assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [
      "BertModel"]


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_existing_output_is_refused_and_failures_leave_nothing(tmp_path, monkeypatch):
  _tf2_classifier_dir(tmp_path / "run")
  (tmp_path / "taken").mkdir()
  with pytest.raises(ValueError, match="--output=.*taken already exists"):
    convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "taken"), "hf")

  def broken(*args):
    raise OSError("disk full")

  monkeypatch.setattr(formats, "write_safetensors", broken)
  with pytest.raises(OSError, match="disk full"):
    convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "out"), "hf")
  assert sorted(os.listdir(tmp_path)) == ["run", "taken"]
  with pytest.raises(ValueError, match="--to='onnx'"):
    convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "out"), "onnx")


def test_command_line(tmp_path):
  _tf2_classifier_dir(tmp_path / "run")
  result = subprocess.run(
      [sys.executable, "-m", "bert_tf.checkpoints.convert", f"--input={tmp_path / 'run'}",
       f"--output={tmp_path / 'tf1'}", "--to=tf1"],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  names = _tf1_names(str(tmp_path / "tf1" / "bert_model.ckpt"))
  assert "bert/encoder/layer_1/attention/output/LayerNorm/gamma" in names
  assert tf.train.load_checkpoint(str(tmp_path / "tf1" / "bert_model.ckpt")).get_tensor(
      "output_weights").shape == (3, TINY.hidden_size)


def test_command_line_errors_are_one_line(tmp_path):
  _tf2_classifier_dir(tmp_path / "run")
  (tmp_path / "taken").mkdir()
  error = processes.user_error("-m", "bert_tf.checkpoints.convert", f"--input={tmp_path / 'run'}",
                               f"--output={tmp_path / 'taken'}", "--to=hf")
  assert f"--output={tmp_path / 'taken'} already exists" in error


def test_config_that_does_not_fit_is_a_short_message_naming_input(tmp_path):
  _tf2_classifier_dir(tmp_path / "run")
  wider = dataclasses.replace(TINY, hidden_size=16, intermediate_size=32)
  config = _write(tmp_path / "wider.json", wider.to_json_string())
  with pytest.raises(ValueError) as error:
    convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "hf"), "hf", bert_config_file=config)
  message = str(error.value)
  assert message.startswith(f"--input={tmp_path / 'run'}") and "--init_checkpoint" not in message
  assert "hidden_size" in message and len(message) < 1000, message
  assert "vocab_size disagrees" not in message  # both have 12 word embeddings


def _tf2_encoder_dir(path, vocab_file):
  """A bert_tf output directory of an encoder whose word embeddings fit `vocab_file`."""
  config = dataclasses.replace(TINY, vocab_size=len(tokenization.load_vocab(str(vocab_file))))
  model = modeling.build_model(modeling.BertModel(config))
  tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(path), max_to_keep=1).save()
  (path / "bert_config.json").write_text(config.to_json_string())
  (path / "vocab.txt").write_bytes(vocab_file.read_bytes())


_CASED_ENGLISH = ["The Café in São Paulo isn't naïve: Dr. Smith's résumé cost $1,000.",
                  "NASA's JWST saw GN-z11 (z=10.6) — Über-bright!", "東京 Tokyo and Zürich"]


def _korean_texts():
  """Real Korean sentences (corpus_ko) and a review with emoji, English and digits."""
  return ["영화가 정말 재밌었어요", "BTS 콘서트 최고👍 10점 만점에 10점!!",
          *itertools.islice(corpus_sentences(shared_path("corpus_ko")), 0, 3000, 10)]


@pytest.mark.parametrize("vocab, texts, lower_case", [
    ("kcbert-base-vocab.txt", _korean_texts, False),
    ("bert-base-cased-vocab.txt", lambda: _CASED_ENGLISH, False),
    ("bert-base-uncased-vocab.txt", lambda: _CASED_ENGLISH, True),
])
def test_hf_export_tokenizes_like_full_tokenizer_in_transformers(tmp_path, vocab, texts,
                                                                 lower_case, monkeypatch):
  """transformers' AutoTokenizer on the export gives FullTokenizer's tokens and ids."""
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  import transformers  # pylint: disable=g-import-not-at-top  (a dev requirement, tokenizers only)
  vocab_file = shared_path("vocabs", vocab)
  _tf2_encoder_dir(tmp_path / "run", vocab_file)
  convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "hf"), "hf")  # lowercasing inferred
  tokenizer_config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
  assert tokenizer_config["do_lower_case"] is lower_case
  assert json.loads((tmp_path / "hf" / "special_tokens_map.json").read_text())["unk_token"] == (
      "[UNK]")
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  ours = tokenization.FullTokenizer(str(vocab_file), do_lower_case=lower_case)
  texts = texts()
  assert len(texts) > 2
  for text in texts:
    tokens = ours.tokenize(text)
    assert hf.tokenize(text) == tokens, text
    assert hf(text)["input_ids"] == ours.convert_tokens_to_ids(["[CLS]", *tokens, "[SEP]"])
  unknown = sum(ours.tokenize(text).count("[UNK]") for text in texts)
  assert unknown < len(texts)  # lowercased Korean would be mostly [UNK]


def test_hf_export_of_a_classifier_names_its_labels(tmp_path):
  _tf2_classifier_dir(tmp_path / "run")
  convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "hf"), "hf", do_lower_case=True,
                     label_names=["negative", "neutral", "positive"])
  hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert hf_config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
  assert hf_config["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}
  assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())[
      "do_lower_case"] is True
  with pytest.raises(ValueError, match="the classifier has 3 labels; give 3 distinct names"):
    convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "hf2"), "hf",
                       label_names=["negative", "positive"])
  with pytest.raises(ValueError, match="--label_names applies to --to=hf only"):
    convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "tf1"), "tf1",
                       label_names=["a", "b", "c"])
  assert not (tmp_path / "hf2").exists() and not (tmp_path / "tf1").exists()
