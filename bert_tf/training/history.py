"""What a run records about itself: its flags, its history, training_stats.csv and the curves.

run_flags.json holds the flags a training run was made with (the output_dir guard's record);
training_state.json the history of evaluation points and what a task keeps besides (the
classifier's labels). One row per evaluation point (the end of a training segment): epoch,
step, the mean training loss of the segment, the validation metrics and the time each part
took. Every task writes the same files from the same rows; which validation metrics appear is
the task's choice.
"""

import csv
import dataclasses
import io
import os
from typing import Any, Dict, List, Optional, Sequence

import tensorflow as tf
from matplotlib.figure import Figure

from bert_tf.io import files as io_files

RUN_FLAGS_FILE = "run_flags.json"
STATE_FILE = "training_state.json"
STATS_FILE = "training_stats.csv"
CURVES_FILE = "training_curves.png"
Row = Dict[str, Any]


@dataclasses.dataclass
class TrainingState:
  """What a resumed run needs besides the trainer checkpoint: the history, task extras."""
  history: List[Row] = dataclasses.field(default_factory=list)
  extras: Dict[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def load(cls, output_dir: str) -> "TrainingState":
    path = os.path.join(output_dir, STATE_FILE)
    return cls(**io_files.read_json(path)) if tf.io.gfile.exists(path) else cls()

  def save(self, output_dir: str) -> None:
    io_files.write_json_atomic(os.path.join(output_dir, STATE_FILE), dataclasses.asdict(self))


def columns(metrics: Sequence[str]) -> List[str]:
  """The table's columns for validation metrics `metrics` (in that order)."""
  return ["epoch", "step", "train_loss", *[f"val_{m}" for m in metrics], "training_time",
          "validation_time"]


def write_stats(path: str, rows: Sequence[Row], metrics: Sequence[str]) -> None:
  """One CSV row per evaluation point; times in seconds, empty cells for what was not measured."""
  names = columns(metrics)
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, names, extrasaction="ignore", lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: "" if row.get(k) is None else row[k] for k in names})
  io_files.write_text_atomic(path, buffer.getvalue())


def _duration(seconds: Optional[float]) -> str:
  if seconds is None:
    return "-"
  minutes, seconds = divmod(int(round(seconds)), 60)
  return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def stats_table(rows: Sequence[Row], metrics: Sequence[str]) -> str:
  """The rows as an aligned text table, times as h:mm:ss."""
  names = columns(metrics)

  def cell(row: Row, column: str) -> str:
    value = row.get(column)
    if column.endswith("_time"):
      return _duration(value)
    if value is None:
      return "-"
    return f"{value:.4f}" if isinstance(value, float) and column != "epoch" else f"{value:g}"

  cells = [names] + [[cell(row, c) for c in names] for row in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(names))]
  return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells)


def plot_curves(path: str, rows: Sequence[Row], metrics: Sequence[str],
                best_step: Optional[int] = None) -> None:
  """training_curves.png: training/validation loss and the other validation metrics."""
  figure = Figure(figsize=(10, 4), dpi=100)
  loss_axes, metric_axes = figure.subplots(1, 2)
  axis = "epoch" if all(row.get("epoch") is not None for row in rows) else "step"
  xs = [row[axis] for row in rows]

  def series(axes, key, label, marker):
    points = [(x, row[key]) for x, row in zip(xs, rows) if row.get(key) is not None]
    if points:
      axes.plot(*zip(*points), marker=marker, label=label)

  series(loss_axes, "train_loss", "training", "o")
  if "loss" in metrics:
    series(loss_axes, "val_loss", "validation", "s")
  for metric, marker in zip([m for m in metrics if m != "loss"], "os^vD"):
    series(metric_axes, f"val_{metric}", f"validation {metric}", marker)
  for axes, title in ((loss_axes, "Loss"), (metric_axes, "Validation metrics")):
    if best_step is not None and any(row["step"] == best_step for row in rows):
      best_x = next(x for x, row in zip(xs, rows) if row["step"] == best_step)
      axes.axvline(best_x, color="grey", linestyle=":", label="best checkpoint")
    axes.set_title(title)
    axes.set_xlabel(axis)
    axes.grid(alpha=0.3)
    if axes.has_data():
      axes.legend()
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png")
  with io_files.atomic_output(path) as temporary:
    with tf.io.gfile.GFile(temporary, "wb") as f:
      f.write(buffer.getvalue())
