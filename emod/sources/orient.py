"""Video frames turned the way they are meant to be seen: the container's display matrix applied.

Phones store portrait video as landscape frames and say in the container how to turn them for
display: the display matrix (MP4/MOV ``tkhd`` matrix, Matroska projection; FFmpeg's
``DISPLAYMATRIX`` side data, which PyAV attaches to each decoded frame), or in older files only
a ``rotate`` tag (degrees clockwise). A player applies it; so does emod, so that faces reach the
detector upright. Whole quarter turns and mirrors are exact (numpy/OpenCV index shuffles);
any other angle is a bilinear rotation onto a canvas that holds the whole frame (black corners).

The matrix maps a source pixel ``(x, y)`` (y down) to the display ``(x', y')`` by
``x' = a x + c y``, ``y' = b x + d y`` (FFmpeg's layout: ``a, b, c, d`` = elements 0, 1, 3, 4,
16.16 fixed point), exactly what ``ffmpeg`` and ``ffplay`` show.
"""

from __future__ import annotations

import math

import numpy as np

DISPLAYMATRIX = "DISPLAYMATRIX"
SNAP_DEG = 1.0  # an angle this close to a quarter turn is that quarter turn


def tag_rotation(metadata) -> float:
    """Degrees counter-clockwise from a stream's legacy ``rotate`` tag (which counts clockwise); 0 without one.

    A tag that is not a number (``rotate=abc``) is ignored (0).
    """
    for k, v in (metadata or {}).items():
        if k.lower() == "rotate":
            try:
                deg = float(v)
            except (TypeError, ValueError):
                return 0.0
            return -deg if math.isfinite(deg) else 0.0
    return 0.0


def frame_matrix(frame) -> tuple[float, float, float, float] | None:
    """``(a, b, c, d)`` of a PyAV frame's display matrix (1.0 = no scaling), or None when it has none."""
    try:
        sd = frame.side_data.get(DISPLAYMATRIX)
    except (AttributeError, KeyError, ValueError):
        return None
    if sd is None:
        return None
    m = np.frombuffer(bytes(sd), "<i4")
    if m.size < 9:
        return None
    return tuple(float(m[i]) / 65536.0 for i in (0, 1, 3, 4))


def rotation_matrix(ccw_deg: float) -> tuple[float, float, float, float]:
    """``(a, b, c, d)`` that turns a frame CCW_DEG degrees counter-clockwise on screen."""
    t = math.radians(ccw_deg)
    return (math.cos(t), -math.sin(t), math.sin(t), math.cos(t))


def describe(m: tuple[float, float, float, float] | None) -> str | None:
    """A few words for a matrix (``"rotate 90 ccw"``, ``"mirror, then rotate 270 ccw"``), None when it changes nothing."""
    if m is None:
        return None
    a, b, c, d = _unit(m)
    if abs(a - 1) < 1e-3 and abs(d - 1) < 1e-3 and abs(b) < 1e-3 and abs(c) < 1e-3:
        return None
    mirror = a * d - b * c < 0
    if mirror:  # a mirror about the vertical axis first, then the rotation: x -> -x negates a and b
        a, b = -a, -b
    deg = math.degrees(math.atan2(c, a)) % 360  # counter-clockwise on screen
    deg = round(deg) % 360
    return ("mirror, then " if mirror else "") + f"rotate {deg} ccw" if deg else "mirror"


def _unit(m):
    a, b, c, d = m
    sx, sy = math.hypot(a, b) or 1.0, math.hypot(c, d) or 1.0
    return a / sx, b / sx, c / sy, d / sy


def apply(img: np.ndarray, m: tuple[float, float, float, float] | None) -> np.ndarray:
    """IMG (H x W [x C] uint8) as displayed under matrix M (``(a, b, c, d)``, see the module doc); IMG itself when M is None or identity.

    Quarter turns and mirrors come out C-contiguous and exact; other angles are rotated bilinearly
    about the centre onto a canvas large enough for the whole frame.
    """
    if m is None:
        return img
    a, b, c, d = (_snap(v) for v in _unit(m))
    if (a, b, c, d) == (1, 0, 0, 1):
        return img
    if {abs(a), abs(d)} == {1} and b == 0 and c == 0:  # x' = a x, y' = d y
        out = img[:: int(d), :: int(a)]
    elif {abs(b), abs(c)} == {1} and a == 0 and d == 0:  # x' = c y, y' = b x: transposed, then mirrored
        out = img.swapaxes(0, 1)[:: int(b), :: int(c)]
    else:
        return _rotate_any(img, m)
    return np.ascontiguousarray(out)


def _snap(v: float) -> float:
    """V (a unit matrix element) as -1, 0 or 1 when within :data:`SNAP_DEG` of one, else V."""
    tol = 1 - math.cos(math.radians(SNAP_DEG))
    for t in (-1.0, 0.0, 1.0):
        if abs(v - t) <= (math.sin(math.radians(SNAP_DEG)) if t == 0 else tol):
            return t
    return v


def _rotate_any(img: np.ndarray, m) -> np.ndarray:
    import cv2

    a, b, c, d = _unit(m)
    h, w = img.shape[:2]
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    xs = a * corners[:, 0] + c * corners[:, 1]
    ys = b * corners[:, 0] + d * corners[:, 1]
    W, H = int(math.ceil(xs.max() - xs.min() - 1e-6)), int(math.ceil(ys.max() - ys.min() - 1e-6))
    A = np.array([[a, c, -xs.min()], [b, d, -ys.min()]], np.float64)
    return cv2.warpAffine(img, A, (max(1, W), max(1, H)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
