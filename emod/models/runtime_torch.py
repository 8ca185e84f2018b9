"""PyTorch backend: runs a Hugging Face ``MobileNetV2ForImageClassification`` directory.

torch and transformers are imported here only, when a model of this format is loaded,
so a daemon serving an ONNX model never pays their memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class TorchRuntime:
    def __init__(self, path: Path, threads: int = 1):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import MobileNetV2ForImageClassification

        torch.set_num_threads(max(1, threads))
        self._torch = torch
        self.model = MobileNetV2ForImageClassification.from_pretrained(str(path), use_safetensors=True, local_files_only=True)
        self.model.eval()

    def logits(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(pixel_values=self._torch.from_numpy(x)).logits.numpy()
