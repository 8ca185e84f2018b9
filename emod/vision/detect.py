"""Face detection: OpenCV's Haar cascade (default) or YuNet through ``cv2.FaceDetectorYN``.

Both work on a frame downscaled to ``detect_width`` and return boxes in the
coordinates of the full frame, largest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emod.config import HAAR_CASCADES


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    score: float


class Detector:
    def __init__(self, detect_width: int = 320, min_face: float = 0.08, max_faces: int = 8):
        self.detect_width, self.min_face, self.max_faces = detect_width, min_face, max_faces

    def _small(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_width / w)
        if scale < 1.0:
            frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        return frame, scale

    def detect(self, frame: np.ndarray) -> list[Detection]:
        small, scale = self._small(frame)
        found = self._detect(small)
        out = [Detection(tuple(int(round(v / scale)) for v in box), float(score)) for box, score in found]
        out.sort(key=lambda d: d.box[2] * d.box[3], reverse=True)
        return out[: self.max_faces]

    def _detect(self, small: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        raise NotImplementedError




def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


class HaarDetector(Detector):
    """One or more of OpenCV's frontal-face cascades; a later cascade adds only the faces the earlier ones missed.

    ``min_neighbors`` and ``min_score`` (a floor on the cascade's final-stage weight) trade found
    faces for false ones; README "Face detectors" has the measured trade-off. Settings come from
    ``emod.config.Infer`` (one place for their defaults) through :func:`from_config`.
    """

    name = "haar"

    def __init__(self, *args, scale_factor: float, min_neighbors: int, min_score: float, cascades: tuple[str, ...],
                 **kwargs):
        super().__init__(*args, **kwargs)
        if not cascades:
            raise ValueError("no Haar cascade named")
        self.cascades = []
        for name in cascades:
            if name not in HAAR_CASCADES:
                raise ValueError(f"unknown Haar cascade {name!r} (one of {', '.join(HAAR_CASCADES)})")
            path = Path(cv2.data.haarcascades) / f"haarcascade_frontalface_{name}.xml"
            cascade = cv2.CascadeClassifier(str(path))
            if cascade.empty():
                raise RuntimeError(f"cannot load Haar cascade {path}")
            self.cascades.append(cascade)
        self.scale_factor, self.min_neighbors, self.min_score = scale_factor, min_neighbors, min_score

    def _detect(self, small):
        gray = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        # no histogram equalisation: measured on the FER clip it cut recall from 0.71 to 0.44
        m = max(20, int(self.min_face * gray.shape[0]))
        found: list[tuple[tuple[float, ...], float]] = []
        for cascade in self.cascades:
            boxes, _, weights = cascade.detectMultiScale3(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(m, m), outputRejectLevels=True
            )
            new = [(tuple(map(float, b)), float(w)) for b, w in zip(boxes, np.ravel(weights)) if w > self.min_score]
            found += [f for f in new if all(_iou(f[0], g[0]) < 0.3 for g in found)]
        return found


class YuNetDetector(Detector):
    name = "yunet"

    def __init__(self, model_path: str, *args, score_threshold: float = 0.7, **kwargs):
        super().__init__(*args, **kwargs)
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"YuNet model {model_path!r} does not exist (see README: Face detectors)")
        self.net = cv2.FaceDetectorYN.create(model_path, "", (320, 320), score_threshold, 0.3, 50)
        self.size = None

    def _detect(self, small):
        img = small if small.ndim == 3 else cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        h, w = img.shape[:2]
        if self.size != (w, h):
            self.net.setInputSize((w, h))
            self.size = (w, h)
        _, faces = self.net.detect(img)
        if faces is None:
            return []
        m = self.min_face * h
        return [((float(f[0]), float(f[1]), float(f[2]), float(f[3])), float(f[14])) for f in faces if f[3] >= m]


def from_config(c) -> Detector:
    """The detector an ``[infer]`` config section (``emod.config.Infer``) describes; its defaults live there."""
    if c.detector == "yunet":
        return YuNetDetector(c.yunet_model, c.detect_width, c.min_face, c.max_faces)
    if c.detector == "haar":
        names = tuple(n.strip() for n in c.haar_cascades.split(",") if n.strip())
        return HaarDetector(c.detect_width, c.min_face, c.max_faces, scale_factor=c.haar_scale,
                            min_neighbors=c.haar_neighbors, min_score=c.haar_min_score, cascades=names)
    raise ValueError(f"unknown detector {c.detector!r} (haar or yunet)")
