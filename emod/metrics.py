"""Classification metrics for emotion models: confusion matrix, per-class report, plot.

Numpy only (matplotlib is imported lazily, by :func:`plot_confusion` alone), so the
numbers ``tools/evaluate.py`` reports can be checked by hand.

Conventions (the same as scikit-learn's ``zero_division=0``):

* precision of a class the model never predicts is 0.0;
* recall of a class with no true samples (support 0) is 0.0;
* F1 is 0.0 when precision + recall is 0;
* macro averages are the plain mean over *every* label given, including classes
  with support 0 (which then count as 0.0), so a subset missing a class is not
  flattered by silently dropping it;
* accuracy of an empty set is 0.0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _as_index_array(y, n: int, what: str) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class indices, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"{what} holds class indices outside 0..{n - 1}")
    return a


def confusion_matrix(y_true, y_pred, n: int) -> np.ndarray:
    """(n, n) int64 counts: row = true class, column = predicted class."""
    t = _as_index_array(y_true, n, "y_true")
    p = _as_index_array(y_pred, n, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} samples but y_pred has {p.size}")
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n).astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0.0 where den == 0 (the documented zero-division rule)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def report_from_confusion(cm: np.ndarray, labels: Sequence[str]) -> dict:
    """The :func:`classification_report` dictionary computed from a confusion matrix."""
    cm = np.asarray(cm, np.int64)
    k = len(labels)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {k} labels")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    n = int(cm.sum())
    per_class = {
        str(label): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, label in enumerate(labels)
    }
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1.mean()) if k else 0.0,
        "macro_precision": float(precision.mean()) if k else 0.0,
        "macro_recall": float(recall.mean()) if k else 0.0,
        "balanced_accuracy": float(recall.mean()) if k else 0.0,
        "n": n,
        "per_class": per_class,
    }


def classification_report(y_true, y_pred, labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 (plus macro precision/recall), n and per-class precision/recall/F1/support.

    ``y_true`` and ``y_pred`` are integer indices into ``labels``. Zero divisions give
    0.0 (see the module docstring).
    """
    return report_from_confusion(confusion_matrix(y_true, y_pred, len(labels)), labels)


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write a confusion-matrix PNG: colours are row-normalised (recall per true class), cells show counts.

    Uses matplotlib's Agg canvas directly, never pyplot, so it runs headless and does
    not change the process-wide backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm, np.int64)
    k = len(labels)
    rows = cm.sum(axis=1, keepdims=True)
    norm = _safe_div(cm, np.broadcast_to(rows, cm.shape))
    fig = Figure(figsize=(1.0 + 0.85 * k, 0.6 + 0.8 * k), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=[f"{l} ({int(rows[i, 0])})" for i, l in enumerate(labels)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (support)")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
