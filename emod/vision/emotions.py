"""From per-frame detections to the ``emotions`` stream: tracks, smoothed labels, changes, ends.

:class:`EmotionStream` wraps one :class:`~emod.vision.track.FaceTracker` (with its smoothers)
and keeps, per track, when it started, how many frames it had and how much face-time it spent
under each smoothed label. :meth:`EmotionStream.update` takes one frame's faces and returns the
header of one ``emotions`` message (fields in :mod:`emod.protocol`). The display stage and
``emod analyze --summary`` both use it, so the daemon and the offline summary agree.

Face-time: each frame weighs the time since the previous frame of the stream (capped at
``MAX_FRAME_S``: a stall is not face-time); a track's label shares are its face-time per
smoothed label divided by its total (by frame count when it only had one frame).
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from emod.labels import LABELS
from emod.vision.cuts import APPEARANCE_GATE, CutDetector, face_descriptor
from emod.vision.track import Box, FaceTracker, Track

MAX_FRAME_S = 1.0
ROUND = 4  # decimals of probabilities on the wire


def iso_time(t_wall: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. ``2026-01-01T12:00:00.123Z``."""
    d = _dt.datetime.fromtimestamp(t_wall, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def distribution(values: Any) -> dict[str, float]:
    """A probability vector in ``LABELS`` order as ``{label: p}``, renormalised and rounded to sum to 1."""
    vec = np.clip(np.asarray(values, dtype=np.float64).reshape(-1), 0.0, None)
    total = float(vec.sum())
    vec = vec / total if total > 0 and np.isfinite(total) else np.full(len(LABELS), 1.0 / len(LABELS))
    return {name: round(float(p), ROUND) for name, p in zip(LABELS, vec)}


@dataclass
class _TrackLog:
    start: float  # t_wall of the first frame
    t0: float  # tracker clock of the first frame
    end: float = 0.0
    t1: float = 0.0  # tracker clock of the last frame: duration_s ages on it, not on t_wall (a clock step)
    frames: int = 0
    label: str = ""
    seconds: Counter = field(default_factory=Counter)  # face-time per smoothed label
    counts: Counter = field(default_factory=Counter)  # frames per smoothed label

    def summary(self, track: int) -> dict[str, Any]:
        weights = self.seconds if sum(self.seconds.values()) > 0 else self.counts
        shares = distribution([weights.get(name, 0.0) for name in LABELS])
        return {"track": track, "label": max(shares, key=shares.get), "frames": self.frames, "start": round(self.start, 3),
                "end": round(self.end, 3), "duration_s": round(max(0.0, self.t1 - self.t0), 3), "shares": shares}


def from_config(d) -> "EmotionStream":
    """An EmotionStream with the tracker and smoother settings of a ``[display]`` config section."""
    from emod.vision.smooth import make_smoother

    params = {"ema": {"alpha": d.ema_alpha, "lead_frames": d.hysteresis_frames, "margin": d.hysteresis_margin},
              "vote": {"window": d.vote_window}, "none": {}}[d.smoothing]
    return EmotionStream(FaceTracker(iou_threshold=d.track_iou, max_age=d.track_max_age, appearance_gate=APPEARANCE_GATE,
                                     smoother=lambda: make_smoother(d.smoothing, **params)))


class EmotionStream:
    """Turns ``(box, probs)`` detections per frame into ``emotions`` message headers.

    ``tracker`` is a configured :class:`FaceTracker`. Counters for telemetry:
    ``face_seconds`` (face-time per smoothed label since start, s), ``tracks_seen`` (tracks
    started since start), ``faces`` (faces in the latest frame).
    """

    def __init__(self, tracker: FaceTracker, cuts: CutDetector | None = None):
        self.tracker = tracker
        self.cuts = cuts  # None: no cut detection (the default, by measurement: emod.vision.cuts)
        self.cuts_seen = 0  # cuts between shots that ended every track
        self.logs: dict[int, _TrackLog] = {}
        self.face_seconds: Counter[str] = Counter()
        self.tracks_seen = 0
        self.faces = 0
        self.last_t: float | None = None
        self.visible: list[Track] = []
        self.ended_so_far: list[dict[str, Any]] = []  # every ended summary (emod analyze --summary); keep_ended only
        self.keep_ended = False

    def update(self, faces: Sequence[tuple[Box, Any]], t: float, t_wall: float, seq: int, model: str,
               frame: np.ndarray | None = None) -> dict[str, Any]:
        """Track one frame's faces (``[(box, probs), ...]``) at tracker time ``t`` (s) and capture time ``t_wall`` (epoch s).

        ``frame`` (BGR or grey, the picture the faces were found in; None when it is gone) lets a cut
        between shots end every track, and feeds the tracker's appearance gate when that is on.
        Returns the ``emotions`` header (without ``v``). Raises ValueError for a bad box or
        probability vector (the tracker's checks); then nothing changes.
        """
        looks = None
        if frame is not None:
            if self.cuts is not None and self.cuts.update(frame):
                self.tracker.end_all()  # a new shot: whoever is there now is nobody's continuation
                self.cuts_seen += 1
            if self.tracker.appearance_gate > 0:
                looks = [face_descriptor(frame, box) for box, _ in faces]
        tracks = self.tracker.update(faces, t, looks=looks)
        dt = 0.0 if self.last_t is None else min(max(t - self.last_t, 0.0), MAX_FRAME_S)
        self.last_t = t
        self.visible = tracks
        self.faces = len(tracks)
        out = []
        for tr in tracks:
            log = self.logs.get(tr.id)
            started = log is None
            if started:
                log = self.logs[tr.id] = _TrackLog(start=t_wall, t0=t)
                self.tracks_seen += 1
            label = tr.smoothed.label
            changed = not started and label != log.label
            log.label, log.end, log.t1 = label, t_wall, t
            log.frames += 1
            log.counts[label] += 1
            log.seconds[label] += dt
            self.face_seconds[label] += dt
            probs = distribution(tr.smoothed.probs)
            out.append({"track": tr.id, "box": [int(round(v)) for v in tr.box], "label": label,
                        "confidence": round(min(1.0, max(0.0, float(tr.smoothed.confidence))), ROUND),
                        "raw_label": tr.raw_label, "probs": probs, "age_s": round(max(0.0, t - log.t0), 3),
                        "changed": changed, "started": started})
        live = {tr.id for tr in self.tracker.tracks(include_hidden=True)}
        ended = [self.logs.pop(tid).summary(tid) for tid in sorted(set(self.logs) - live)]
        if self.keep_ended:
            self.ended_so_far.extend(ended)
        return {"seq": int(seq), "time": iso_time(t_wall), "t_wall": round(float(t_wall), 3), "model": model,
                "faces": out, "ended": ended}

    def finish(self) -> list[dict[str, Any]]:
        """End every live track (a file ended); returns their summaries, as in ``ended``."""
        done = [self.logs[tid].summary(tid) for tid in sorted(self.logs)]
        self.logs.clear()
        self.tracker.reset()
        return done
