"""Export to ONNX and int8 static quantization (QDQ, per-channel) with ONNX Runtime's tools."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emod.models import registry


class LogitsOnly(nn.Module):
    """Wraps a Hugging Face classifier so the exported graph has one plain output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def export_onnx(model: nn.Module, input_size: int, channels: int, path: Path, opset: int = 17) -> None:
    model = LogitsOnly(model).eval()
    x = torch.zeros(1, channels, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False)


def quantize_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray, per_channel: bool = True,
                  method: str = "minmax", weight_type: str = "uint8") -> None:
    """Static int8 quantization (QDQ format, per-channel weights) calibrated on ``calibration`` (N, C, S, S) float32.

    Activations are uint8. Weights are uint8 by default: with int8 weights (U8S8), ONNX Runtime's
    x86 kernels on CPUs without VNNI (AVX2, like the build machine here) add pairs of u8 x s8
    products in saturating 16-bit lanes, so results depend on the CPU. Measured here on the
    unpruned 64 px model, PublicTest top-label agreement with fp32: U8S8 95.1 %, U8U8 97.3 %, and
    97.7 % for the same U8S8 graph run unfused (exact int8 arithmetic in float): the gap is the
    saturation. U8U8 has none on any CPU.

    The stem convolution (it sees the raw normalised pixels) and the classifier stay fp32:
    measured on PublicTest with the pruned MobileNetV2, quantizing them cost 4.0 points
    (60.2 % fp32 -> 56.2 % int8); keeping them fp32 costs 0.3 points and almost no speed.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, data: np.ndarray, batch: int = 32):
            self.batches = iter([data[i : i + batch] for i in range(0, len(data), batch)])

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {"pixel_values": b}

    pre = int8_path.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    import onnx

    graph = onnx.load(str(pre)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    keep_fp32 = convs[:1] + [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    try:
        quantize_static(str(pre), str(int8_path), Reader(calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, per_channel=per_channel,
                        weight_type={"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[weight_type],
                        nodes_to_exclude=keep_fp32,
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[method])
    finally:
        pre.unlink(missing_ok=True)



def export_served_onnx(model_dir: Path, path: Path, input_size: int, opset: int = 17) -> None:
    """fp32 ONNX of the network the daemon serves from MODEL_DIR's ``config.json`` + ``model.safetensors``.

    The graph is :class:`emod.models.mobilenet_v2.MobileNetV2` (BatchNorm folded), the module
    :class:`emod.models.runtime_torch.TorchRuntime` runs, so ONNX Runtime serves the same function
    without PyTorch. Input ``pixel_values`` (N, C, INPUT_SIZE, INPUT_SIZE) float32, C read from the
    stem convolution; output ``logits`` (N, 7). Raises ValueError for an unloadable directory.
    """
    from emod.models.mobilenet_v2 import MobileNetV2

    model = MobileNetV2.from_dir(model_dir).eval()
    channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.zeros(1, channels, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False)


ONNX_NAME = "model.onnx"
TOLERANCE = 1e-5  # largest |p_onnx - p_torch| allowed, probabilities in [0, 1]


def max_prob_diff(model_dir: Path, n: int = 64, seed: int = 0) -> float:
    """Largest absolute difference between the probabilities (softmax of the logits) of PyTorch and ONNX Runtime
    on N random inputs (N, C, S, S) drawn in the normalised pixel range of MODEL_DIR's manifest."""
    from emod.models.classifier import softmax
    from emod.models.runtime_onnx import OnnxRuntime
    from emod.models.runtime_torch import TorchRuntime

    m = registry.read_manifest(model_dir)
    prep = m["preprocess"]
    c, s = int(prep.get("channels", 1)), int(m["input_size"])
    lo, hi = (0 - prep["mean"]) / prep["std"], (1 - prep["mean"]) / prep["std"]
    x = np.random.default_rng(seed).uniform(lo, hi, (n, c, s, s)).astype(np.float32)
    p_torch = softmax(TorchRuntime(model_dir).logits(x))
    p_onnx = softmax(OnnxRuntime(model_dir / ONNX_NAME).logits(x))
    return float(np.abs(p_torch - p_onnx).max())


def add_onnx(model_dir: Path, tolerance: float = TOLERANCE) -> tuple[dict, float]:
    """Write MODEL_DIR/model.onnx and its manifest entry; return (manifest, largest probability difference).
    ValueError for a directory that is not an hf-safetensors registry model; ArithmeticError (and no file left)
    when ONNX Runtime's probabilities differ from PyTorch's by more than TOLERANCE."""
    m = registry.read_manifest(model_dir)
    if m["format"] != "hf-safetensors":
        raise ValueError(f"{model_dir}: an {m['format']} model; only an hf-safetensors one has weights to export")
    export_served_onnx(model_dir, model_dir / ONNX_NAME, int(m["input_size"]))
    diff = max_prob_diff(model_dir)
    if not diff <= tolerance:
        (model_dir / ONNX_NAME).unlink()
        raise ArithmeticError(f"{model_dir / ONNX_NAME}: probabilities differ from PyTorch's by {diff:.2e} (> {tolerance:.0e})")
    m["files"] = {p.name: registry.sha256_file(p) for p in sorted(model_dir.iterdir())
                  if p.is_file() and p.name != registry.MANIFEST}
    m["description"] = m.get("description", "").replace("served with PyTorch", f"served with ONNX Runtime from {ONNX_NAME}, "
                                                        "or PyTorch")
    (model_dir / registry.MANIFEST).write_text(json.dumps(m, indent=2) + "\n")
    return m, diff
