"""Face detection: YuNet through ONNX Runtime (default, bundled) or OpenCV's Haar cascade.

Both work on a frame shrunk by the largest whole factor that keeps it at least ``detect_width``
wide (exact block averaging, :func:`emod.models.pixels.shrink_by`: the same pixels on every CPU) and return boxes in the
coordinates of the full frame, largest first. Every box is sane (:func:`sanitize`):
finite, clamped to the frame, at least 2 px a side, and not mostly inside a larger box.
YuNet detects on colour (BGR; a grey frame is expanded to three equal channels) and
also returns 5 landmarks per face, which :mod:`emod.vision.align` uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emod.config import HAAR_CASCADES
from emod.models.pixels import shrink_by
from emod.models.runtime_onnx import session_options
from emod.vision import yunet_decode, yunet_model
from emod.vision.track import iou

Landmarks = tuple[tuple[float, float], ...]  # YuNet: right eye, left eye, nose tip, right mouth corner, left mouth corner
MIN_SIDE = 2.0  # px: a narrower clamped box is dropped
MIN_VISIBLE = 0.25  # a box with less of its area inside the frame is dropped (YuNet's ~1e27 boxes on tiny inputs)
CONTAINED = 0.7  # a box with this much of its area inside a larger kept box is suppressed


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    score: float
    landmarks: Landmarks | None = None  # 5 (x, y) points in frame pixels (YuNet); None for Haar


Raw = tuple[tuple[float, float, float, float], float, "Landmarks | None"]


def sanitize(found: list[Raw], width: int, height: int) -> list[Raw]:
    """The sane subset of raw detections on a WIDTH x HEIGHT image, largest first.

    Drops a detection with any non-finite number (box or score; non-finite landmarks become
    None), one with less than :data:`MIN_VISIBLE` of its area inside the image, and one whose
    clamped box is narrower or shorter than :data:`MIN_SIDE`; clamps every box to the image;
    then suppresses a box with :data:`CONTAINED` of its area inside a larger kept one (a chin
    or a second box inside a face).
    """
    kept: list[Raw] = []
    for (x, y, w, h), score, lm in found:
        if not all(math.isfinite(v) for v in (x, y, w, h, score)) or w <= 0 or h <= 0:
            continue
        x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
        if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE or (x1 - x0) * (y1 - y0) < MIN_VISIBLE * w * h:
            continue
        if lm is not None and not all(math.isfinite(v) for p in lm for v in p):
            lm = None
        kept.append(((x0, y0, x1 - x0, y1 - y0), float(score), lm))
    kept.sort(key=lambda f: (-f[0][2] * f[0][3], f[0][1], f[0][0]))  # largest first, ties by position: order-independent
    out: list[Raw] = []
    for f in kept:
        if all(_inside(f[0], g[0]) < CONTAINED for g in out):
            out.append(f)
    return out


def _inside(a, b) -> float:
    """The fraction of box A's area that lies inside box B."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3])


