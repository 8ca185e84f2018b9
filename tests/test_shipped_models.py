"""The shipped models load offline from the repository and verify."""

import pytest

from emod.labels import LABELS
from emod.models import registry


@pytest.mark.parametrize("name", ["full", "quant"])
def test_shipped_model_verifies_and_keeps_label_order(name, monkeypatch):
    """Each shipped model's files match its manifest and its labels are emod's canonical order."""
    monkeypatch.delenv("EMOD_MODELS_DIR", raising=False)
    info = registry.find(name)
    registry.verify(info)
    assert info.manifest["labels"] == list(LABELS)
    assert "private" in info.manifest["metrics"]

