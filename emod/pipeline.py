"""Frame -> faces -> emotions: the one detection + classification path.

Used by the infer stage and by ``emod analyze``, so offline analysis and the daemon
agree by construction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from emod.labels import LABELS
from emod.vision.align import aligned_crop
from emod.vision.crop import crop_face


@dataclass
class FaceResult:
    box: tuple[int, int, int, int]
    score: float | None  # the detector's; None for a crop taken whole (no detection)
    probs: list[float]
    label: str

    def as_dict(self) -> dict:
        return {"box": list(self.box), "score": None if self.score is None else round(self.score, 4), "probs": [round(p, 5) for p in self.probs], "label": self.label}


class FacePipeline:
    """Detector + classifier. A face with landmarks is cropped upright and FER-framed when ALIGN = (scale, eye_y)
    is given (:func:`emod.vision.align.aligned_crop`); otherwise, and for Haar (no landmarks), the square around
    its box grown by MARGIN (:func:`emod.vision.crop.crop_face`)."""

    def __init__(self, detector, classifier, margin: float = 0.1, align: tuple[float, float] | None = None):
        self.detector, self.classifier, self.margin, self.align = detector, classifier, margin, align
        self.faces_dropped = 0  # faces of the last frame left out by the detector's max_faces (largest kept)

    @classmethod
    def from_config(cls, c, classifier, detector=None) -> "FacePipeline":
        """The pipeline an ``[infer]`` section (``emod.config.Infer``) describes, around CLASSIFIER (and DETECTOR, if built)."""
        from emod.vision import detect

        return cls(detector or detect.from_config(c), classifier, c.margin,
                   (c.align_scale, c.align_eye_y) if c.align else None)

    def crop(self, frame: np.ndarray, d) -> np.ndarray:
        """The classifier's crop of detection D in FRAME (same channels as FRAME)."""
        if self.align is not None and d.landmarks is not None:
            return aligned_crop(frame, d.landmarks, *self.align)
        return crop_face(frame, d.box, self.margin)

    def process(self, frame: np.ndarray) -> tuple[list[FaceResult], float, float]:
        """FRAME (H x W x 3 BGR, or H x W grey, uint8) -> (faces, detect_ms, classify_ms).

        The detector sees the frame as it is (colour, in OpenCV's B, G, R order from every source);
        the classifier's preprocessing makes each crop grey. All faces are classified in one batch.
        """
        t0 = time.perf_counter()
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[..., 0]
        dets = self.detector.detect(frame)
        self.faces_dropped = getattr(self.detector, "dropped", 0)
        t1 = time.perf_counter()
        faces: list[FaceResult] = []
        if dets:
            crops = [self.crop(frame, d) for d in dets]  # colour crops: Preprocess makes them gray exactly
            probs = self.classifier.classify(crops)
            for d, p in zip(dets, probs):
                faces.append(FaceResult(d.box, d.score, p.tolist(), LABELS[int(np.argmax(p))]))
        t2 = time.perf_counter()
        return faces, (t1 - t0) * 1e3, (t2 - t1) * 1e3

    def classify_whole(self, frame: np.ndarray) -> tuple[list[FaceResult], float, float]:
        """FRAME taken as one face crop, as it is (no detection; a face crop such as FER2013's 48x48):
        ``([FaceResult with the whole frame as box and score None], 0.0, classify_ms)``."""
        t0 = time.perf_counter()
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[..., 0]
        p = self.classifier.classify([frame])[0]
        h, w = frame.shape[:2]
        face = FaceResult((0, 0, w, h), None, p.tolist(), LABELS[int(np.argmax(p))])
        return [face], 0.0, (time.perf_counter() - t0) * 1e3
