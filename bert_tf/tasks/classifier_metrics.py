"""Classification metrics from a weighted confusion matrix.

Every metric takes per-example weights: evaluation batches are padded with fake examples
(is_real_example = 0), and weighting by is_real_example leaves them out exactly. Conventions
follow scikit-learn's: a ratio whose denominator is zero (no prediction of a class, MCC of a
constant predictor) is 0.
"""

from typing import Any, Dict, Optional, Sequence

import numpy as np

# Metrics where larger is better; "loss" is the one where smaller is.
HIGHER_IS_BETTER = ("accuracy", "mcc", "f1")
SELECTABLE = (*HIGHER_IS_BETTER, "loss")


def _weights(weights: Optional[np.ndarray], count: int) -> np.ndarray:
  if weights is None:
    return np.ones(count, np.float64)
  weights = np.asarray(weights, np.float64).reshape(-1)
  if weights.shape[0] != count:
    raise ValueError(f"{weights.shape[0]} weights for {count} examples.")
  return weights


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_labels: int,
                     weights: Optional[np.ndarray] = None) -> np.ndarray:
  """[num_labels, num_labels] total weight of examples with true label i predicted as j."""
  labels = np.asarray(labels, np.int64).reshape(-1)
  predictions = np.asarray(predictions, np.int64).reshape(-1)
  if labels.shape != predictions.shape:
    raise ValueError(f"{labels.shape[0]} labels but {predictions.shape[0]} predictions.")
  matrix = np.zeros((num_labels, num_labels), np.float64)
  np.add.at(matrix, (labels, predictions), _weights(weights, labels.shape[0]))
  return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
  return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                   where=denominator != 0)


def accuracy(matrix: np.ndarray) -> float:
  return float(_ratio(np.trace(matrix), matrix.sum()))


def matthews_corrcoef(matrix: np.ndarray) -> float:
  """Matthews correlation (Gorodkin's K-class form; for two classes the usual binary MCC)."""
  total = matrix.sum()
  correct = np.trace(matrix)
  true_counts = matrix.sum(axis=1)
  predicted_counts = matrix.sum(axis=0)
  covariance = correct * total - true_counts @ predicted_counts
  scale = np.sqrt((total**2 - predicted_counts @ predicted_counts) *
                  (total**2 - true_counts @ true_counts))
  return float(_ratio(covariance, scale))


def precision_recall_f1(matrix: np.ndarray) -> Dict[str, np.ndarray]:
  """Per-class precision, recall, F1 and support (true weight), each of shape [num_labels]."""
  true_positives = np.diag(matrix)
  precision = _ratio(true_positives, matrix.sum(axis=0))
  recall = _ratio(true_positives, matrix.sum(axis=1))
  f1 = _ratio(2 * precision * recall, precision + recall)
  return dict(precision=precision, recall=recall, f1=f1, support=matrix.sum(axis=1))


def cross_entropy(logits: np.ndarray, labels: np.ndarray,
                  weights: Optional[np.ndarray] = None) -> float:
  """Weighted mean softmax cross-entropy of integer `labels` under `logits` [N, K]."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.int64).reshape(-1)
  weights = _weights(weights, labels.shape[0])
  shifted = logits - logits.max(axis=-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
  losses = -log_probs[np.arange(labels.shape[0]), labels]
  return float(_ratio((losses * weights).sum(), weights.sum()))


def softmax(logits: np.ndarray) -> np.ndarray:
  logits = np.asarray(logits, np.float64)
  shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return shifted / shifted.sum(axis=-1, keepdims=True)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, label_list: Sequence[str],
                           weights: Optional[np.ndarray] = None) -> Dict[str, Any]:
  """Everything eval_results.json reports, over the examples with non-zero weight.

  `f1` is the F1 of label_list[1] (the positive class) for two labels and the unweighted mean
  over classes (macro) otherwise; `f1_average` says which.
  """
  logits = np.asarray(logits)
  num_labels = len(label_list)
  predictions = logits.argmax(axis=-1)
  matrix = confusion_matrix(labels, predictions, num_labels, weights)
  per_class = precision_recall_f1(matrix)
  binary = num_labels == 2
  return dict(
      accuracy=accuracy(matrix),
      loss=cross_entropy(logits, labels, weights),
      mcc=matthews_corrcoef(matrix),
      f1=float(per_class["f1"][1] if binary else per_class["f1"].mean()),
      f1_average="binary" if binary else "macro",
      num_examples=int(round(matrix.sum())),
      per_class={label: dict(precision=float(per_class["precision"][i]),
                             recall=float(per_class["recall"][i]),
                             f1=float(per_class["f1"][i]),
                             support=int(round(per_class["support"][i])))
                 for i, label in enumerate(label_list)},
      confusion_matrix=matrix.round().astype(int).tolist(),
  )


def is_better(metric: str, value: float, best: Optional[float]) -> bool:
  """Whether `value` of `metric` improves on `best` (None: nothing yet)."""
  if metric not in SELECTABLE:
    raise ValueError(f"Unknown metric {metric!r}; expected one of {', '.join(SELECTABLE)}.")
  if best is None:
    return True
  return value < best if metric == "loss" else value > best
