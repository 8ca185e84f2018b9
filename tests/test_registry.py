"""The model registry: manifests, hashes, label order, safe names."""

import json
import shutil

import numpy as np
import pytest

from _fixtures import tiny_models  # noqa: F401
from emod.labels import LABELS
from emod.models import registry
from emod.models.classifier import Classifier, load


@pytest.fixture
def model_copy(tiny_models, tmp_path, monkeypatch):
    """A private copy of the tiny model, found through EMOD_MODELS_DIR."""
    shutil.copytree(tiny_models / "tiny", tmp_path / "tiny")
    monkeypatch.setenv("EMOD_MODELS_DIR", str(tmp_path))
    return tmp_path / "tiny"


def test_label_order_round_trips_through_the_manifest(model_copy):
    """The manifest records the canonical label order and loading yields probabilities in that order."""
    m = json.loads((model_copy / "manifest.json").read_text())
    assert m["labels"] == list(LABELS)
    c = load("tiny")
    p = c.classify([np.full((60, 60), 128, np.uint8)])
    assert p.shape == (1, len(LABELS)) and abs(p.sum() - 1) < 1e-5


def test_corrupted_file_is_refused_naming_the_file(model_copy):
    """A flipped byte in the weights is refused with a message naming the file."""
    f = model_copy / "model.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(registry.ModelError, match="model.onnx.*corrupted"):
        load("tiny")


def test_wrong_label_order_is_refused(model_copy):
    """A manifest with another label order is refused before any weights load."""
    m = json.loads((model_copy / "manifest.json").read_text())
    m["labels"] = list(reversed(m["labels"]))
    (model_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(registry.ModelError, match="label order"):
        registry.find("tiny")


@pytest.mark.parametrize("name", ["../etc", "/abs/path", "a/b", "", "UPPER"])
def test_model_names_are_never_paths(model_copy, name):
    """A model name that could escape the registry is refused."""
    with pytest.raises(registry.ModelError, match="invalid model name"):
        registry.find(name)


def test_unknown_model_lists_the_available_ones(model_copy):
    """An unknown name says which models exist."""
    with pytest.raises(registry.ModelError, match="available: .*tiny"):
        registry.find("nosuch")


def test_a_file_that_is_not_a_model_is_refused(model_copy):
    """A hash-consistent but unparseable model is refused with the runtime's reason."""
    (model_copy / "model.onnx").write_bytes(b"not an onnx model")
    m = json.loads((model_copy / "manifest.json").read_text())
    registry.write_manifest(model_copy, "tiny", "onnx", m["input_size"], m["preprocess"])
    with pytest.raises(registry.ModelError, match="cannot be loaded"):
        Classifier(registry.find("tiny"))
