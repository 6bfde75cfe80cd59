"""extract_features: Google's input/feature/JSON formats, end to end on real checkpoints."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import modeling, tokenization
from bert_tf.checkpoints import formats
from bert_tf.checkpoints.configs import BertConfig
from bert_tf.serving import extract_features as ef
from conftest import PROJECT_ROOT, shared_path
from test_formats import GOLDEN, TINY, _write_hf, minilm_dir
from tests import processes


@pytest.fixture
def tokenizer(tmp_path):
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c", "d", "e", "f", "g"]
  (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
  return tokenization.FullTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True)


def test_read_examples_splits_pairs(tmp_path):
  (tmp_path / "in.txt").write_text("one text\nleft ||| right side\n\n  a|||b  \r\n")
  examples = ef.read_examples(str(tmp_path / "in.txt"))
  assert [(e.unique_id, e.text_a, e.text_b) for e in examples] == [
      (0, "one text", None), (1, "left", "right side"), (2, "", None), (3, "a|||b", None)]


def test_features_truncate_like_google(tokenizer):
  examples = [ef.InputExample(0, "a b c d e f g"), ef.InputExample(1, "a b c d e", "f g"),
              ef.InputExample(2, "a", "b c d e f g")]
  features = ef.convert_examples_to_features(examples, 7, tokenizer)
  assert features[0].tokens == ["[CLS]", "a", "b", "c", "d", "e", "[SEP]"]
  assert features[1].tokens == ["[CLS]", "a", "b", "[SEP]", "f", "g", "[SEP]"]
  assert features[1].input_type_ids == [0, 0, 0, 0, 1, 1, 1]
  assert features[2].tokens == ["[CLS]", "a", "[SEP]", "b", "c", "d", "[SEP]"]
  short = ef.convert_examples_to_features([ef.InputExample(5, "a", "b")], 8, tokenizer)[0]
  assert short.input_ids == [2, 4, 3, 5, 3, 0, 0, 0]
  assert short.input_mask == [1, 1, 1, 1, 1, 0, 0, 0]
  assert short.input_type_ids == [0, 0, 0, 1, 1, 0, 0, 0]


def test_parse_layers():
  assert ef.parse_layers("-1,-2,0", 2) == [-1, -2, 0]
  with pytest.raises(ValueError, match=r"--layers='-3': \[-3\] out of range.*-2\.\.1"):
    ef.parse_layers("-3", 2)
  with pytest.raises(ValueError, match="comma-separated integers"):
    ef.parse_layers("last", 2)


def _tiny_checkpoint():
  directory = shared_path("tf1_checkpoint_tiny")
  return str(directory / "bert_model.ckpt"), BertConfig.from_json_file(
      str(directory / "bert_config.json"))


def test_end_to_end_on_google_tiny_checkpoint(tmp_path):
  init_checkpoint, config = _tiny_checkpoint()
  (tmp_path / "in.txt").write_text("All work and no play\nmakes Jack ||| a dull boy\n")
  output = tmp_path / "out" / "features.jsonl"
  count = ef.extract_features(str(tmp_path / "in.txt"), str(output), init_checkpoint,
                              layers="-1,0", max_seq_length=12, batch_size=1)
  assert count == 2 and os.listdir(output.parent) == ["features.jsonl"]
  lines = output.read_text().splitlines()
  records = [json.loads(line) for line in lines]
  assert lines[0].startswith('{"linex_index": 0, "features": [{"token": "[CLS]", "layers": '
                             '[{"index": -1, "values": [')
  assert [r["linex_index"] for r in records] == [0, 1]
  tokens = [[f["token"] for f in r["features"]] for r in records]
  assert tokens == [["[CLS]", "all", "work", "and", "no", "play", "[SEP]"],
                    ["[CLS]", "makes", "jack", "[SEP]", "a", "dull", "boy", "[SEP]"]]

  model = modeling.build_model(modeling.BertModel(config))
  formats.load_init_checkpoint(model, init_checkpoint)
  ids = [[2, 10, 11, 3, 12, 13, 14, 3, 0, 0, 0, 0]]
  outputs = model(dict(input_ids=tf.constant(ids), input_mask=tf.constant([[1] * 8 + [0] * 4]),
                       segment_ids=tf.constant([[0] * 4 + [1] * 4 + [0] * 4])))
  for position, feature in enumerate(records[1]["features"]):
    assert [layer["index"] for layer in feature["layers"]] == [-1, 0]
    for layer, index in zip(feature["layers"], (-1, 0)):
      expected = outputs["all_layers"][index].numpy()[0, position]
      assert all(v == round(v, 6) for v in layer["values"])
      np.testing.assert_allclose(layer["values"], expected, atol=2e-6)


def test_bad_arguments_fail_early(tmp_path):
  init_checkpoint, _ = _tiny_checkpoint()
  (tmp_path / "in.txt").write_text("a\n")
  with pytest.raises(ValueError, match="--max_seq_length=64.*max_position_embeddings=16"):
    ef.extract_features(str(tmp_path / "in.txt"), str(tmp_path / "o"), init_checkpoint,
                        max_seq_length=64)
  with pytest.raises(ValueError, match="--layers"):
    ef.extract_features(str(tmp_path / "in.txt"), str(tmp_path / "o"), init_checkpoint,
                        layers="-5", max_seq_length=8)
  with pytest.raises(ValueError, match="--init_checkpoint is required"):
    ef.extract_features(str(tmp_path / "in.txt"), str(tmp_path / "o"), None)
  assert not (tmp_path / "o").exists()


def test_input_and_output_files_are_checked_before_the_model_is_loaded(tmp_path, monkeypatch):
  init_checkpoint, _ = _tiny_checkpoint()
  (tmp_path / "in.txt").write_text("jack\n")
  monkeypatch.setattr(formats, "load_init_checkpoint", None)  # never reached
  with pytest.raises(ValueError, match=r"--input_file=.*missing.txt: nothing exists"):
    ef.extract_features(str(tmp_path / "missing.txt"), str(tmp_path / "o"), init_checkpoint,
                        max_seq_length=8, layers="-1")
  with pytest.raises(ValueError, match=r"--output_file=.*in.txt is not writable"):
    ef.extract_features(str(tmp_path / "in.txt"), str(tmp_path / "in.txt" / "o"),
                        init_checkpoint, max_seq_length=8, layers="-1")
  with pytest.raises(ValueError, match=rf"--output_file={tmp_path} is a directory"):
    ef.extract_features(str(tmp_path / "in.txt"), str(tmp_path), init_checkpoint,
                        max_seq_length=8, layers="-1")


def test_command_line_user_error_is_one_line(tmp_path):
  init_checkpoint, _ = _tiny_checkpoint()
  error = processes.user_error(
      "-m", "bert_tf.serving.extract_features", f"--input_file={tmp_path / 'missing.txt'}",
      f"--output_file={tmp_path / 'out.jsonl'}", f"--init_checkpoint={init_checkpoint}",
      "--layers=-1", "--max_seq_length=8")
  assert f"--input_file={tmp_path / 'missing.txt'}: nothing exists at this path" in error


def test_files_that_do_not_fit_fail_before_any_features(tmp_path, monkeypatch):
  """A checkpoint that contradicts the config, or a vocab without BERT's special tokens, is
  refused before the input is read or a model built."""
  hf = _write_hf(tmp_path / "hf", formats.to_hf_arrays(formats.google_arrays(
      modeling.build_model(modeling.BertModel(TINY)))))
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghij")
  (tmp_path / "hf" / "vocab.txt").write_text("\n".join(vocab) + "\n")
  wider = tmp_path / "wider.json"
  wider.write_text(BertConfig(**{**TINY.to_dict(), "hidden_size": 12,
                                 "num_attention_heads": 3}).to_json_string())

  def read_examples(input_file):
    raise AssertionError(f"{input_file} was read before the files were checked")

  monkeypatch.setattr(ef, "read_examples", read_examples)
  with pytest.raises(ValueError, match=rf"--init_checkpoint={hf} \(Hugging Face BERT directory\) "
                     rf"does not match {wider}: .*word_embeddings is \[15, 8\] there but "
                     r"vocab_size, hidden_size make it \[15, 12\]"):
    ef.extract_features("in.txt", str(tmp_path / "o"), hf, bert_config_file=str(wider))
  (tmp_path / "hf" / "vocab.txt").write_text("\n".join(vocab[:2] + vocab[3:]) + "\n")
  with pytest.raises(ValueError, match=r"vocab.txt lacks \[CLS\]"):
    ef.extract_features("in.txt", str(tmp_path / "o"), hf)
  assert not (tmp_path / "o").exists()


def test_minilm_features_match_transformers_golden_values(tmp_path):
  directory = minilm_dir()
  with open(GOLDEN, encoding="utf-8") as f:
    golden = json.load(f)
  lines = [e["text_a"] + (f" ||| {e['text_b']}" if e["text_b"] else "")
           for e in golden["examples"]]
  (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
  ef.extract_features(str(tmp_path / "in.txt"), str(tmp_path / "out.jsonl"), directory,
                      layers="-1", max_seq_length=golden["max_seq_length"], batch_size=3)
  records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
  for record, example in zip(records, golden["examples"], strict=True):
    assert [f["token"] for f in record["features"]] == example["tokens"]
    values = np.array([f["layers"][0]["values"] for f in record["features"]])
    np.testing.assert_allclose(values, example["last_layer"], atol=1e-4)


def test_command_line(tmp_path):
  init_checkpoint, _ = _tiny_checkpoint()
  (tmp_path / "in.txt").write_text("jack\n")
  result = subprocess.run(
      [sys.executable, "-m", "bert_tf.serving.extract_features",
       f"--input_file={tmp_path / 'in.txt'}", f"--output_file={tmp_path / 'out.jsonl'}",
       f"--init_checkpoint={init_checkpoint}",
       "--layers=-2", "--max_seq_length=8", "--batch_size=4"],
      cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  record = json.loads((tmp_path / "out.jsonl").read_text())
  assert [f["token"] for f in record["features"]] == ["[CLS]", "jack", "[SEP]"]
  assert record["features"][1]["layers"][0]["index"] == -2
  assert len(record["features"][1]["layers"][0]["values"]) == 4
