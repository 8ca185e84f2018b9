"""Per-track smoothing of emotion probability vectors.

One smoother instance belongs to one face track.  Every smoother takes the raw
probability vector of the track's face for the current frame (length
``len(LABELS)``, canonical order from :mod:`emod.labels`) and returns a
:class:`Smoothed` result: a stable label, its confidence and a smoothed vector.

* :class:`EmaHysteresis` - exponential moving average plus label hysteresis.
* :class:`MajorityVote` - most common raw top label over the last N frames.
* :class:`NoSmoothing` - raw pass-through.

:func:`make_smoother` builds one by name (``"ema"``, ``"vote"``, ``"none"``).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from emod.labels import LABELS

__all__ = [
    "Smoothed",
    "Smoother",
    "EmaHysteresis",
    "MajorityVote",
    "NoSmoothing",
    "make_smoother",
    "SMOOTHER_KINDS",
]


@dataclass(frozen=True, eq=False)
class Smoothed:
    """A smoothed per-track result.

    ``label`` is one of ``LABELS``; ``confidence`` is the smoothed probability of
    that label (EMA / none) or its vote fraction (vote); ``probs`` is the
    smoothed probability vector in ``LABELS`` order.
    """

    label: str
    confidence: float
    probs: np.ndarray


class Smoother(Protocol):
    """What every smoother offers: one ``update`` per observed frame."""

    def update(self, probs: Any) -> Smoothed:  # pragma: no cover - protocol
        ...


def _as_probs(probs: Any) -> np.ndarray:
    """Return ``probs`` as a float64 vector of length ``len(LABELS)`` or raise ValueError."""
    vec = np.asarray(probs, dtype=np.float64).reshape(-1)
    if vec.shape[0] != len(LABELS):
        raise ValueError(f"expected {len(LABELS)} probabilities, got {vec.shape[0]}")
    if not np.all(np.isfinite(vec)):
        raise ValueError("probabilities must be finite")
    return vec


class NoSmoothing:
    """Pass-through: the label is the raw top class, confidence its raw probability."""

    def update(self, probs: Any) -> Smoothed:
        vec = _as_probs(probs)
        top = int(np.argmax(vec))
        return Smoothed(LABELS[top], float(vec[top]), vec.copy())


class EmaHysteresis:
    """EMA of probability vectors with a hysteresis on the label.

    ``ema = alpha * probs + (1 - alpha) * ema``.  The first update sets both the
    EMA and the label.  Afterwards the label switches to the EMA's top class
    only when that (different) class has led the EMA for ``lead_frames``
    consecutive updates, or when it leads the current label by at least
    ``margin`` in EMA probability - whichever happens first.
    """

    def __init__(self, alpha: float = 0.3, lead_frames: int = 3, margin: float = 0.15) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if lead_frames < 1:
            raise ValueError("lead_frames must be >= 1")
        if margin < 0.0:
            raise ValueError("margin must be >= 0")
        self.alpha = float(alpha)
        self.lead_frames = int(lead_frames)
        self.margin = float(margin)
        self._ema: np.ndarray | None = None
        self._label = -1
        self._challenger = -1
        self._streak = 0

    def update(self, probs: Any) -> Smoothed:
        vec = _as_probs(probs)
        if self._ema is None:
            self._ema = vec.copy()
            self._label = int(np.argmax(vec))
        else:
            self._ema = self.alpha * vec + (1.0 - self.alpha) * self._ema
            leader = int(np.argmax(self._ema))
            if leader == self._label:
                self._challenger, self._streak = -1, 0
            else:
                if leader == self._challenger:
                    self._streak += 1
                else:
                    self._challenger, self._streak = leader, 1
                lead = self._ema[leader] - self._ema[self._label]
                if self._streak >= self.lead_frames or lead >= self.margin:
                    self._label = leader
                    self._challenger, self._streak = -1, 0
        return Smoothed(LABELS[self._label], float(self._ema[self._label]), self._ema.copy())


class MajorityVote:
    """Most common raw top label over the last ``window`` frames (the prototype's rule).

    Ties keep the current label; a tie between labels that are all different
    from the current one goes to the most recently seen of them.  ``confidence``
    is the winner's vote fraction and ``probs`` the mean raw vector over the window.
    """

    def __init__(self, window: int = 10) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = int(window)
        self._tops: deque[int] = deque(maxlen=self.window)
        self._vecs: deque[np.ndarray] = deque(maxlen=self.window)
        self._label = -1

    def update(self, probs: Any) -> Smoothed:
        vec = _as_probs(probs)
        self._tops.append(int(np.argmax(vec)))
        self._vecs.append(vec)
        counts = Counter(self._tops)
        best = max(counts.values())
        tied = {k for k, n in counts.items() if n == best}
        if self._label not in tied:
            # most recent among the tied labels
            self._label = next(k for k in reversed(self._tops) if k in tied)
        fraction = counts[self._label] / len(self._tops)
        mean = np.mean(np.stack(self._vecs), axis=0)
        return Smoothed(LABELS[self._label], float(fraction), mean)


SMOOTHER_KINDS: dict[str, type] = {"ema": EmaHysteresis, "vote": MajorityVote, "none": NoSmoothing}


def make_smoother(kind: str, **params: Any) -> Smoother:
    """Build a smoother by name: ``"ema"`` (EmaHysteresis), ``"vote"`` (MajorityVote) or ``"none"``."""
    try:
        cls = SMOOTHER_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown smoother {kind!r}; expected one of {sorted(SMOOTHER_KINDS)}") from None
    return cls(**params)
