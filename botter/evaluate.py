"""Evaluation without sklearn: classification metrics, the two baselines, the printed comparison."""

import math

import numpy as np
import pandas as pd

from botter.dataset import Windows, labels_from_returns


def metrics(labels: np.ndarray, probs: np.ndarray, predicted: np.ndarray | None = None) -> dict:
    """accuracy, balanced_accuracy, roc_auc (one-vs-rest macro for 3 classes), log_loss, confusion_matrix.

    labels: (N,) class index. probs: (N, K). predicted: the hard predictions (default argmax of
    probs). confusion_matrix[i][j] counts true class i predicted as j.
    """
    k = probs.shape[1]
    predicted = probs.argmax(1) if predicted is None else predicted
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    if k == 2:
        auc = _roc_auc(labels == 1, probs[:, 1])
    else:
        aucs = [_roc_auc(labels == c, probs[:, c]) for c in range(k)]
        auc = float(np.nanmean(aucs)) if not np.isnan(aucs).all() else math.nan
    return {
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        "balanced_accuracy": balanced_accuracy(labels, predicted, k),
        "roc_auc": auc,
        "log_loss": log_loss(labels, probs),
        "confusion_matrix": cm.tolist(),
    }


def baselines(train: Windows, test: Windows, *, classes: int, flat_threshold: float = 0.0) -> dict:
    """Metrics of two models without images on the test split (both: labelled windows only).

    majority: always the most frequent class of the train split, with its train class shares as
    probabilities. previous_return_sign: the class of the window's own return
    (close of the last candle / open of the first - 1, labelled like a label return); its
    probabilities are the train split's class shares among windows of that same sign.
    """
    train_y, test_y = train.labels.astype(np.int64), test.labels.astype(np.int64)
    shares = np.bincount(train_y, minlength=classes) / len(train)
    majority = np.tile(shares, (len(test), 1))  # (N, K)
    sign_train = labels_from_returns(train.past_returns(), classes=classes, flat_threshold=flat_threshold)
    sign_test = labels_from_returns(test.past_returns(), classes=classes, flat_threshold=flat_threshold)
    table = np.ones((classes, classes))  # add-one smoothing keeps log loss finite
    np.add.at(table, (sign_train, train_y), 1)
    table /= table.sum(1, keepdims=True)
    return {
        "majority": metrics(test_y, majority),
        "previous_return_sign": metrics(test_y, table[sign_test], predicted=sign_test),
    }


def _roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half; nan when a class is absent."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based average rank of each score
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def log_loss(labels: np.ndarray, probs: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Mean negative log probability of the true class (weighted like CrossEntropyLoss when given)."""
    if len(labels) == 0:
        return math.nan
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-15, 1))
    w = np.ones(len(labels)) if weight is None else weight[labels]
    return float((w * nll).sum() / w.sum())


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in `labels`."""
    present = np.bincount(labels, minlength=k)
    hits = np.bincount(labels[predicted == labels], minlength=k)
    return float(np.mean(hits[present > 0] / present[present > 0])) if present.any() else math.nan


def format_table(result: dict) -> str:
    """The test metrics of the model beside the baselines, one row per metric."""
    columns = {"model": result["test"], **result["baselines"]}
    names = ("accuracy", "balanced_accuracy", "roc_auc", "log_loss")
    table = pd.DataFrame({c: [m[n] for n in names] for c, m in columns.items()}, index=list(names))
    cms = "\n".join(f"  {c}: {m['confusion_matrix']}" for c, m in columns.items())
    return f"{table.to_string(float_format=lambda v: f'{v:.4f}')}\nconfusion matrices (rows true, columns predicted):\n{cms}"
