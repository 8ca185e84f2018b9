"""Inference-only MobileNetV2 that reads a Hugging Face ``MobileNetV2ForImageClassification`` directory.

The daemon serves the ``full`` model with this module and plain PyTorch instead of
importing transformers: that import costs about 110 MB of resident memory and several
seconds per ``set-model full`` on a Pi-class CPU, for a network that is twenty lines of
convolutions. Training stays on transformers' class; ``tests/test_mobilenet_v2.py`` checks
that both give the same logits on the shipped model and on a pruned one.

The layer widths come from the weight shapes, not from the config, so channel-pruned
checkpoints load too; the config gives the strides (``output_stride``), the padding style,
the activation and the BatchNorm epsilon. Each BatchNorm is folded into its convolution at
load time. Weights are read with safetensors: nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# depthwise strides of the 16 inverted-residual blocks, as in the paper (and transformers)
BLOCK_STRIDES = (2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)
PREFIX = "mobilenet_v2."


def _same_padding(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """TensorFlow "SAME" padding (for checkpoints converted from TF with ``tf_padding``)."""
    pads = []
    for size, k, s, d in zip(reversed(x.shape[-2:]), reversed(conv.kernel_size), reversed(conv.stride), reversed(conv.dilation)):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2 * d, (total - total // 2) * d]
    return F.pad(x, pads)


class ConvBN(nn.Module):
    """Convolution with its BatchNorm folded in, then ReLU6 (or nothing)."""

    def __init__(self, weight: torch.Tensor, bn: dict[str, torch.Tensor], eps: float, stride: int, dilation: int,
                 activation: bool, tf_padding: bool, depthwise: bool):
        super().__init__()
        out_ch, in_per_group, k, _ = weight.shape
        groups = out_ch if depthwise else 1
        self.tf_padding = tf_padding
        self.conv = nn.Conv2d(in_per_group * groups, out_ch, k, stride=stride, dilation=dilation, groups=groups,
                              padding=0 if tf_padding else (k - 1) // 2 * dilation, bias=True)
        scale = bn["weight"] / torch.sqrt(bn["running_var"] + eps)
        with torch.no_grad():
            self.conv.weight.copy_(weight * scale.view(-1, 1, 1, 1))
            self.conv.bias.copy_(bn["bias"] - bn["running_mean"] * scale)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_padding:
            x = _same_padding(x, self.conv)
        x = self.conv(x)
        return F.relu6(x) if self.activation else x


class Block(nn.Module):
    def __init__(self, layers: list[ConvBN], residual: bool):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """Eval-mode MobileNetV2 classifier; ``forward`` takes NCHW float and returns logits."""

    def __init__(self, config: dict, weights: dict[str, torch.Tensor]):
        super().__init__()
        act = config.get("hidden_act", "relu6")
        if act != "relu6":
            raise ValueError(f"unsupported activation {act!r} (only relu6)")
        eps = float(config.get("layer_norm_eps", 0.001))
        tf_padding = bool(config.get("tf_padding", True))
        output_stride = int(config.get("output_stride", 32))
        used: set[str] = set()

        def layer(name: str, stride: int = 1, dilation: int = 1, activation: bool = True) -> ConvBN:
            """One conv + BN; the 3x3 convolutions after the stem's first are depthwise."""
            key = PREFIX + name
            w = weights[f"{key}.convolution.weight"]
            bn = {p: weights[f"{key}.normalization.{p}"] for p in ("weight", "bias", "running_mean", "running_var")}
            used.update({f"{key}.convolution.weight", f"{key}.normalization.num_batches_tracked"}
                        | {f"{key}.normalization.{p}" for p in bn})
            return ConvBN(w, bn, eps, stride, dilation, activation, tf_padding, depthwise=name.endswith("conv_3x3"))

        stem = [layer("conv_stem.first_conv", stride=2)]
        if PREFIX + "conv_stem.expand_1x1.convolution.weight" in weights:
            stem.append(layer("conv_stem.expand_1x1"))
        stem += [layer("conv_stem.conv_3x3"), layer("conv_stem.reduce_1x1", activation=False)]
        blocks: list[nn.Module] = [nn.Sequential(*stem)]

        current, dilation = 2, 1
        for i, s in enumerate(BLOCK_STRIDES):
            if current == output_stride:
                stride, block_dilation = 1, dilation
                dilation *= s
            else:
                stride, block_dilation = s, 1
                current *= s
            expand = layer(f"layer.{i}.expand_1x1")
            dw = layer(f"layer.{i}.conv_3x3", stride=stride, dilation=block_dilation)
            reduce = layer(f"layer.{i}.reduce_1x1", activation=False)
            in_ch = expand.conv.in_channels
            blocks.append(Block([expand, dw, reduce], residual=stride == 1 and in_ch == reduce.conv.out_channels))
        blocks.append(layer("conv_1x1"))
        self.features = nn.Sequential(*blocks)

        w, b = weights["classifier.weight"], weights["classifier.bias"]
        used.update({"classifier.weight", "classifier.bias"})
        self.classifier = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(w)
            self.classifier.bias.copy_(b)
        unused = sorted(set(weights) - used)
        if unused:
            raise ValueError(f"unexpected tensors in the checkpoint: {', '.join(unused[:5])}")
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    @classmethod
    def from_dir(cls, path: str | Path) -> "MobileNetV2":
        """Load ``config.json`` + ``model.safetensors``; a missing or wrong tensor is a ValueError naming it."""
        from safetensors.torch import load_file

        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        if config.get("model_type") != "mobilenet_v2":
            raise ValueError(f"{path / 'config.json'}: model_type is {config.get('model_type')!r}, not 'mobilenet_v2'")
        weights = load_file(str(path / "model.safetensors"))
        try:
            return cls(config, weights)
        except KeyError as e:
            raise ValueError(f"{path / 'model.safetensors'}: missing tensor {e.args[0]}") from None
