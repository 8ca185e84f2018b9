"""YuNet's raw outputs -> face detections (boxes, 5 landmarks, scores), in numpy.

YuNet 2023mar predicts, on each cell of three grids (strides 8, 16 and 32 px over the padded
input, cells in row-major order), a class score ``cls``, an objectness ``obj``, a box ``bbox``
(dx, dy, log w, log h, in units of the stride, centred on the cell's corner + (dx, dy)) and 5
landmarks ``kps`` (x, y offsets from the cell's corner, in strides). A face's score is
sqrt(clip(cls) * clip(obj)). This is the decoding ``cv2.FaceDetectorYN`` does (OpenCV's
``face_detect.cpp``), written here so the detector can run under ONNX Runtime, whose float
results agree across x86 and arm64 to about 1e-6 where OpenCV's DNN module does not.
"""

from __future__ import annotations

import cv2
import numpy as np

STRIDES = (8, 16, 32)
OUTPUTS = tuple(f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES)  # the model's output names
ALIGN = 32  # the input's sides are padded up to a multiple of the coarsest stride


def padded_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) rounded up to multiples of :data:`ALIGN`: the input YuNet is run on."""
    return -(-width // ALIGN) * ALIGN, -(-height // ALIGN) * ALIGN


def decode(outputs: dict[str, np.ndarray], width: int, height: int, score_threshold: float,
           nms_threshold: float = 0.3, top_k: int = 50) -> list[tuple[tuple[float, float, float, float], float, tuple]]:
    """Detections from YuNet's OUTPUTS (name -> array, ``cls_8`` ... ``kps_32``) on a WIDTH x HEIGHT input.

    WIDTH and HEIGHT are the padded input's size (multiples of 32). Returns
    ``((x, y, w, h), score, landmarks)`` tuples in input pixels, after dropping scores below
    SCORE_THRESHOLD and non-maximum suppression (IoU above NMS_THRESHOLD, best TOP_K kept, by
    ``cv2.dnn.NMSBoxes``); landmarks are 5 (x, y) points: right eye, left eye, nose tip, right and
    left mouth corners. Raises ``KeyError`` when an output is missing and ``ValueError`` when an
    output's anchor count does not match the grid.
    """
    boxes, scores, marks = [], [], []
    for s in STRIDES:
        cols, rows = width // s, height // s
        n = cols * rows
        cls, obj = outputs[f"cls_{s}"].reshape(-1), outputs[f"obj_{s}"].reshape(-1)
        bbox, kps = outputs[f"bbox_{s}"].reshape(-1, 4), outputs[f"kps_{s}"].reshape(-1, 10)
        if not len(cls) == len(obj) == len(bbox) == len(kps) == n:
            raise ValueError(f"YuNet stride {s}: {len(cls)} anchors for a {cols} x {rows} grid")
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        keep = np.flatnonzero(score >= score_threshold)
        if not len(keep):
            continue
        c, r = (keep % cols).astype(np.float32), (keep // cols).astype(np.float32)
        b = bbox[keep]
        w, h = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
        cx, cy = (c + b[:, 0]) * s, (r + b[:, 1]) * s
        boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], 1))
        k = kps[keep].reshape(-1, 5, 2)
        marks.append((k + np.stack([c, r], 1)[:, None, :]) * s)
        scores.append(score[keep])
    if not boxes:
        return []
    boxes_a, scores_a, marks_a = np.concatenate(boxes), np.concatenate(scores), np.concatenate(marks)
    picked = cv2.dnn.NMSBoxes(boxes_a.tolist(), scores_a.tolist(), score_threshold, nms_threshold, top_k=top_k)
    return [(tuple(float(v) for v in boxes_a[i]), float(scores_a[i]), tuple((float(x), float(y)) for x, y in marks_a[i]))
            for i in np.ravel(picked)]
