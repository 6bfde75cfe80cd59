"""training_stats.csv, its table and training_curves.png, shared by every task."""

import csv

from bert_tf.training import history

ROWS = [dict(epoch=1.0, step=6, train_loss=0.7, val_loss=0.6, val_f1=80.0, training_time=61.0,
             validation_time=2.0, loss_sum=4.2),
        dict(epoch=2.0, step=12, train_loss=0.5, val_loss=None, val_f1=82.5, training_time=None,
             validation_time=1.0, loss_sum=7.2)]


def test_stats_csv_has_a_column_per_metric_and_empty_cells_for_what_was_not_measured(tmp_path):
  path = tmp_path / history.STATS_FILE
  history.write_stats(str(path), ROWS, ["loss", "f1"])
  with open(path, encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ["epoch", "step", "train_loss", "val_loss", "val_f1", "training_time",
                           "validation_time"]
  assert rows[1]["val_loss"] == "" and rows[1]["val_f1"] == "82.5"


def test_table_aligns_columns_and_shows_times(tmp_path):
  lines = history.stats_table(ROWS, ["f1"]).splitlines()
  assert lines[0].split() == ["epoch", "step", "train_loss", "val_f1", "training_time",
                              "validation_time"]
  assert lines[1].split() == ["1", "6", "0.7000", "80.0000", "0:01:01", "0:00:02"]
  assert lines[2].split()[4] == "-" and len({len(line) for line in lines}) == 1


def test_curves_are_a_png_with_the_best_step_marked(tmp_path):
  path = tmp_path / history.CURVES_FILE
  history.plot_curves(str(path), ROWS, ["loss", "f1"], best_step=12)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # Without epochs (pretraining from foreign records), the x axis is the step.
  history.plot_curves(str(path), [dict(row, epoch=None) for row in ROWS], ["loss"])
  assert path.stat().st_size > 1000
