"""The best-checkpoint keeper every task uses: direction, atomic commit, clean-up, resume."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_tf.io import files as io_files
from bert_tf.training import best_checkpoint

STRATEGY = tf.distribute.get_strategy()


def _model(value: float) -> tf_keras.Model:
  model = tf_keras.Sequential([tf_keras.layers.Dense(2, kernel_initializer="zeros")])
  model.build((None, 3))
  model.layers[0].kernel.assign(np.full((3, 2), value, np.float32))
  return model


def _kernel(checkpoint: str) -> np.ndarray:
  reader = tf.train.load_checkpoint(checkpoint)
  name = next(n for n in reader.get_variable_to_shape_map() if "kernel" in n)
  return reader.get_tensor(name)


@pytest.mark.parametrize("higher, values, best_step", [
    (True, [0.2, 0.5, 0.4], 2), (False, [0.2, 0.5, 0.1], 3)])
def test_keeps_the_best_value_in_the_metrics_direction(tmp_path, higher, values, best_step):
  keeper = best_checkpoint.BestCheckpointKeeper(STRATEGY, str(tmp_path), "m", higher)
  kept = [keeper.offer(_model(step), step, value) for step, value in enumerate(values, 1)]
  assert kept == [True, values[1] > values[0] if higher else values[1] < values[0],
                  (values[2] > max(values[:2])) if higher else (values[2] < min(values[:2]))]
  best = best_checkpoint.read_best(str(tmp_path))
  assert best == dict(metric="m", value=values[best_step - 1], step=best_step,
                      checkpoint=str(tmp_path / "best" / f"ckpt-{best_step}"))
  np.testing.assert_array_equal(_kernel(best["checkpoint"]), np.full((3, 2), best_step))
  # Recorded relative to the run directory, so a copy of it means its own checkpoint.
  recorded = json.loads((tmp_path / "best" / "best.json").read_text())["checkpoint"]
  assert recorded == f"best/ckpt-{best_step}"
  assert sorted(p.name for p in (tmp_path / "best").iterdir()) == [
      "best.json", f"ckpt-{best_step}.data-00000-of-00001", f"ckpt-{best_step}.index"]


def test_a_crash_before_the_commit_keeps_the_previous_best_and_is_cleaned_up(tmp_path,
                                                                           monkeypatch):
  keeper = best_checkpoint.BestCheckpointKeeper(STRATEGY, str(tmp_path), "loss", False)
  keeper.offer(_model(1.0), 10, 3.0)
  real_write = io_files.write_json_atomic

  def crash(path, obj, *args):
    raise KeyboardInterrupt("killed after the checkpoint, before best.json")

  monkeypatch.setattr(best_checkpoint.io_files, "write_json_atomic", crash)
  with pytest.raises(KeyboardInterrupt):
    keeper.offer(_model(2.0), 20, 2.0)
  monkeypatch.setattr(best_checkpoint.io_files, "write_json_atomic", real_write)
  assert (tmp_path / "best" / "ckpt-20.index").exists()  # written, but not committed
  resumed = best_checkpoint.BestCheckpointKeeper(STRATEGY, str(tmp_path), "loss", False)
  assert resumed.best["step"] == 10
  np.testing.assert_array_equal(_kernel(resumed.best["checkpoint"]), np.full((3, 2), 1.0))
  assert not (tmp_path / "best" / "ckpt-20.index").exists()  # the orphan is gone


def test_another_metric_in_the_same_output_dir_is_refused(tmp_path):
  best_checkpoint.BestCheckpointKeeper(STRATEGY, str(tmp_path), "f1", True).offer(
      _model(1.0), 1, 50.0)
  assert json.loads((tmp_path / "best" / "best.json").read_text())["metric"] == "f1"
  with pytest.raises(ValueError, match="keeps the best model by f1, not exact_match"):
    best_checkpoint.BestCheckpointKeeper(STRATEGY, str(tmp_path), "exact_match", True)
