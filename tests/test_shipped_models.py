"""The shipped models load offline from the repository and verify."""

import json
from pathlib import Path

import pytest

from emod.labels import LABELS
from emod.models import registry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reports"


@pytest.mark.parametrize("name", ["full", "quant"])
def test_shipped_model_verifies_and_keeps_label_order(name, monkeypatch):
    """Each shipped model's files match its manifest and its labels are emod's canonical order."""
    monkeypatch.delenv("EMOD_MODELS_DIR", raising=False)
    info = registry.find(name)
    registry.verify(info)
    assert info.manifest["labels"] == list(LABELS)
    private = info.manifest["metrics"]["private"]
    report = json.loads((DOCS / f"eval-{name}.json").read_text())  # what tools/evaluate.py measured (docs/models.md figures)
    assert private["split"] == report["split"] == "private" and private["n"] == report["n"] == 3589
    assert private["accuracy"] == pytest.approx(report["accuracy"], abs=5e-4)
    assert private["macro_f1"] == pytest.approx(report["macro_f1"], abs=5e-4)
    assert 0.5 < private["accuracy"] < 1.0  # a trained classifier: chance is 1/7 (25 % for the majority label)


@pytest.mark.parametrize("name", ["full", "quant"])
def test_shipped_models_are_trained_on_ferplus_and_record_both_label_sets(name, monkeypatch):
    """The manifest says FER+ and holds the FER+ PrivateTest figures that tools/evaluate.py --labels ferplus wrote."""
    monkeypatch.delenv("EMOD_MODELS_DIR", raising=False)
    m = registry.find(name).manifest
    assert m["trained_on"] == "ferplus"
    fp = m["metrics"]["private_ferplus"]
    report = json.loads((DOCS / f"eval-{name}-ferplus.json").read_text())
    assert report["label_set"] == fp["labels"] == "ferplus" and fp["n"] == report["n"] == 3518
    assert fp["accuracy"] == pytest.approx(report["accuracy"], abs=5e-4)
    assert fp["cross_entropy"] == pytest.approx(report["cross_entropy"], abs=5e-4)
    assert fp["accuracy"] > 0.75  # the FER2013-only pair scored 0.667 here


def test_full_and_quant_agree_on_private_test_faces(monkeypatch):
    """The pruned int8 model stands in for the full one: same top label on >= 95 % of 400 PrivateTest faces."""
    import cv2
    import numpy as np

    from emod.datasets import fer2013
    from emod.models import classifier

    monkeypatch.delenv("EMOD_MODELS_DIR", raising=False)
    root = fer2013.default_root()
    files = sorted((root / "test").glob("*/PrivateTest_*"))
    if not files:
        pytest.skip(f"FER2013 PrivateTest not found under {root} (set $EMOD_FER2013)")
    pick = [files[i] for i in np.random.default_rng(0).permutation(len(files))[:400]]
    faces = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in pick]
    truth = np.array([LABELS.index(p.parent.name) for p in pick])
    full, quant = (classifier.load(name, threads=2).classify(faces).argmax(1) for name in ("full", "quant"))
    agreement = float((full == quant).mean())
    assert agreement >= 0.95, f"full and quant agree on {agreement:.1%} of {len(faces)} faces"
    # both are real classifiers on these faces, not constant outputs that agree trivially
    assert (full == truth).mean() > 0.5 and (quant == truth).mean() > 0.5 and len(set(full.tolist())) >= 5