class Detector:
    def __init__(self, detect_width: int = 320, min_face: float = 0.08, max_faces: int = 8):
        self.detect_width, self.min_face, self.max_faces = detect_width, min_face, max_faces
        self.dropped = 0

    def _small(self, frame: np.ndarray) -> tuple[np.ndarray, int]:
        """FRAME shrunk by the largest whole factor that keeps it at least ``detect_width`` wide, and that factor.

        Exact block averaging (:func:`emod.models.pixels.shrink_by`): the same pixels on every CPU,
        and a camera's 640, 1280 or 1920 px frames come out exactly 320 wide.
        """
        factor = min(max(1, frame.shape[1] // self.detect_width), frame.shape[0])
        return shrink_by(frame, factor), factor

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Faces in FRAME (H x W x 3 BGR or H x W grey uint8), largest first, at most ``max_faces``; boxes clamped to it."""
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[..., 0]
        small, f = self._small(frame)
        found = sanitize(self._detect(small), small.shape[1], small.shape[0])
        H, W = frame.shape[:2]
        out = []
        for (x, y, w, h), score, lm in found:
            x0, y0 = min(W - 1, round(x * f)), min(H - 1, round(y * f))
            x1, y1 = min(W, round((x + w) * f)), min(H, round((y + h) * f))
            marks = None if lm is None else tuple((px * f, py * f) for px, py in lm)
            out.append(Detection((x0, y0, max(1, x1 - x0), max(1, y1 - y0)), score, marks))
        # largest first, ties by position (top, then left): the same faces on every run, whatever order the detector found them in
        out.sort(key=lambda d: (-d.box[2] * d.box[3], d.box[1], d.box[0]))
        self.dropped = max(0, len(out) - self.max_faces)  # faces found beyond max_faces (reported as faces_dropped)
        return out[: self.max_faces]

    def _detect(self, small: np.ndarray) -> list[Raw]:
        raise NotImplementedError


class HaarDetector(Detector):
    """One or more of OpenCV's frontal-face cascades; a later cascade adds only the faces the earlier ones missed.

    ``min_neighbors`` and ``min_score`` (a floor on the cascade's final-stage weight) trade found
    faces for false ones; docs/detectors.md has the measured trade-off. Settings come from
    ``emod.config.Infer`` (one place for their defaults) through :func:`from_config`. No landmarks.
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
        found: list[Raw] = []
        for cascade in self.cascades:
            boxes, _, weights = cascade.detectMultiScale3(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(m, m), outputRejectLevels=True
            )
            new = [(tuple(map(float, b)), float(w), None) for b, w in zip(boxes, np.ravel(weights)) if w > self.min_score]
            found += [f for f in new if all(iou(f[0], g[0]) < 0.3 for g in found)]
        return found


class YuNetDetector(Detector):
    """YuNet 2023mar run by ONNX Runtime: the bundled, SHA-256-checked model, or ``model_path`` when given.

    The bundled file declares any input size (``tools/yunet_dynamic.py``); the frame is padded to
    multiples of 32 and decoded by :func:`emod.vision.yunet_decode.decode`. A file that declares
    a fixed size (the model zoo's 640 x 640) gets the frame shrunk to fit, if larger, and padded.
    ONNX Runtime rather than ``cv2.FaceDetectorYN``: OpenCV's DNN module found different faces
    on arm64 than on x86 for the same frame (docs/measurements.md: The Pi install, checked).

    Raises :class:`emod.vision.yunet_model.DetectorModelError` (a ``ModelError``) naming the file when
    the bundled copy is corrupted, a given file is missing, or ONNX Runtime cannot load it as YuNet.
    """

    name = "yunet"

    def __init__(self, model_path: str = "", *args, score_threshold: float = 0.7, nms_threshold: float = 0.3,
                 top_k: int = 50, **kwargs):
        super().__init__(*args, **kwargs)
        import onnxruntime as ort

        self.model_path, buf = yunet_model.load_bytes(model_path)
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k
        so = session_options(1)
        so.log_severity_level = 3  # no per-run shape warnings
        try:
            self.session = ort.InferenceSession(buf, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
            raise yunet_model.DetectorModelError(f"YuNet model {self.model_path}: ONNX Runtime cannot load it "
                                                 f"({str(e).strip().splitlines()[-1][:200]})") from None
        inputs, outputs = self.session.get_inputs(), {o.name for o in self.session.get_outputs()}
        missing = sorted(set(yunet_decode.OUTPUTS) - outputs)
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or missing:
            raise yunet_model.DetectorModelError(f"YuNet model {self.model_path}: not a YuNet 2023mar model "
                                                 f"(needs one N x 3 x H x W input and outputs {', '.join(missing)})")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        h, w = inputs[0].shape[2:]
        self.fixed = (w, h) if isinstance(w, int) and isinstance(h, int) else None  # (width, height) or None

    def _detect(self, small):
        img = small if small.ndim == 3 else np.repeat(small[..., None], 3, axis=2)
        h, w = img.shape[:2]
        m = self.min_face * h  # smallest face height kept, in SMALL's pixels
        f = 1
        if self.fixed is not None:
            pw, ph = self.fixed
            f = max(-(-w // pw), -(-h // ph))  # the smallest whole factor that fits the frame into the model's size
            if f > 1:
                img = shrink_by(img, f)
                h, w = img.shape[:2]
        else:
            pw, ph = yunet_decode.padded_size(w, h)
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :h, :w] = img.transpose(2, 0, 1)
        outputs = dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: x})))
        found = yunet_decode.decode(outputs, pw, ph, self.score_threshold, self.nms_threshold, self.top_k)
        return [((bx * f, by * f, bw * f, bh * f), score, tuple((px * f, py * f) for px, py in lm))
                for (bx, by, bw, bh), score, lm in found if bh * f >= m]


def from_config(c) -> Detector:
    """The detector an ``[infer]`` config section (``emod.config.Infer``) describes; its defaults live there."""
    if c.detector == "yunet":
        return YuNetDetector(c.yunet_model, c.detect_width, c.min_face, c.max_faces, score_threshold=c.yunet_score)
    if c.detector == "haar":
        names = tuple(n.strip() for n in c.haar_cascades.split(",") if n.strip())
        return HaarDetector(c.detect_width, c.min_face, c.max_faces, scale_factor=c.haar_scale,
                            min_neighbors=c.haar_neighbors, min_score=c.haar_min_score, cascades=names)
    raise ValueError(f"unknown detector {c.detector!r} (haar or yunet)")
