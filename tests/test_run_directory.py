"""Run directories: portable records, and one rule for the checkpoint a directory means."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_tf import modeling
from bert_tf.checkpoints import configs, formats, model_files
from bert_tf.checkpoints.convert import convert_checkpoint
from bert_tf.io import run_directory
from bert_tf.serving import export, extract_features
from bert_tf.training import best_checkpoint
from conftest import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "sample_data" / "classifier"
TINY = configs.BertConfig(
    vocab_size=configs.BertConfig.from_json_file(str(SAMPLE / "bert_config.json")).vocab_size,
    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    max_position_embeddings=32)
STRATEGY = tf.distribute.get_strategy()


def _classifier(seed: int) -> tf_keras.Model:
  tf_keras.utils.set_random_seed(seed)
  return modeling.build_model(modeling.BertClassifier(TINY, num_labels=2))


def _make_run(out: str) -> dict:
  """A run directory as a --keep_best_by run leaves it: the best model kept at step 1, the
  trainer's latest checkpoint at step 3 with other weights, the model's files, the run's flags."""
  os.makedirs(out)
  shutil.copy(SAMPLE / "vocab.txt", os.path.join(out, "vocab.txt"))
  with open(os.path.join(out, "bert_config.json"), "w", encoding="utf-8") as f:
    f.write(TINY.to_json_string())
  with open(os.path.join(out, "run_flags.json"), "w", encoding="utf-8") as f:
    json.dump({"task_name": "cola", "max_seq_length": 16, "do_lower_case": False}, f)
  with open(os.path.join(out, "training_state.json"), "w", encoding="utf-8") as f:
    json.dump({"history": [], "extras": {"label_list": ["0", "1"]}}, f)
  best, last = _classifier(1), _classifier(2)
  best_checkpoint.BestCheckpointKeeper(STRATEGY, out, "loss", False).offer(best, 1, 0.5)
  tf.train.CheckpointManager(tf.train.Checkpoint(model=last), out, max_to_keep=2).save(
      checkpoint_number=3)
  return {"best": best.classifier.kernel.numpy(), "last": last.classifier.kernel.numpy()}


def _kernel(prefix: str) -> np.ndarray:
  model = _classifier(7)
  formats.load_init_checkpoint(model, prefix)
  return model.classifier.kernel.numpy()


def test_a_copied_or_moved_run_directory_means_its_own_files(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  weights = _make_run(os.path.join("runs", "out"))  # a relative --output_dir, as typed
  recorded = json.loads((tmp_path / "runs" / "out" / "best" / "best.json").read_text())
  assert recorded["checkpoint"] == "best/ckpt-1"
  for name in ("best/best.json", "checkpoint"):  # nothing names where the run was made
    text = (tmp_path / "runs" / "out" / name).read_text()
    assert "runs" not in text and str(tmp_path) not in text, text

  shutil.copytree(os.path.join("runs", "out"), "copy")
  # The original's best model changes after the copy: the copy must not see it.
  tf.train.Checkpoint(model=_classifier(5)).write(os.path.join("runs", "out", "best", "ckpt-1"))
  for tool in (lambda: formats.detect_format("copy")[1],
               lambda: export.read_run("copy").checkpoint,
               lambda: model_files.resolve("copy", None, None, None).init_checkpoint):
    assert os.path.abspath(formats.detect_format(tool())[1]) == str(
        tmp_path / "copy" / "best" / "ckpt-1")
  np.testing.assert_array_equal(_kernel("copy"), weights["best"])
  os.rename("runs", "moved")  # the original goes away: the copy still works
  np.testing.assert_array_equal(_kernel("copy"), weights["best"])
  assert export.read_run("copy").bert_config_file == os.path.join("copy", "bert_config.json")


def test_every_tool_means_the_best_model_of_a_run_directory(tmp_path, caplog):
  out = str(tmp_path / "out")
  weights = _make_run(out)
  best, last = os.path.join(out, "best", "ckpt-1"), os.path.join(out, "ckpt-3")
  assert not np.array_equal(weights["best"], weights["last"])
  caplog.set_level(logging.INFO)
  for given in (out, out + "/", os.path.join(out, "best")):
    assert formats.detect_format(given) == (formats.TF2, best)
    files = model_files.resolve(given, None, None, None)  # best/ alone: files of the run above
    assert (files.vocab_file, files.config_file) == (os.path.join(out, "vocab.txt"),
                                                     os.path.join(out, "bert_config.json"))
  assert f"{out} means the best model by loss 0.5000 at step 1: {best}" in caplog.text
  assert export.read_run(out).checkpoint == best
  # checkpoints.convert --input=OUTPUT_DIR and --input=OUTPUT_DIR/best convert the best model.
  for name, given in (("from_dir", out), ("from_best", os.path.join(out, "best"))):
    convert_checkpoint(given, str(tmp_path / name), "tf2")
    np.testing.assert_array_equal(_kernel(str(tmp_path / name)), weights["best"])
  # extract_features --init_checkpoint=OUTPUT_DIR: the best model's activations.
  text = tmp_path / "input.txt"
  text.write_text("안녕하세요\n")
  features = {}
  for name, given in (("dir", out), ("best", best), ("last", last)):
    output = tmp_path / f"{name}.jsonl"
    extract_features.extract_features(str(text), str(output), given, layers="-1",
                                      max_seq_length=8)
    features[name] = output.read_text()
  assert features["dir"] == features["best"] != features["last"]


def test_a_directory_without_a_best_model_means_its_latest_checkpoint(tmp_path):
  model = _classifier(1)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(tmp_path), 2)
  manager.save(checkpoint_number=4)
  chosen = run_directory.model_checkpoint(str(tmp_path))
  assert (chosen.prefix, chosen.best) == (str(tmp_path / "ckpt-4"), None)
  assert chosen.description == "the latest checkpoint"
  assert run_directory.model_checkpoint(str(tmp_path / "empty")) is None


