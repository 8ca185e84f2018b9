"""A loaded, verified emotion classifier: preprocessing + runtime + manifest."""

from __future__ import annotations

import os
import time

import numpy as np

from emod.models import registry
from emod.models.preprocess import Preprocess


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Classifier:
    """``classify(crops) -> (N, 7) probabilities`` in :data:`emod.labels.LABELS` order."""

    def __init__(self, info: registry.ModelInfo, threads: int = 1):
        registry.verify(info)
        self.info = info
        self.name = info.name
        self.prep = Preprocess.from_manifest(info.manifest)
        self.tta_flip = info.manifest.get("tta") == "hflip"
        files = list(info.manifest["files"])
        try:
            if info.format == "onnx":
                from emod.models.runtime_onnx import OnnxRuntime

                onnx = [f for f in files if f.endswith(".onnx")]
                if len(onnx) != 1:
                    raise registry.ModelError(f"model {info.name!r}: expected one .onnx file, found {onnx}")
                self.runtime = OnnxRuntime(info.path / onnx[0], threads)
            else:
                from emod.models.runtime_torch import TorchRuntime

                self.runtime = TorchRuntime(info.path, threads)
        except registry.ModelError:
            raise
        except Exception as e:  # a parser or runtime refusing the file
            raise registry.ModelError(f"model {info.name!r} in {info.path}: cannot be loaded: {e}") from e
        # warm-up: proves the model runs and has the right output before anyone relies on it
        probe = self.classify(np.zeros((1, 48, 48), np.uint8))
        if probe.shape != (1, len(info.manifest["labels"])):
            raise registry.ModelError(f"model {info.name!r}: output shape {probe.shape} does not match its 7 labels")

    def logits_from_tensor(self, x: np.ndarray) -> np.ndarray:
        return self.runtime.logits(x)

    def classify(self, crops) -> np.ndarray:
        x = self.prep(crops)
        if len(x) == 0:
            return np.zeros((0, 7), np.float32)
        if not self.tta_flip:
            return softmax(self.runtime.logits(x).astype(np.float32))
        # test-time augmentation: the mirror image in the same batch, probabilities averaged
        p = softmax(self.runtime.logits(np.concatenate([x, x[..., ::-1]])).astype(np.float32))
        return 0.5 * (p[: len(x)] + p[len(x) :])


def load(name_or_dir: str, threads: int = 1, state_dir: str | None = None) -> Classifier:
    """Load a registry model by name, or a model directory with a manifest (tools only)."""
    if os.sep in name_or_dir or name_or_dir.startswith("."):
        from pathlib import Path

        d = Path(name_or_dir)
        return Classifier(registry.ModelInfo(d.name, d, registry.read_manifest(d)), threads)
    return Classifier(registry.find(name_or_dir, state_dir), threads)
