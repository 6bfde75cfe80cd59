"""The best model of a run, kept in OUTPUT_DIR/best/: one keeper for every task.

A candidate is written under a new prefix (best/ckpt-STEP) through the same all-workers-take-
part save as training checkpoints, then best/best.json names it: that rename is the commit
point, so a crash at any moment leaves best.json naming a complete checkpoint. Older bests and
the leftovers of a crashed write are deleted after the commit (and when a run starts). best.json
names the checkpoint relative to the run directory (io/run_directory.py reads it, in every tool),
and the model's files (config, vocab) are copied beside it, so best/ alone is a model.
"""

import os
from typing import Optional, Sequence

import tensorflow as tf
import tf_keras
from absl import logging

from bert_tf.io import files as io_files, run_directory
from bert_tf.training import distribution, partial_saves, trainer

BEST_DIR = run_directory.BEST_DIR
BEST_FILE = run_directory.BEST_FILE
read_best = run_directory.read_best


def is_better(value: float, best: Optional[float], higher_is_better: bool) -> bool:
  """Whether `value` improves on `best` (None: nothing to beat)."""
  if best is None:
    return True
  return value > best if higher_is_better else value < best


class BestCheckpointKeeper:
  """Keeps the model with the best value of one metric in OUTPUT_DIR/best/.

  Every worker calls `offer` with the same values (multi-worker saves need them all); only the
  chief writes best.json and deletes files.
  """

  def __init__(self, strategy: tf.distribute.Strategy, output_dir: str, metric: str,
               higher_is_better: bool, model_files: Sequence[str] = ()):
    """`model_files`: names of files in output_dir (config, vocab) copied into best/ too."""
    self.strategy = strategy
    self.output_dir = output_dir
    self.model_files = model_files
    self.directory = os.path.join(output_dir, BEST_DIR)
    self.metric = metric
    self.higher_is_better = higher_is_better
    self.best = read_best(output_dir)
    if self.best and self.best.get("metric", metric) != metric:
      raise ValueError(f"{self.directory} keeps the best model by {self.best['metric']}, not "
                       f"{metric}: use the same --keep_best_by, or a new --output_dir.")
    if distribution.is_chief(strategy) and tf.io.gfile.isdir(self.directory):
      partial_saves.remove_temporaries(self.directory)
      self._remove_checkpoints_but(self.best["checkpoint"] if self.best else None)

  @property
  def chief(self) -> bool:
    return distribution.is_chief(self.strategy)

  def _remove_checkpoints_but(self, keep: Optional[str]) -> None:
    """Deletes checkpoint files in best/ other than `keep`'s (older bests, a crashed write)."""
    for path in tf.io.gfile.glob(os.path.join(self.directory, "ckpt-*")):
      if keep is None or not os.path.basename(path).startswith(os.path.basename(keep) + "."):
        tf.io.gfile.remove(path)

  def offer(self, model: tf_keras.Model, step: int, value: float) -> bool:
    """Keeps `model` if `value` beats the best so far; returns whether it did."""
    if not is_better(value, self.best["value"] if self.best else None, self.higher_is_better):
      logging.info("%s %.4f at step %d does not improve on %.4f (step %d).", self.metric, value,
                   step, self.best["value"], self.best["step"])
      return False
    prefix = os.path.join(self.directory, f"ckpt-{step}")
    trainer.write_checkpoint(self.strategy, tf.train.Checkpoint(model=model), prefix)
    self.best = dict(metric=self.metric, value=value, step=step, checkpoint=prefix)
    if self.chief:
      for name in self.model_files:
        source, target = os.path.join(self.output_dir, name), os.path.join(self.directory, name)
        if tf.io.gfile.exists(source) and not tf.io.gfile.exists(target):
          io_files.copy_atomic(source, target)
      io_files.write_json_atomic(os.path.join(self.directory, BEST_FILE),
                                 run_directory.best_record(**self.best))
      self._remove_checkpoints_but(prefix)
    logging.info("New best %s %.4f at step %d: saved to %s.", self.metric, value, step, prefix)
    return True
