"""emod's inference MobileNetV2 gives the logits transformers gives, on the same directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

from emod.models.mobilenet_v2 import MobileNetV2

REPO = Path(__file__).resolve().parents[1]


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so that folding them into the convolutions is really tested."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def _both(model: MobileNetV2ForImageClassification, d: Path, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval().save_pretrained(str(d), safe_serialization=True)
    ours = MobileNetV2.from_dir(d)
    with torch.inference_mode():
        return model(pixel_values=x).logits, ours(x)


@pytest.mark.parametrize("cfg", [
    dict(num_channels=1, image_size=64, depth_multiplier=1.0, tf_padding=False),
    dict(num_channels=3, image_size=50, depth_multiplier=0.35, tf_padding=True),  # odd sizes: TF SAME padding
    dict(num_channels=1, image_size=64, depth_multiplier=0.5, tf_padding=False, output_stride=16,
         first_layer_is_expansion=False),  # dilated tail, stem with its own 1x1 expansion
])
def test_same_logits_as_transformers(tmp_path, cfg):
    torch.manual_seed(0)
    model = MobileNetV2ForImageClassification(MobileNetV2Config(num_labels=7, **cfg))
    _randomise_bn(model)
    x = torch.randn(3, cfg["num_channels"], cfg["image_size"], cfg["image_size"])
    theirs, ours = _both(model, tmp_path, x)
    assert theirs.shape == ours.shape == (3, 7)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_channel_pruned_checkpoint_loads(tmp_path):
    """Widths come from the weight shapes, so a torch-pruning result loads as saved."""
    spec = importlib.util.spec_from_file_location("optimize_tool", REPO / "tools" / "optimize.py")
    optimize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(optimize)
    torch.manual_seed(0)
    model = MobileNetV2ForImageClassification(MobileNetV2Config(num_channels=1, image_size=48, depth_multiplier=0.5,
                                                                num_labels=7, tf_padding=False))
    _randomise_bn(model)
    before = sum(p.numel() for p in model.parameters())
    optimize.prune_all(model.eval(), 48, 1, 0.3)
    assert sum(p.numel() for p in model.parameters()) < 0.8 * before
    theirs, ours = _both(model, tmp_path, torch.randn(2, 1, 48, 48))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_hidden_pruned_checkpoint_loads(tmp_path):
    """The expansion-channel pruning of tools/optimize.py (the shipped quant's) gives blocks of uneven widths that load."""
    from emod.training.prune import hidden_importance, prune_hidden

    torch.manual_seed(0)
    model = MobileNetV2ForImageClassification(MobileNetV2Config(num_channels=1, image_size=48, depth_multiplier=0.5,
                                                                num_labels=7, tf_padding=False)).eval()
    _randomise_bn(model)
    widths = prune_hidden(model, hidden_importance(model, [torch.randn(8, 1, 48, 48)]), 0.4)
    assert all(after < before for before, after in widths if before > 8)
    theirs, ours = _both(model, tmp_path, torch.randn(2, 1, 48, 48))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_shipped_full_model_matches():
    d = REPO / "emod" / "models" / "zoo" / "full"
    theirs = MobileNetV2ForImageClassification.from_pretrained(str(d), use_safetensors=True).eval()
    ours = MobileNetV2.from_dir(d)
    x = torch.randn(4, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), theirs(pixel_values=x).logits, atol=1e-4, rtol=1e-4)


def test_missing_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    model = MobileNetV2ForImageClassification(MobileNetV2Config(num_channels=1, image_size=32, depth_multiplier=0.35,
                                                                num_labels=7, tf_padding=False))
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    w = load_file(str(tmp_path / "model.safetensors"))
    del w["mobilenet_v2.layer.3.conv_3x3.convolution.weight"]
    save_file(w, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model\.safetensors: missing tensor mobilenet_v2\.layer\.3\.conv_3x3"):
        MobileNetV2.from_dir(tmp_path)
