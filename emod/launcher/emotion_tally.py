"""Emotions in the launcher's telemetry: face-seconds per smoothed label and tracks, per interval.

The display stage reports cumulative counters in its telemetry (``stats.emotions``: ``faces``
in the newest frame, ``tracks_seen`` and ``face_s`` per label since the stage started).
:class:`EmotionTally` turns them into increments (a restarted display stage starts from zero
again, and its first report counts whole), and keeps:

* ``total``: face-seconds per label and tracks since the launcher started (Prometheus counters);
* ``interval``: the increments of the last telemetry interval (one history line each);
* ``last_minute``: face-seconds, shares per label and tracks over the last 60 s (``emod-stats``).
"""

from __future__ import annotations

import time
from collections import deque

from emod.labels import LABELS

MINUTE_S = 60.0


def _zero() -> dict[str, float]:
    return {name: 0.0 for name in LABELS}


def shares(face_s: dict[str, float]) -> dict[str, float] | None:
    """Each label's share of the face-time (summing to 1), or None without face-time."""
    total = sum(face_s.values())
    return {k: round(v / total, 4) for k, v in face_s.items()} if total > 0 else None


def format_shares(face_s: dict[str, float] | None, tracks: int | None) -> str:
    """``happy 62%, neutral 30%, sad 8% (41 face-s, 3 tracks)``, largest first; ``no faces`` without face-time."""
    sh = shares(face_s or {})
    if sh is None:
        return "no faces"
    parts = ", ".join(f"{k} {v:.0%}" for k, v in sorted(sh.items(), key=lambda kv: -kv[1]) if v >= 0.005)
    n = tracks or 0
    return f"{parts} ({sum(face_s.values()):.0f} face-s, {n} track{'s' if n != 1 else ''})"


def sum_intervals(records: list[dict]) -> dict:
    """Face-seconds per label and tracks over history records (their ``emotions.interval``), with shares."""
    face_s, tracks = _zero(), 0
    for r in records:
        interval = (r.get("emotions") or {}).get("interval") or {}
        for k in LABELS:
            v = (interval.get("face_s") or {}).get(k)
            if isinstance(v, (int, float)):
                face_s[k] += v
        if isinstance(interval.get("tracks"), int):
            tracks += interval["tracks"]
    face_s = {k: round(v, 3) for k, v in face_s.items()}
    return {"face_s": face_s, "shares": shares(face_s), "tracks": tracks}


class EmotionTally:
    def __init__(self):
        self.prev: tuple[int, dict[str, float], int] | None = None  # (pid, face_s, tracks_seen) of the last report
        self.faces = 0
        self.total_face_s = _zero()
        self.total_tracks = 0
        self.pending_face_s = _zero()
        self.pending_tracks = 0
        self.interval = {"face_s": _zero(), "tracks": 0}
        self.recent: deque[tuple[float, dict[str, float], int]] = deque()

    def on_display(self, pid: int, emotions: dict | None, now: float | None = None) -> None:
        """One display telemetry report's ``emotions`` object (ignored when absent or malformed)."""
        if not isinstance(emotions, dict):
            return
        try:
            face_s = {k: float(emotions.get("face_s", {}).get(k, 0.0)) for k in LABELS}
            tracks = int(emotions.get("tracks_seen", 0))
            self.faces = int(emotions.get("faces", 0))
        except (TypeError, ValueError, AttributeError):
            return
        same = self.prev is not None and self.prev[0] == pid and tracks >= self.prev[2]
        d_face = {k: max(0.0, face_s[k] - (self.prev[1][k] if same else 0.0)) for k in LABELS}
        d_tracks = tracks - (self.prev[2] if same else 0)
        self.prev = (pid, face_s, tracks)
        for k in LABELS:
            self.total_face_s[k] += d_face[k]
            self.pending_face_s[k] += d_face[k]
        self.total_tracks += d_tracks
        self.pending_tracks += d_tracks
        self.recent.append((time.monotonic() if now is None else now, d_face, d_tracks))

    def close_interval(self) -> None:
        """End a telemetry interval: its increments become ``interval`` (once per history line)."""
        self.interval = {"face_s": {k: round(v, 3) for k, v in self.pending_face_s.items()}, "tracks": self.pending_tracks}
        self.pending_face_s, self.pending_tracks = _zero(), 0

    def snapshot(self, now: float | None = None) -> dict:
        now = time.monotonic() if now is None else now
        while self.recent and self.recent[0][0] < now - MINUTE_S:
            self.recent.popleft()
        minute = _zero()
        for _, d, _ in self.recent:
            for k in LABELS:
                minute[k] += d[k]
        return {
            "faces": self.faces,
            "interval": self.interval,
            "last_minute": {"face_s": {k: round(v, 3) for k, v in minute.items()}, "shares": shares(minute),
                            "tracks": sum(n for _, _, n in self.recent)},
            "total": {"face_s": {k: round(v, 3) for k, v in self.total_face_s.items()}, "tracks": self.total_tracks},
        }
