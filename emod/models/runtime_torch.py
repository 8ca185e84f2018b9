"""PyTorch backend: runs a Hugging Face ``MobileNetV2ForImageClassification`` directory.

torch is imported here only, when a model of this format is loaded, so a daemon serving an
ONNX model never pays its memory. The network is emod's own inference module
(:mod:`emod.models.mobilenet_v2`), which reads the same config.json + model.safetensors as
transformers; serving without importing transformers saves ~110 MB and seconds per swap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TorchRuntime:
    def __init__(self, path: Path, threads: int = 1):
        import torch

        from emod.models.mobilenet_v2 import MobileNetV2

        torch.set_num_threads(max(1, threads))
        self._torch = torch
        self.model = MobileNetV2.from_dir(path)

    def logits(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(x)).numpy()
