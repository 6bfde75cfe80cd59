"""BertConfig: Google and Hugging Face formats, activations by origin, bundled configs."""

import json
import pathlib

import pytest

from bert_tf.checkpoints import configs

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"


def _write(tmp_path, values):
  path = tmp_path / "config.json"
  path.write_text(json.dumps(values))
  return str(path)


def test_google_gelu_is_tanh_and_unknown_keys_are_ignored(tmp_path):
  config = configs.BertConfig.from_json_file(_write(tmp_path, dict(
      vocab_size=99, hidden_size=8, num_attention_heads=2, hidden_act="gelu",
      pooler_fc_size=768, directionality="bidi")))
  assert config.hidden_act == "gelu"
  assert config.layer_norm_eps == 1e-12
  assert config.vocab_size == 99


def test_hugging_face_gelu_is_exact_and_eps_is_read(tmp_path):
  config = configs.BertConfig.from_json_file(_write(tmp_path, dict(
      model_type="bert", vocab_size=99, hidden_size=8, num_attention_heads=2,
      hidden_act="gelu", layer_norm_eps=1e-5)))
  assert config.hidden_act == "gelu_exact"
  assert config.layer_norm_eps == 1e-5
  new_gelu = configs.BertConfig.from_dict(dict(vocab_size=9, hidden_act="gelu_new"),
                                          origin=configs.HUGGING_FACE)
  assert new_gelu.hidden_act == "gelu"


def test_our_format_round_trips_exactly(tmp_path):
  config = configs.BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2,
                              hidden_act="gelu_exact", layer_norm_eps=1e-6)
  path = tmp_path / "bert_config.json"
  path.write_text(config.to_json_string())
  assert configs.BertConfig.from_json_file(str(path)) == config


def test_hugging_face_dict_keeps_numerics():
  for ours, theirs in [("gelu", "gelu_new"), ("gelu_exact", "gelu")]:
    config = configs.BertConfig(vocab_size=10, hidden_act=ours)
    values = config.to_hugging_face_dict()
    assert values["hidden_act"] == theirs
    assert configs.BertConfig.from_dict(values, configs.detect_origin(values)) == config


def test_bad_config_errors_name_the_file(tmp_path):
  with pytest.raises(ValueError, match="config.json.*hidden_act"):
    configs.BertConfig.from_json_file(_write(tmp_path, dict(vocab_size=9, hidden_act="gelux")))
  with pytest.raises(ValueError, match="config.json.*vocab_size"):
    configs.BertConfig.from_json_file(_write(tmp_path, dict(hidden_size=8)))
  with pytest.raises(ValueError, match=r"config.json: vocab_size='30522' must be a positive "
                     "integer"):
    configs.BertConfig.from_json_file(_write(tmp_path, dict(vocab_size="30522")))
  with pytest.raises(ValueError, match=r"config.json: num_hidden_layers=0 must be a positive"):
    configs.BertConfig.from_json_file(_write(tmp_path, dict(vocab_size=9, num_hidden_layers=0)))
  with pytest.raises(ValueError, match=r"config.json: hidden_dropout_prob=1.5 must be a number "
                     r"in \[0, 1\)"):
    configs.BertConfig.from_json_file(_write(tmp_path, dict(vocab_size=9,
                                                            hidden_dropout_prob=1.5)))
  (tmp_path / "broken.json").write_text("{")
  with pytest.raises(ValueError, match="broken.json: not valid JSON"):
    configs.BertConfig.from_json_file(str(tmp_path / "broken.json"))


@pytest.mark.parametrize("name, vocab_size, layers, max_positions", [
    ("bert_base_uncased", 30522, 12, 512), ("bert_base_cased", 28996, 12, 512),
    ("bert_large", 30522, 24, 512), ("multi_cased_base", 119547, 12, 512),
    ("kcbert_base", 30000, 12, 300), ("kcbert_large", 30000, 24, 300),
    ("bert_mini", 30522, 4, 512), ("bert_tiny", 30522, 2, 512)])
def test_bundled_configs(name, vocab_size, layers, max_positions):
  config = configs.BertConfig.from_json_file(str(CONFIG_DIR / f"{name}.json"))
  assert (config.vocab_size, config.num_hidden_layers, config.max_position_embeddings) == (
      vocab_size, layers, max_positions)
