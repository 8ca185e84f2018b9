"""Build and repair ``MobileNetV2ForImageClassification`` for 7 FER2013 emotions."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from emod.labels import LABELS


def fix_batchnorm(model: nn.Module, momentum: float = 0.1) -> int:
    """Give every BatchNorm PyTorch's momentum convention.

    transformers builds MobileNetV2 BatchNorm with ``momentum=0.997`` (a TensorFlow decay),
    which PyTorch reads as "running statistics = almost only the last batch".
    Returns how many layers were changed.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum != momentum:
            m.momentum = momentum
            n += 1
    return n


def reinit(model: nn.Module) -> None:
    """He initialisation for convolutions, small normal for the classifier, unit BatchNorm."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build(
    input_size: int,
    channels: int = 1,
    width: float = 1.0,
    dropout: float = 0.2,
    pretrained: str | None = None,
) -> nn.Module:
    """A from-scratch model, or one fine-tuned from a local checkpoint directory (or hub id, if reachable)."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    id2label = dict(enumerate(LABELS))
    label2id = {v: k for k, v in id2label.items()}
    if pretrained:
        from transformers import AutoConfig

        # An emod checkpoint (same labels, same order) keeps its head: that is a continuation.
        # Anything else (e.g. an ImageNet checkpoint) gets a fresh 7-way head.
        src = AutoConfig.from_pretrained(pretrained)
        src_labels = [src.id2label[i] for i in range(src.num_labels)]
        model = MobileNetV2ForImageClassification.from_pretrained(
            pretrained, num_labels=len(LABELS), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
        )
        fix_batchnorm(model)
        if src_labels != list(LABELS):
            nn.init.normal_(model.classifier.weight, 0, 0.01)
            nn.init.zeros_(model.classifier.bias)
        return model
    cfg = MobileNetV2Config(
        num_channels=channels,
        image_size=input_size,
        depth_multiplier=width,
        num_labels=len(LABELS),
        id2label=id2label,
        label2id=label2id,
        tf_padding=False,
        classifier_dropout_prob=dropout,
    )
    model = MobileNetV2ForImageClassification(cfg)
    reinit(model)
    fix_batchnorm(model)
    return model


def load_dir(path: str | Path) -> nn.Module:
    """Load a saved model directory (safetensors only) with PyTorch BatchNorm semantics."""
    from transformers import MobileNetV2ForImageClassification

    model = MobileNetV2ForImageClassification.from_pretrained(str(path), use_safetensors=True)
    fix_batchnorm(model)
    return model
