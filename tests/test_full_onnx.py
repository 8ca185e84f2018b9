"""The shipped `full` model serves without PyTorch: its fp32 ONNX twin gives PyTorch's probabilities."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from _fixtures import REPO
from emod.models import classifier, registry
from emod.training.export import ONNX_NAME, add_onnx, max_prob_diff

FULL = REPO / "emod" / "models" / "zoo" / "full"
PROB_TOL = 1e-5  # largest |p_onnx - p_torch|; measured 4.5e-07 on the shipped full (tools/export_onnx.py prints it)


def test_full_lists_its_onnx_twin_with_its_hash() -> None:
    m = registry.read_manifest(FULL)
    assert m["format"] == "hf-safetensors" and ONNX_NAME in m["files"]
    assert registry.sha256_file(FULL / ONNX_NAME) == m["files"][ONNX_NAME]


def test_full_onnx_gives_the_pytorch_probabilities(monkeypatch) -> None:
    """Random normalised inputs, and real-shaped uint8 crops through the whole classifier (preprocessing, hflip TTA)."""
    assert max_prob_diff(FULL) < PROB_TOL
    info = registry.ModelInfo("full", FULL, registry.read_manifest(FULL))
    with_torch = classifier.Classifier(info)
    monkeypatch.setattr(classifier, "_torch_importable", lambda: False)
    without = classifier.Classifier(info)
    assert (with_torch.backend, without.backend) == ("torch", "onnxruntime")
    crops = list(np.random.default_rng(1).integers(0, 256, (16, 48, 48), dtype=np.uint8))
    p_torch, p_onnx = with_torch.classify(crops), without.classify(crops)
    assert np.abs(p_torch - p_onnx).max() < PROB_TOL
    assert (p_torch.argmax(1) == p_onnx.argmax(1)).all()


def test_export_is_reproducible(tmp_path) -> None:
    """tools/export_onnx.py's step on a copy of full rewrites the same bytes and manifest (what a retrain re-runs)."""
    d = tmp_path / "full"
    shutil.copytree(FULL, d)
    (d / ONNX_NAME).unlink()
    _, diff = add_onnx(d)
    assert diff < PROB_TOL
    assert json.loads((d / "manifest.json").read_text()) == json.loads((FULL / "manifest.json").read_text())


def test_export_cli_names_a_bad_directory(tmp_path) -> None:
    r = subprocess.run([sys.executable, str(REPO / "tools" / "export_onnx.py"), str(tmp_path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "export_onnx:" in r.stderr and "manifest" in r.stderr, r.stderr


def test_no_torch_and_no_twin_names_the_fix(tmp_path, monkeypatch) -> None:
    d = tmp_path / "full"
    shutil.copytree(FULL, d)
    (d / ONNX_NAME).unlink()
    m = registry.read_manifest(d)
    del m["files"][ONNX_NAME]
    monkeypatch.setattr(classifier, "_torch_importable", lambda: False)
    with pytest.raises(registry.ModelError, match=r"pip install 'emod\[full\]'.*tools/export_onnx.py"):
        classifier.backend_for(registry.ModelInfo("full", d, m))


def test_export_refuses_an_onnx_model(tmp_path) -> None:
    d = tmp_path / "quant"
    shutil.copytree(REPO / "emod" / "models" / "zoo" / "quant", d)
    with pytest.raises(ValueError, match="only an hf-safetensors"):
        add_onnx(d)
