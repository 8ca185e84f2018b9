"""tools/package.py: a training run's model directory becomes a registry model the daemon loads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

from emod.labels import LABELS
from emod.models import classifier
from emod.models.preprocess import Preprocess

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _trained_dir(path: Path, labels=LABELS) -> Path:
    """What tools/train.py writes to OUT/model (save_model_dir), for an untrained tiny network."""
    train = _tool("train")
    torch.manual_seed(0)
    model = MobileNetV2ForImageClassification(MobileNetV2Config(
        num_channels=1, image_size=48, depth_multiplier=0.35, tf_padding=False, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})).eval()
    train.save_model_dir(model, Preprocess(48), path)
    return path


def test_package_makes_a_loadable_registry_model(tmp_path, capsys) -> None:
    src = _trained_dir(tmp_path / "run" / "model")
    out = tmp_path / "zoo" / "mine"
    assert _tool("package").main([str(src), str(out), "--tta", "hflip"]) == 0
    assert "wrote" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["name"] == "mine" and m["format"] == "hf-safetensors" and m["labels"] == list(LABELS)
    assert m["input_size"] == 48 and m["tta"] == "hflip" and set(m["files"]) == {"config.json", "model.safetensors", "model.onnx"}
    clf = classifier.load(str(out))
    probs = clf.classify([np.full((48, 48), 128, np.uint8), np.zeros((60, 60), np.uint8)])
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_package_refuses_foreign_labels_and_keeps_the_old_model(tmp_path, capsys) -> None:
    good = _trained_dir(tmp_path / "good")
    out = tmp_path / "zoo" / "full"
    assert _tool("package").main([str(good), str(out)]) == 0
    before = (out / "manifest.json").read_bytes()
    bad = _trained_dir(tmp_path / "bad", labels=list(reversed(LABELS)))
    assert _tool("package").main([str(bad), str(out)]) == 2
    assert "are not emod's" in capsys.readouterr().err
    assert (out / "manifest.json").read_bytes() == before
    assert not (tmp_path / "zoo" / "full.new").exists()
