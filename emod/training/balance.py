"""Training and selecting for balance over the 7 labels: the class prior, logit adjustment, its fold
into the classifier's bias, class-aware sampling, and the balanced selection rule.

Logit adjustment follows Menon et al., "Long-tail learning via logit adjustment" (ICLR 2021):

* in training (``--logit-adjust TAU`` of ``tools/train.py``), the loss is taken on
  ``logits + TAU * log(prior)`` while the model serves plain ``logits`` (with TAU = 1 this is
  "balanced softmax": the model learns the class-conditional part, not the prior);
* after training, ``log p - TAU * log(prior)`` scores classes for balance; since
  ``log p = logits - logsumexp(logits)`` that is exactly ``logits - TAU * log(prior)`` up to a
  per-image constant, so :func:`fold_prior` subtracts ``TAU * log(prior)`` from the final layer's
  bias and the model, unchanged in shape and cost, serves the corrected probabilities.
"""

from __future__ import annotations

import numpy as np

from emod.labels import LABELS


def class_prior(targets: np.ndarray) -> np.ndarray:
    """(7,) float64 class prior of training targets: (N,) int label indices, or (N, 7) soft targets (rows summing to
    1, e.g. FER+ vote distributions; the prior is then their mean, i.e. the share of votes). Every class gets at
    least 1e-6. Raises ValueError on an empty set or a bad shape."""
    t = np.asarray(targets)
    if len(t) == 0:
        raise ValueError("class_prior: no training targets")
    if t.ndim == 1:
        p = np.bincount(t.astype(np.int64), minlength=len(LABELS)).astype(np.float64)
    elif t.ndim == 2 and t.shape[1] == len(LABELS):
        p = t.astype(np.float64).sum(0)
    else:
        raise ValueError(f"class_prior: targets of shape {t.shape}, want (N,) or (N, {len(LABELS)})")
    p = np.maximum(p / p.sum(), 1e-6)
    return p / p.sum()


def adjusted_scores(log_probs: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """(N, 7) ``log_probs - tau * log(prior)``: the post-hoc prior correction (argmax gives the corrected label)."""
    return np.asarray(log_probs, np.float64) - tau * np.log(np.asarray(prior, np.float64))


def fold_prior(linear, prior: np.ndarray, tau: float) -> None:
    """Subtract ``tau * log(prior)`` from a ``torch.nn.Linear`` classifier's bias in place (adds a zero bias if it has
    none). Its softmax then equals the corrected probabilities ``softmax(log p - tau * log prior)`` of the unfolded
    model, so top labels match :func:`adjusted_scores` exactly up to float rounding."""
    import torch

    shift = torch.as_tensor(-tau * np.log(np.asarray(prior, np.float64)), dtype=linear.weight.dtype)
    with torch.no_grad():
        if linear.bias is None:
            linear.bias = torch.nn.Parameter(torch.zeros(linear.out_features, dtype=linear.weight.dtype))
        linear.bias.add_(shift.to(linear.bias.device))


def sample_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """(N,) float64 sampling weights for class-aware sampling: ``(1 / count of the image's class) ** power``,
    normalised to sum 1; power 1 draws every class equally often, 0 is plain uniform sampling. ``labels`` are (N,)
    int indices (an image's majority label for soft targets); -1 (no label) gets the rarest class's weight."""
    lab = np.asarray(labels, np.int64)
    counts = np.bincount(lab[lab >= 0], minlength=len(LABELS)).astype(np.float64)
    w_class = (1.0 / np.maximum(counts, 1)) ** power
    w = np.where(lab >= 0, w_class[np.clip(lab, 0, None)], w_class.max())
    return w / w.sum()


def select_balanced(history: list[dict], within: float = 0.01, acc_key: str = "public_acc",
                    bal_key: str = "public_balanced_acc") -> int:
    """The selection rule: the index into ``history`` of the epoch with the best balanced accuracy among the epochs
    whose accuracy is within ``within`` (0.01 = one point) of the best accuracy. Ties go to the earlier epoch.
    Raises ValueError on an empty history."""
    if not history:
        raise ValueError("select_balanced: no epochs")
    best_acc = max(h[acc_key] for h in history)
    ok = [i for i, h in enumerate(history) if h[acc_key] >= best_acc - within - 1e-12]
    return max(ok, key=lambda i: (history[i][bal_key], -i))
