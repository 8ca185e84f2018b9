"""Keep a face track on one person: hard cuts between shots, and a face's appearance.

A track matched by box overlap alone follows a cut to whoever stands where the last person
stood (``short_hamilton_clip.mp4`` frame 211: performer -> audience member, IoU 0.39). Two
signals, both from the frame the detections came from:

* :class:`CutDetector`: the mean absolute difference of a small grey thumbnail
  (``THUMB`` pixels, 0..255 levels) between consecutive processed frames. Above ``threshold`` the
  picture changed as a whole: a cut, and every track ends (:meth:`FaceTracker.end_all`).
* :func:`face_descriptor`: a face crop as a zero-mean, unit-length ``DESC x DESC`` grey vector;
  the dot product of two is their normalised cross-correlation (-1..1). The tracker can refuse a
  match whose appearance changed below a gate (``FaceTracker(appearance_gate=...)``).

``tools/identity_switches.py`` measures both on the shared clips and the labelled clip
(``docs/reports/identity-switches.json``); the defaults follow that report: the appearance gate
``APPEARANCE_GATE`` is on (no identity switch and no track across a cut on any clip, at every
frame and at every 3rd or 4th), the cut detector is off (it adds nothing to the gate, misses a new
face on an unchanged background, and at every 4th frame fast motion passes for a cut).
"""

from __future__ import annotations

import numpy as np

THUMB = (32, 18)  # (w, h) of the thumbnail: 16:9, small enough that noise and small motion average out
DESC = 16
CUT_THRESHOLD = 24.0  # mean abs grey difference; measured on hamilton: cuts 25.7-30.7, motion up to 12.6 / 22.8 / 26.2
                      # at every frame / 3rd / 4th (see the report); not used by default
APPEARANCE_GATE = 0.5  # least correlation of a track's last face crop and a new one to be one person (the report)


def _grey(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.ndim == 2:
        return img
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def thumbnail(img: np.ndarray) -> np.ndarray:
    """A ``THUMB``-sized grey float32 thumbnail of a BGR or grey frame (area-averaged)."""
    import cv2

    return cv2.resize(_grey(img), THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


class CutDetector:
    """Says whether a frame starts a new shot: mean |thumbnail - previous thumbnail| > ``threshold`` (grey levels).

    ``threshold <= 0`` turns it off. The first frame is no cut. Frame size changes count as a cut.
    """

    def __init__(self, threshold: float = CUT_THRESHOLD):
        self.threshold = float(threshold)
        self.prev: np.ndarray | None = None
        self.last_diff = 0.0

    def reset(self) -> None:
        self.prev = None

    def update(self, img: np.ndarray) -> bool:
        if self.threshold <= 0:
            return False
        thumb = thumbnail(img)
        prev, self.prev = self.prev, thumb
        if prev is None:
            self.last_diff = 0.0
            return False
        self.last_diff = float(np.abs(thumb - prev).mean())
        return self.last_diff > self.threshold


def face_descriptor(img: np.ndarray, box) -> np.ndarray | None:
    """The face in ``box`` ``(x, y, w, h)`` as a zero-mean unit vector (``DESC*DESC``), or None when the box is off the frame or flat."""
    import cv2

    x, y, w, h = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(img.shape[1], x + w), min(img.shape[0], y + h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    crop = _grey(np.ascontiguousarray(img[y0:y1, x0:x1]))  # the crop only: converting the whole frame costs 10x
    v = cv2.resize(crop, (DESC, DESC), interpolation=cv2.INTER_AREA).astype(np.float32).reshape(-1)
    v -= v.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-3 else None
