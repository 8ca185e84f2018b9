"""tools/evaluate.py run as a subprocess on the tiny untrained model and a small sample of FER2013."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _fixtures import tiny_models  # noqa: F401
from emod.datasets import fer2013
from emod.labels import LABELS
from emod.models import registry

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "evaluate.py"


@pytest.fixture(scope="module")
def fer_root() -> Path:
    """FER2013's location; skips the test when the data set is not there (CI has it)."""
    root = fer2013.default_root()
    if not root.exists():
        pytest.skip(f"FER2013 not found at {root} (set $EMOD_FER2013)")
    return root


def run(*args: str, models_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EMOD_MODELS_DIR"}
    if models_dir is not None:
        env["EMOD_MODELS_DIR"] = str(models_dir)
    return subprocess.run([sys.executable, str(TOOL), *args, "--no-progress", "--threads", "1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_limited_run_writes_report_and_png(tiny_models, fer_root, tmp_path):
    """A --limit run on PrivateTest writes a JSON report with n == limit, consistent counts, and a PNG beside it."""
    out = tmp_path / "eval" / "tiny.json"
    r = run("--model", str(tiny_models / "tiny"), "--split", "private", "--limit", "64", "--json", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    for key in ("accuracy", "macro_f1", "n", "per_class", "model", "split", "confusion_matrix", "labels"):
        assert key in rep, key
    assert rep["n"] == 64 and rep["limit"] == 64
    assert rep["model"] == "tiny" and rep["split"] == "private" and rep["labels"] == list(LABELS)
    cm = np.array(rep["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == 64
    assert rep["accuracy"] == pytest.approx(np.trace(cm) / 64)
    assert sum(c["support"] for c in rep["per_class"].values()) == 64
    assert set(rep["per_class"]) == set(LABELS)
    png = out.with_name("tiny_confusion.png")
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert "macro-F1" in r.stdout


def test_predictions_are_the_daemon_classifiers(tiny_models, fer_root, tmp_path):
    """The reported confusion matrix is what emod's own Classifier gives on the same sampled PrivateTest faces."""
    out = tmp_path / "e.json"
    assert run("--model", str(tiny_models / "tiny"), "--split", "private", "--limit", "40", "--json", str(out)).returncode == 0
    spec = importlib.util.spec_from_file_location("evaluate_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from emod.metrics import confusion_matrix
    from emod.models.classifier import load

    test = tool.select(fer2013.load(fer_root, cache_dir=REPO / ".cache"), "private", 40)
    pred = load(str(tiny_models / "tiny")).classify(test.images).argmax(1)
    assert json.loads(out.read_text())["confusion_matrix"] == confusion_matrix(test.labels, pred, 7).tolist()


def test_report_paths_are_relative_to_the_checkout_when_inside_it(fer_root, tmp_path):
    """A shipped model's report names it as in every clone (emod/models/zoo/quant), not by this clone's path."""
    out = tmp_path / "q.json"
    assert run("--model", "quant", "--split", "public", "--limit", "16", "--json", str(out)).returncode == 0
    r = json.loads(out.read_text())
    assert r["model_path"] == "emod/models/zoo/quant"
    assert r["data"] == str(fer_root.resolve().relative_to(REPO)) if fer_root.resolve().is_relative_to(REPO) else str(fer_root.resolve())


def test_unknown_model_exits_2_with_one_clear_line(tiny_models):
    """An unknown model name exits with status 2 and a single stderr line naming it and the available models."""
    r = run("--model", "no-such-model", models_dir=tiny_models)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "unknown model 'no-such-model'" in lines[0] and "tiny" in lines[0]


def test_missing_model_directory_exits_2(tmp_path):
    """A model directory without a manifest exits with status 2 and says the manifest is missing."""
    r = run("--model", str(tmp_path / "nothing"))
    assert r.returncode == 2
    assert "missing manifest" in r.stderr and "Traceback" not in r.stderr


def test_write_manifest_records_metrics_and_keeps_hashes(tiny_models, fer_root, tmp_path):
    """--write-manifest stores metrics.<split>, keeps every other manifest key and earlier split, and the model still verifies."""
    d = tmp_path / "tiny"
    shutil.copytree(tiny_models / "tiny", d)
    before = json.loads((d / "manifest.json").read_text())
    assert run("--model", str(d), "--split", "public", "--limit", "32", "--write-manifest").returncode == 0
    r = run("--model", str(d), "--split", "private", "--limit", "24", "--write-manifest", "--json", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr
    after = json.loads((d / "manifest.json").read_text())
    assert {k: v for k, v in after.items() if k != "metrics"} == {k: v for k, v in before.items() if k != "metrics"}
    pub, priv = after["metrics"]["public"], after["metrics"]["private"]
    assert pub["split"] == "public" and pub["n"] == 32
    assert priv["split"] == "private" and priv["n"] == 24
    assert {"accuracy", "macro_f1", "n", "split"} <= set(priv)
    rep = json.loads((tmp_path / "p.json").read_text())
    assert (priv["accuracy"], priv["macro_f1"]) == (rep["accuracy"], rep["macro_f1"])
    registry.verify(registry.ModelInfo("tiny", d, registry.read_manifest(d)))
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "model.onnx"]  # no temporary file left behind


def test_a_closed_stdout_still_writes_the_report(tiny_models, fer_root, tmp_path):
    """``evaluate.py ... | head`` (stdout closed before the table): exit 0, and the report and PNG are still written."""
    out = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if k != "EMOD_MODELS_DIR"}
    p = subprocess.Popen([sys.executable, str(TOOL), "--model", str(tiny_models / "tiny"), "--split", "private", "--limit", "16",
                          "--json", str(out), "--no-progress", "--threads", "1"], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before anything is printed
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "BrokenPipe" not in err and "Traceback" not in err
    assert json.loads(out.read_text())["n"] == 16 and out.with_name("r_confusion.png").is_file()
