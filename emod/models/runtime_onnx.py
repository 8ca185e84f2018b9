"""ONNX Runtime backend: runs fp32 or int8 (QDQ) ONNX classifiers on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def session_options(threads: int = 1):
    """ONNX Runtime session options for emod's CPU models (the classifiers and the YuNet detector):
    THREADS intra-op threads, sequential, all graph optimisations, and idle workers that do not spin
    (other stages share these cores)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class OnnxRuntime:
    def __init__(self, path: Path, threads: int = 1, profile_prefix: str | None = None):
        import onnxruntime as ort

        so = session_options(threads)
        if profile_prefix:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def end_profiling(self) -> str:
        return self.session.end_profiling()
