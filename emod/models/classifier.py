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


def _torch_importable() -> bool:
    """Whether PyTorch imports here (it is then imported anyway: the runtime that serves the model needs it)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def backend_for(info: registry.ModelInfo) -> tuple[str, str | None]:
    """Which runtime serves INFO: ``("onnxruntime", ONNX_FILE)`` or ``("torch", None)``.

    An ``onnx`` model runs on ONNX Runtime. An ``hf-safetensors`` model runs on PyTorch when it is
    installed; without it, on the fp32 ``.onnx`` twin its manifest lists (``tools/export_onnx.py``
    writes it; same probabilities within 1e-5). Raises ModelError when neither can serve it."""
    onnx = [f for f in info.manifest["files"] if f.endswith(".onnx")]
    if len(onnx) > 1:
        raise registry.ModelError(f"model {info.name!r}: expected at most one .onnx file, found {onnx}")
    if info.format == "onnx":
        if not onnx:
            raise registry.ModelError(f"model {info.name!r}: an onnx model whose manifest lists no .onnx file")
        return "onnxruntime", onnx[0]
    if _torch_importable():
        return "torch", None
    if onnx:
        return "onnxruntime", onnx[0]
    raise registry.ModelError(f"model {info.name!r} needs PyTorch (pip install 'emod[full]'), or an ONNX twin "
                              f"(python tools/export_onnx.py {info.path}, where PyTorch is installed)")


class Classifier:
    """``classify(crops) -> (N, 7) probabilities`` in :data:`emod.labels.LABELS` order."""

    def __init__(self, info: registry.ModelInfo, threads: int = 1):
        registry.verify(info)
        self.info = info
        self.name = info.name
        self.prep = Preprocess.from_manifest(info.manifest)
        self.tta_flip = info.manifest.get("tta") == "hflip"
        try:
            self.backend, onnx_file = backend_for(info)
            if onnx_file is not None:
                from emod.models.runtime_onnx import OnnxRuntime

                self.runtime = OnnxRuntime(info.path / onnx_file, threads)
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
