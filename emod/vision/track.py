"""Per-face tracking across frames, with one label smoother per track.

:class:`FaceTracker` turns per-frame detections ``(box, probs)`` into tracks
with stable integer IDs (1, 2, 3, ...).  Each frame:

1. Tracks not seen for more than ``max_age`` seconds are dropped.
2. Every remaining track's box is *predicted* at time ``t`` with a constant
   velocity model (centre velocity in px/s, estimated from its last two hits
   and lightly averaged; box size is kept).  Matching uses the predicted box,
   so two faces moving through each other's positions are matched to where
   they are going, not to where they were - their IDs do not swap.
3. Greedy IoU matching: all (track, detection) pairs with
   ``IoU >= iou_threshold`` are taken highest IoU first.
4. Fast-motion fallback: still-unmatched pairs may match by centroid distance
   when ``|c_det - c_pred| / size <= center_gate`` (``size`` = mean of the two
   boxes' ``sqrt(w*h)``) and the area ratio is within ``[1/max_area_ratio,
   max_area_ratio]``; taken smallest normalised distance first.  Set
   ``center_gate=0`` to disable.
5. Unmatched detections start new tracks, except duplicates: a detection that
   overlaps a box matched in this frame by ``IoU >= duplicate_iou`` is a second
   detection of the same face (Haar with few neighbours finds some twice), and a
   track started from it would later steal the face's id.  Unmatched tracks stay
   alive (``visible=False``) until ``max_age`` passes.

The smoother of a track is updated only on frames where the track is matched.

A track stays one person: :meth:`FaceTracker.end_all` ends every track at a cut between shots
(:class:`emod.vision.cuts.CutDetector` decides), and with ``appearance_gate > 0`` a pair whose face
descriptors (:func:`emod.vision.cuts.face_descriptor`) correlate below the gate is never matched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from emod.labels import LABELS
from emod.vision.smooth import EmaHysteresis, Smoothed, Smoother

__all__ = ["Box", "Track", "FaceTracker", "iou"]

Box = tuple[float, float, float, float]
"""``(x, y, w, h)`` in pixels, top-left corner plus size."""


@dataclass(frozen=True, eq=False)
class Track:
    """A snapshot of one face track after an update.

    ``box`` is the latest observed box, ``raw_label``/``raw_probs`` the latest
    raw classifier output, ``smoothed`` the smoother's latest result,
    ``last_seen`` the time (s) of the latest match, ``hits`` the number of
    matched frames and ``visible`` whether it was matched in this update.
    """

    id: int
    box: Box
    raw_label: str
    raw_probs: np.ndarray
    smoothed: Smoothed
    last_seen: float
    hits: int
    visible: bool


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when disjoint or degenerate)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


def _center(box: Box) -> tuple[float, float]:
    x, y, w, h = box
    return (x + w / 2.0, y + h / 2.0)


class _State:
    """Mutable per-track state kept inside the tracker."""

    __slots__ = ("id", "box", "raw_probs", "smoothed", "smoother", "last_seen", "hits", "vx", "vy", "look")

    def __init__(self, tid: int, box: Box, probs: np.ndarray, smoother: Smoother, t: float) -> None:
        self.id = tid
        self.box = box
        self.smoother = smoother
        self.raw_probs = probs
        self.smoothed = smoother.update(probs)
        self.last_seen = t
        self.hits = 1
        self.vx = 0.0
        self.vy = 0.0
        self.look: np.ndarray | None = None  # the latest face descriptor (appearance gate)

    def predict(self, t: float) -> Box:
        dt = max(0.0, t - self.last_seen)
        x, y, w, h = self.box
        return (x + self.vx * dt, y + self.vy * dt, w, h)

    def observe(self, box: Box, probs: np.ndarray, t: float, velocity_alpha: float) -> None:
        dt = t - self.last_seen
        if dt > 0:
            (ox, oy), (nx, ny) = _center(self.box), _center(box)
            vx, vy = (nx - ox) / dt, (ny - oy) / dt
            a = 1.0 if self.hits == 1 else velocity_alpha
            self.vx = a * vx + (1.0 - a) * self.vx
            self.vy = a * vy + (1.0 - a) * self.vy
        self.box = box
        self.raw_probs = probs
        self.smoothed = self.smoother.update(probs)
        self.last_seen = t
        self.hits += 1

    def snapshot(self, visible: bool) -> Track:
        top = int(np.argmax(self.raw_probs))
        return Track(
            id=self.id,
            box=self.box,
            raw_label=LABELS[top],
            raw_probs=self.raw_probs.copy(),
            smoothed=self.smoothed,
            last_seen=self.last_seen,
            hits=self.hits,
            visible=visible,
        )


class FaceTracker:
    """Assigns stable IDs to faces across frames and smooths each face's label.

    ``smoother`` is a zero-argument factory called once per new track.
    ``center_gate``/``max_area_ratio`` control the fast-motion fallback
    (see the module docstring); ``velocity_alpha`` weights the newest velocity
    estimate against the previous one; ``duplicate_iou`` (0: off) drops unmatched
    detections that overlap a matched one this much.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_age: float = 1.0,
        smoother: Callable[[], Smoother] = lambda: EmaHysteresis(),
        center_gate: float = 0.6,
        max_area_ratio: float = 2.0,
        velocity_alpha: float = 0.5,
        duplicate_iou: float = 0.3,
        appearance_gate: float = 0.0,
    ) -> None:
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError("iou_threshold must be in [0, 1]")
        if max_age < 0:
            raise ValueError("max_age must be >= 0")
        self.iou_threshold = float(iou_threshold)
        self.max_age = float(max_age)
        self.smoother_factory = smoother
        self.center_gate = float(center_gate)
        self.max_area_ratio = float(max_area_ratio)
        self.velocity_alpha = float(velocity_alpha)
        self.duplicate_iou = float(duplicate_iou)
        self.appearance_gate = float(appearance_gate)
        self._states: list[_State] = []
        self._visible: set[int] = set()
        self._next_id = 1

    def reset(self) -> None:
        """Forget all tracks and restart IDs at 1."""
        self._states.clear()
        self._visible.clear()
        self._next_id = 1

    def end_all(self) -> None:
        """End every track now (a cut between shots); IDs go on counting, so a new face never reuses one."""
        self._states.clear()
        self._visible.clear()

    def update(
        self, faces: Sequence[tuple[Box, Any]], t: float, include_hidden: bool = False,
        looks: Sequence[np.ndarray | None] | None = None,
    ) -> list[Track]:
        """Match ``faces`` (``[(box, probs), ...]``) at time ``t`` (s) and return tracks by ID.

        ``looks``: one face descriptor (or None) per face, for the appearance gate.
        Returns the tracks matched in this update; with ``include_hidden=True``
        also the live tracks that were missed (``visible=False``).
        """
        t = float(t)
        self._states = [s for s in self._states if t - s.last_seen <= self.max_age]
        dets = [(tuple(float(v) for v in box), np.asarray(p, dtype=np.float64).reshape(-1))
                for box, p in faces]
        for box, p in dets:
            if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
                raise ValueError(f"bad box {box!r}: expected (x, y, w, h) with w, h > 0")
            if p.shape[0] != len(LABELS):
                raise ValueError(f"expected {len(LABELS)} probabilities, got {p.shape[0]}")

        looks = list(looks) if looks is not None else [None] * len(dets)
        pairs = self._match([s.predict(t) for s in self._states], [d[0] for d in dets],
                            [s.look for s in self._states], looks)
        matched_dets: set[int] = set()
        self._visible = set()
        for si, di in pairs:
            state = self._states[si]
            state.observe(dets[di][0], dets[di][1], t, self.velocity_alpha)
            state.look = looks[di] if looks[di] is not None else state.look
            matched_dets.add(di)
            self._visible.add(state.id)
        taken = [dets[di][0] for di in matched_dets]  # boxes of faces that have a track in this frame
        for di, (box, p) in enumerate(dets):
            if di in matched_dets or (self.duplicate_iou > 0 and any(iou(box, b) >= self.duplicate_iou for b in taken)):
                continue
            taken.append(box)
            state = _State(self._next_id, box, p, self.smoother_factory(), t)
            state.look = looks[di]
            self._next_id += 1
            self._states.append(state)
            self._visible.add(state.id)
        return self.tracks(include_hidden)

    def tracks(self, include_hidden: bool = True) -> list[Track]:
        """All live tracks (default), or only those matched in the last update, sorted by ID."""
        return [
            s.snapshot(s.id in self._visible)
            for s in sorted(self._states, key=lambda s: s.id)
            if include_hidden or s.id in self._visible
        ]

    def _alike(self, a: np.ndarray | None, b: np.ndarray | None) -> bool:
        """Whether two face descriptors may be one person (always, with the gate off or a descriptor missing)."""
        return self.appearance_gate <= 0 or a is None or b is None or float(a @ b) >= self.appearance_gate

    def _match(self, preds: list[Box], boxes: list[Box], old_looks: list | None = None,
               new_looks: list | None = None) -> list[tuple[int, int]]:
        """Greedy IoU matching, then the centroid-distance fallback; returns (track, det) pairs."""
        old_looks = old_looks or [None] * len(preds)
        new_looks = new_looks or [None] * len(boxes)
        cand = [
            (iou(p, b), si, di)
            for si, p in enumerate(preds)
            for di, b in enumerate(boxes)
            if self._alike(old_looks[si], new_looks[di])
        ]
        cand = [c for c in cand if c[0] > 0 and c[0] >= self.iou_threshold]
        cand.sort(key=lambda c: -c[0])
        used_s: set[int] = set()
        used_d: set[int] = set()
        pairs: list[tuple[int, int]] = []
        for _, si, di in cand:
            if si not in used_s and di not in used_d:
                used_s.add(si)
                used_d.add(di)
                pairs.append((si, di))
        if self.center_gate <= 0:
            return pairs
        near: list[tuple[float, int, int]] = []
        for si, p in enumerate(preds):
            if si in used_s:
                continue
            for di, b in enumerate(boxes):
                if di in used_d or not self._alike(old_looks[si], new_looks[di]):
                    continue
                area_p, area_b = p[2] * p[3], b[2] * b[3]
                ratio = max(area_p, area_b) / min(area_p, area_b)
                if ratio > self.max_area_ratio:
                    continue
                (px, py), (bx, by) = _center(p), _center(b)
                size = (math.sqrt(area_p) + math.sqrt(area_b)) / 2.0
                dist = math.hypot(bx - px, by - py) / size
                if dist <= self.center_gate:
                    near.append((dist, si, di))
        near.sort(key=lambda c: c[0])
        for _, si, di in near:
            if si not in used_s and di not in used_d:
                used_s.add(si)
                used_d.add(di)
                pairs.append((si, di))
        return pairs
