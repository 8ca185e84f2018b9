"""Square face crops with a margin, padded at the frame border."""

from __future__ import annotations

import cv2
import numpy as np


def crop_face(img: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.1) -> np.ndarray:
    """The square around ``box`` (x, y, w, h) of a gray (H, W) or colour (H, W, C) ``img``, grown by ``margin`` of its size on each side.

    Parts outside the frame are filled by replicating the border, so every crop is square.
    """
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    H, W = img.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + s <= W and y0 + s <= H:
        return img[y0 : y0 + s, x0 : x0 + s]
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + s - H), max(0, x0 + s - W)
    inner = img[max(0, y0) : min(H, y0 + s), max(0, x0) : min(W, x0 + s)]
    if inner.size == 0:
        return np.zeros((s, s) + img.shape[2:], img.dtype)
    return cv2.copyMakeBorder(inner, top, bottom, left, right, cv2.BORDER_REPLICATE)
