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


class Ensemble(nn.Module):
    """Teachers for distillation, averaged: ``forward(pixel_values)`` returns an object whose ``logits``
    (N, 7) are the log of the mean of the teachers' probabilities (so a softmax of them is that mean)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, pixel_values: torch.Tensor):
        from types import SimpleNamespace

        probs = torch.stack([m(pixel_values=pixel_values).logits.float().softmax(1) for m in self.models]).mean(0)
        return SimpleNamespace(logits=probs.clamp_min(1e-8).log())


def model_meta(path: str | Path) -> dict:
    """What a saved model was trained for: ``input_size`` (px), ``emod_preprocess`` (as
    ``Preprocess.as_manifest()``), ``labels``, ``trained_on`` (``fer2013`` or ``ferplus``) and
    ``tta`` (``hflip`` or None: the test-time augmentation it is served with).

    PATH is ``tools/train.py``'s ``OUT/model`` (read from its ``preprocessor_config.json``) or a
    registry model directory of format ``hf-safetensors`` such as ``emod/models/zoo/full`` (read from
    its ``manifest.json``, and every file's SHA-256 checked against it). Raises ValueError naming the
    file when PATH is neither, a file is malformed, or a registry model's file is missing or changed.
    """
    import json

    from emod.models import registry

    p = Path(path)
    prep, manifest = p / "preprocessor_config.json", p / registry.MANIFEST
    if prep.is_file():
        try:
            meta = json.loads(prep.read_text())
        except ValueError as e:
            raise ValueError(f"{prep}: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or "emod_preprocess" not in meta or "input_size" not in meta:
            raise ValueError(f"{prep}: no emod_preprocess / input_size (not written by tools/train.py)")
        return {"labels": list(LABELS), "trained_on": "fer2013", "tta": None, **meta}
    if manifest.is_file():
        m = registry.read_manifest(p)  # ModelError (a ValueError) names the file and the problem
        if m["format"] != "hf-safetensors":
            raise ValueError(f"{p}: an {m['format']} registry model; only an hf-safetensors one (such as full) has "
                             "trainable weights")
        registry.verify(registry.ModelInfo(m["name"], p, m))
        return {"input_size": m["input_size"], "emod_preprocess": m["preprocess"], "labels": m["labels"],
                "trained_on": m.get("trained_on", "fer2013"), "tta": m.get("tta")}
    hint = " (a train.py run? its model is in RUN/model)" if (p / "model" / "config.json").is_file() else ""
    raise ValueError(f"{p}: not a model directory (no preprocessor_config.json or manifest.json){hint}")


def load_teachers(paths: list[str | Path], input_size: int, preprocess: dict | None = None) -> Ensemble:
    """Load ``train.py`` model directories as an eval-mode :class:`Ensemble`.

    Raises ValueError naming the directory when one is missing, is not a model directory, or was
    trained on other inputs than the student's (input size, channels, normalisation ``preprocess``
    as in ``Preprocess.as_manifest()``) or on other labels than :data:`emod.labels.LABELS`, in order:
    the teachers see the student's batches, and their probabilities are matched class by class.
    """
    import json

    models = []
    for p in map(Path, paths):
        if not p.exists():
            raise ValueError(f"teacher {p}: no such directory")
        if not (p / "config.json").is_file():
            hint = " (a train.py run? its model is in RUN/model)" if (p / "model" / "config.json").is_file() else ""
            raise ValueError(f"teacher {p}: not a model directory (no config.json){hint}")
        prep = p / "preprocessor_config.json"
        meta = json.loads(prep.read_text()) if prep.is_file() else {}
        size = meta.get("input_size")
        if size is not None and int(size) != input_size:
            raise ValueError(f"teacher {p}: trained at {size} px, the student at {input_size} px")
        if preprocess is not None and meta.get("emod_preprocess") not in (None, preprocess):
            raise ValueError(f"teacher {p}: preprocessing {meta['emod_preprocess']}, the student's {preprocess}")
        if meta.get("labels") not in (None, list(LABELS)):
            raise ValueError(f"teacher {p}: labels {meta['labels']}, not {list(LABELS)}")
        models.append(load_dir(p))
    return Ensemble(models).eval()

