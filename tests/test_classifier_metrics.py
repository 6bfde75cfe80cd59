"""Classification metrics against values computed by hand, with padding weighted out."""

import math

import numpy as np
import pytest

from bert_tf.tasks import classifier_metrics as metrics

# TP 3 (examples 0, 1, 6), FN 1 (2), FP 1 (4), TN 3 (3, 5, 7).
BINARY_LABELS = [1, 1, 1, 0, 0, 0, 1, 0]
BINARY_PREDICTIONS = [1, 1, 0, 0, 1, 0, 1, 0]


def _logits(predictions, num_labels):
  """Logits whose argmax is `predictions`."""
  return np.eye(num_labels)[predictions] * 2.0


def test_binary_metrics_by_hand():
  matrix = metrics.confusion_matrix(BINARY_LABELS, BINARY_PREDICTIONS, 2)
  assert matrix.tolist() == [[3, 1], [1, 3]]
  assert metrics.accuracy(matrix) == 0.75
  # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 - 1) / sqrt(4^4) = 0.5
  assert metrics.matthews_corrcoef(matrix) == pytest.approx(0.5)
  per_class = metrics.precision_recall_f1(matrix)
  assert per_class["precision"].tolist() == [0.75, 0.75]
  assert per_class["recall"].tolist() == [0.75, 0.75]
  assert per_class["f1"].tolist() == [0.75, 0.75]


def test_padding_with_zero_weight_changes_nothing():
  labels = BINARY_LABELS + [1, 0, 0]
  predictions = BINARY_PREDICTIONS + [0, 1, 1]  # all wrong: they would change every metric
  weights = [1] * len(BINARY_LABELS) + [0, 0, 0]
  padded = metrics.classification_metrics(_logits(predictions, 2), labels, ["0", "1"], weights)
  plain = metrics.classification_metrics(_logits(BINARY_PREDICTIONS, 2), BINARY_LABELS,
                                         ["0", "1"])
  assert padded == plain
  assert padded["num_examples"] == 8
  assert padded["confusion_matrix"] == [[3, 1], [1, 3]]
  assert padded["mcc"] == pytest.approx(0.5)
  assert padded["f1"] == pytest.approx(0.75) and padded["f1_average"] == "binary"


def test_three_classes_by_hand():
  labels = [0, 0, 1, 1, 2, 2]
  predictions = [0, 1, 1, 1, 2, 0]
  result = metrics.classification_metrics(_logits(predictions, 3), labels, ["c", "e", "n"])
  assert result["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
  assert result["accuracy"] == pytest.approx(4 / 6)
  # Gorodkin: (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)), t = [2, 2, 2], p = [2, 3, 1].
  assert result["mcc"] == pytest.approx((4 * 6 - 12) / math.sqrt((36 - 14) * (36 - 12)))
  # Per class F1: 1/2, 4/5 (P 2/3, R 1), 2/3 (P 1, R 1/2); macro average.
  assert result["per_class"]["e"] == dict(precision=pytest.approx(2 / 3), recall=1.0,
                                          f1=pytest.approx(0.8), support=2)
  assert result["f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
  assert result["f1_average"] == "macro"


def test_against_scikit_learn_on_random_data():
  sklearn_metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 200)
  predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 3, 200))
  weights = (rng.random(200) < 0.8).astype(float)
  real = weights == 1
  result = metrics.classification_metrics(_logits(predictions, 3), labels, ["a", "b", "c"],
                                          weights)
  assert result["mcc"] == pytest.approx(
      sklearn_metrics.matthews_corrcoef(labels[real], predictions[real]))
  assert result["f1"] == pytest.approx(
      sklearn_metrics.f1_score(labels[real], predictions[real], average="macro"))
  assert result["accuracy"] == pytest.approx(
      sklearn_metrics.accuracy_score(labels[real], predictions[real]))


def test_degenerate_predictors_score_zero_not_nan():
  matrix = metrics.confusion_matrix([0, 1, 1], [1, 1, 1], 2)
  assert metrics.matthews_corrcoef(matrix) == 0.0
  per_class = metrics.precision_recall_f1(matrix)
  assert per_class["precision"][0] == 0.0 and per_class["f1"][0] == 0.0
  assert metrics.accuracy(np.zeros((2, 2))) == 0.0


def test_cross_entropy_by_hand():
  logits = [[0.0, math.log(3.0)], [0.0, 0.0]]  # p(label 1) = 3/4; p(label 0) = 1/2
  assert metrics.cross_entropy(logits, [1, 0]) == pytest.approx(
      (-math.log(0.75) + math.log(2.0)) / 2)
  assert metrics.cross_entropy(logits, [1, 0], weights=[1, 0]) == pytest.approx(-math.log(0.75))
  assert metrics.softmax(np.array(logits)).tolist()[0] == pytest.approx([0.25, 0.75])


def test_is_better_knows_the_direction_of_each_metric():
  assert metrics.is_better("loss", 0.4, 0.5) and not metrics.is_better("loss", 0.6, 0.5)
  assert metrics.is_better("mcc", 0.6, 0.5) and not metrics.is_better("accuracy", 0.5, 0.5)
  assert metrics.is_better("f1", 0.0, None)
  with pytest.raises(ValueError, match="Unknown metric 'auc'"):
    metrics.is_better("auc", 0.5, None)


def test_mismatched_lengths_are_an_error():
  with pytest.raises(ValueError, match="3 labels but 2 predictions"):
    metrics.confusion_matrix([0, 1, 1], [0, 1], 2)
  with pytest.raises(ValueError, match="2 weights for 3 examples"):
    metrics.confusion_matrix([0, 1, 1], [0, 1, 1], 2, weights=[1, 1])
