"""Aligned face crops from YuNet's 5 landmarks: the eyes levelled, the face framed as FER2013 frames its faces.

FER2013's faces are registered: measured with the bundled YuNet on 1,443 of its training
images (48 px, upscaled x4 on a grey border), the median eye midpoint lies at (0.495, 0.382)
of the image side, the eyes 0.372 of the side apart and the mouth midpoint 0.387 below the
eye midpoint. :func:`aligned_crop` rotates a face about its eye midpoint until the eyes are
level and cuts the square that puts the eyes where FER2013 has them: its side is
``scale`` times the larger of (eye distance / 0.372) and (eye-to-mouth distance / 0.387), the
larger because turning the head shortens one of the two; ``eye_y`` is the eye line's height
in the crop. ``scale`` and ``eye_y`` are ``[infer] align_scale`` and ``align_eye_y``, chosen
by measurement (docs/detectors.md).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

FER_EYE_SPAN = 0.372  # eye distance / side, median over FER2013 training faces
FER_EYE_MOUTH = 0.387  # eye midpoint to mouth midpoint / side
FER_EYE_Y = 0.382  # eye line height / side
MIN_SIDE = 8  # px


def eye_angle(landmarks) -> float:
    """Degrees from level of the line from the right eye (image left) to the left eye; positive: clockwise on screen."""
    (rx, ry), (lx, ly) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ly - ry, lx - rx))


def align_matrix(landmarks, scale: float = 1.0, eye_y: float = FER_EYE_Y) -> tuple[np.ndarray, int]:
    """(2x3 affine matrix from frame to crop pixels, crop side in px) for a face's 5 (x, y) LANDMARKS.

    LANDMARKS: YuNet's order (right eye, left eye, nose tip, right and left mouth corners), frame pixels.
    """
    pts = np.asarray(landmarks, np.float64).reshape(5, 2)
    eyes = (pts[0] + pts[1]) / 2
    mouth = (pts[3] + pts[4]) / 2
    span = float(np.hypot(*(pts[1] - pts[0])))
    drop = float(np.hypot(*(mouth - eyes)))
    side = max(MIN_SIDE, int(round(scale * max(span / FER_EYE_SPAN, drop / FER_EYE_MOUTH))))
    m = cv2.getRotationMatrix2D((float(eyes[0]), float(eyes[1])), eye_angle(pts), 1.0)
    m[0, 2] += side / 2.0 - eyes[0]
    m[1, 2] += eye_y * side - eyes[1]
    return m, side


def aligned_crop(img: np.ndarray, landmarks, scale: float = 1.0, eye_y: float = FER_EYE_Y) -> np.ndarray:
    """The upright, FER-framed square crop (side x side, img's channels) of the face with these LANDMARKS in IMG.

    IMG: (H, W) grey or (H, W, C) colour uint8. Parts outside the frame replicate its border, as
    :func:`emod.vision.crop.crop_face` does.
    """
    m, side = align_matrix(landmarks, scale, eye_y)
    return cv2.warpAffine(img, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