@pytest.mark.parametrize("recorded", ["/elsewhere/out/best/ckpt-1", "../out/best/ckpt-1",
                                      "gs://bucket/run/best/ckpt-1"])
def test_older_absolute_or_typed_records_are_read_inside_the_directory(tmp_path, caplog,
                                                                         recorded):
  """Runs before portable records wrote best.json's path as typed, local or gs://; the copy
  reads the checkpoint of that name in its own best/, and says so."""
  weights = _make_run(str(tmp_path / "out"))
  best_file = tmp_path / "out" / "best" / "best.json"
  best_file.write_text(json.dumps(dict(json.loads(best_file.read_text()), checkpoint=recorded)))
  caplog.set_level(logging.INFO)
  best = run_directory.read_best(str(tmp_path / "out"))
  assert best["checkpoint"] == str(tmp_path / "out" / "best" / "ckpt-1")
  assert f"records {recorded} (a path as an older run typed it)" in caplog.text
  np.testing.assert_array_equal(_kernel(str(tmp_path / "out")), weights["best"])
  best_file.write_text(json.dumps(dict(json.loads(best_file.read_text()), checkpoint="ckpt-9")))
  with pytest.raises(FileNotFoundError, match=r"names ckpt-9, but .*ckpt-9.index does not exist"):
    run_directory.read_best(str(tmp_path / "out"))


def test_an_absolute_checkpoint_state_file_is_read_and_rewritten_by_name(tmp_path):
  """TensorFlow's "checkpoint" file may hold absolute paths (TF1 savers, other tools): a copy
  would resume from, and delete checkpoints in, the original."""
  original = tmp_path / "original"
  _make_run(str(original))
  state = (original / "checkpoint").read_text()
  (original / "checkpoint").write_text(state.replace('"ckpt-3"', f'"{original}/ckpt-3"'))
  shutil.copytree(original, tmp_path / "copy")
  copy = str(tmp_path / "copy")
  assert tf.train.latest_checkpoint(copy) == str(original / "ckpt-3")  # TensorFlow's reading
  assert run_directory.latest_checkpoint(copy) == os.path.join(copy, "ckpt-3")
  run_directory.make_checkpoint_state_relative(copy)
  assert str(original) not in (tmp_path / "copy" / "checkpoint").read_text()
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=_classifier(1)), copy, 2)
  assert manager.checkpoints == [os.path.join(copy, "ckpt-3")]


def test_outputs_of_other_weights_are_set_aside_not_overwritten(tmp_path, caplog):
  run = tmp_path / "out"
  out = str(run)
  _make_run(out)
  last = run_directory.weights_source(out, os.path.join(out, "ckpt-3"))
  best = run_directory.weights_source(out, os.path.join(out, "best", "ckpt-1"))
  assert last["checkpoint"] == "ckpt-3" and best["checkpoint"] == "best/ckpt-1"
  (run / "predictions.json").write_text('{"q": "from step 3"}')
  run_directory.record_outputs(out, ["predictions.json"], last)
  assert run_directory.set_aside_outputs(out, last) == []  # same weights: rewritten in place
  assert run_directory.set_aside_outputs(out, best) == ["predictions.json"]
  kept = run / "previous_outputs" / "ckpt-3" / "predictions.json"
  assert kept.read_text() == '{"q": "from step 3"}' and not (run / "predictions.json").exists()
  assert "came from ckpt-3; this run uses best/ckpt-1" in caplog.text
  # A retrained checkpoint of the same name is other weights too.
  tf.train.Checkpoint(model=_classifier(9)).write(os.path.join(out, "ckpt-3"))
  assert run_directory.weights_source(out, os.path.join(out, "ckpt-3")) != last


def test_a_copied_run_with_an_absolute_state_file_resumes_from_its_own_checkpoint(tmp_path):
  from tests.test_trainer import _make_trainer, _write_records  # pylint: disable=import-outside-toplevel
  records = tmp_path / "train.tfrecord"
  _write_records(records)
  original = tmp_path / "original"
  run = _make_trainer(STRATEGY, original, records)
  run.train(stop_at_step=2)
  weights = [v.numpy() for v in run.model.trainable_variables]
  state = (original / "checkpoint").read_text()
  (original / "checkpoint").write_text(state.replace('"ckpt-2"', f'"{original}/ckpt-2"'))
  shutil.copytree(original, tmp_path / "copy")
  original.rename(tmp_path / "gone")
  resumed = _make_trainer(STRATEGY, tmp_path / "copy", records)
  assert resumed.step == 2 and resumed.manager.checkpoints == [str(tmp_path / "copy" / "ckpt-2")]
  for got, want in zip(resumed.model.trainable_variables, weights):
    np.testing.assert_array_equal(got.numpy(), want)
