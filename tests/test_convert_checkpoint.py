"""convert_checkpoint: TF1 <-> TF2 <-> Hugging Face, exact round trips, atomic output."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy
import tensorflow as tf

from bert_tf import checkpoints, modeling
from bert_tf.configs import BertConfig
from bert_tf.convert_checkpoint import convert_checkpoint
from conftest import PROJECT_ROOT, shared_path

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
  expected = checkpoints.google_arrays(model)
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
  checkpoints.load_init_checkpoint(restored, str(tmp_path / "back"))
  for name, value in checkpoints.google_arrays(restored).items():
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
  with pytest.raises(FileExistsError, match="--output=.*taken already exists"):
    convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "taken"), "hf")

  def broken(*args):
    raise OSError("disk full")

  monkeypatch.setattr(checkpoints, "write_safetensors", broken)
  with pytest.raises(OSError, match="disk full"):
    convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "out"), "hf")
  assert sorted(os.listdir(tmp_path)) == ["run", "taken"]
  with pytest.raises(ValueError, match="--to='onnx'"):
    convert_checkpoint(str(tmp_path / "run"), str(tmp_path / "out"), "onnx")


def test_command_line(tmp_path):
  _tf2_classifier_dir(tmp_path / "run")
  result = subprocess.run(
      [sys.executable, "-m", "bert_tf.convert_checkpoint", f"--input={tmp_path / 'run'}",
       f"--output={tmp_path / 'tf1'}", "--to=tf1"],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  names = _tf1_names(str(tmp_path / "tf1" / "bert_model.ckpt"))
  assert "bert/encoder/layer_1/attention/output/LayerNorm/gamma" in names
  assert tf.train.load_checkpoint(str(tmp_path / "tf1" / "bert_model.ckpt")).get_tensor(
      "output_weights").shape == (3, TINY.hidden_size)
