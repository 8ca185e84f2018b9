"""Face preprocessing: the only copy, used by training, evaluation, analysis and the daemon.

A face crop (grayscale uint8, any size) is first reduced to FER2013's 48x48 with area
averaging, so a sharp camera crop looks like the training data, then resized to the
model's input size and normalised. FER2013 images are already 48x48, so for them the
first step is the identity.

Every step is exact integer arithmetic (:mod:`emod.models.pixels`), so the classifier's
input tensor is the same on a Raspberry Pi as on a PC, whatever SIMD path OpenCV would take.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emod.models.pixels import area_resize, bgr_to_gray, linear_resize


@dataclass(frozen=True)
class Preprocess:
    input_size: int
    channels: int = 1
    mean: float = 0.5
    std: float = 0.25
    source_size: int = 48

    @classmethod
    def from_manifest(cls, m: dict) -> "Preprocess":
        p = m["preprocess"]
        return cls(int(m["input_size"]), int(p.get("channels", 1)), float(p["mean"]), float(p["std"]), int(p.get("source_size", 48)))

    def as_manifest(self) -> dict:
        return {"channels": self.channels, "mean": self.mean, "std": self.std, "source_size": self.source_size}

    def resize(self, crop: np.ndarray) -> np.ndarray:
        """uint8 crop, grayscale (H, W) or BGR (H, W, 3) -> uint8 (input_size, input_size), the same bytes on every CPU.

        Area averaging to ``source_size`` then bilinear to ``input_size``; on x86 the bytes
        equal OpenCV's ``INTER_AREA``/``INTER_LINEAR`` (bit for bit for FER2013's 48 -> 64).
        """
        if crop.ndim == 3:
            crop = bgr_to_gray(crop)
        s = self.source_size
        if crop.shape != (s, s):
            crop = area_resize(crop, (s, s))
        if s != self.input_size:
            crop = linear_resize(crop, (self.input_size, self.input_size))
        return crop

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S) -> float32 (N, C, S, S)."""
        x = (batch.astype(np.float32) * (1.0 / 255.0) - self.mean) * (1.0 / self.std)
        x = x[:, None]
        if self.channels != 1:
            x = np.repeat(x, self.channels, axis=1)
        return np.ascontiguousarray(x)

    def __call__(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.channels, self.input_size, self.input_size), np.float32)
        return self.normalize(np.stack([self.resize(c) for c in crops]))
