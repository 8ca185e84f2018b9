"""tools/optimize.py end to end on a tiny network: sensitivity-allocated pruning, a distillation epoch, int8, a registry model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emod.datasets import fer2013
from emod.models import classifier, registry
from test_package import REPO, _tool, _trained_dir


def test_optimize_prunes_distils_quantizes_and_ships(tmp_path, monkeypatch):
    root = fer2013.default_root()
    if not (root / "train").is_dir() and not (root / "fer2013.csv").is_file():
        pytest.skip(f"FER2013 not found under {root} (set $EMOD_FER2013)")
    monkeypatch.chdir(REPO)  # the decoded-data cache is ./.cache, shared with tests/test_evaluate.py
    src = _trained_dir(tmp_path / "run" / "model")
    out, report = tmp_path / "zoo" / "q", tmp_path / "q.json"
    optimize = _tool("optimize")
    rc = optimize.main(["--model", str(src), "--out", str(out), "--macs", "0.8", "--params", "0.9", "--epochs", "1", "--limit", "512",
                        "--calibration", "64", "--tta", "hflip", "--select", "agreement", "--report", str(report),
                        "--no-progress"])
    assert rc == 0
    r = json.loads(report.read_text())
    assert r["prune_scope"] == "hidden" and r["macs_target"] == 0.8 and r["weight_type"] == "uint8" and r["freeze_bn"]
    assert r["macs_after"] <= 0.8 * r["macs_before"] and r["params_after"] < r["params_before"]
    assert r["params_target"] == 0.9 and r["params_after"] <= 0.9 * r["params_before"]
    alloc = r["allocation"]
    assert all(1 <= len(b["options"]) <= 3 and b["keep"] in [b["hidden"]] + [o["keep"] for o in b["options"]] for b in alloc)
    assert 0.0 < r["hidden_removed"] < 1.0 and any(b["keep"] < b["hidden"] for b in alloc)
    assert len(r["history"]) == 1 and 0.0 <= r["public_agreement_with_unpruned"]["int8"] <= 1.0
    assert r["int8_onnx_bytes"] < r["fp32_onnx_bytes"]
    import onnx

    g = onnx.load(str(out / "model.onnx")).graph
    init = {t.name: t.data_type for t in g.initializer}
    conv_w = [n.input[1] for n in g.node if n.op_type == "Conv"]  # in QDQ form a Conv's weight comes from DequantizeLinear
    dq = {n.output[0]: n.input[0] for n in g.node if n.op_type == "DequantizeLinear"}
    assert len(conv_w) > 10 and sum(w in dq and init.get(dq[w]) == onnx.TensorProto.UINT8 for w in conv_w) == len(conv_w) - 1
    m = registry.read_manifest(out)
    assert m["tta"] == "hflip" and m["format"] == "onnx" and m["macs"] == r["macs_after"]
    q = classifier.load(str(out))
    assert q.tta_flip
    p = q.classify(np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8))
    assert p.shape == (3, 7) and np.allclose(p.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("args, message", [(["--macs", "1.5"], "--macs must be a share"),
                                           (["--prune", "1.0"], "--prune must be a share"),
                                           (["--macs", "0.8", "--prune", "0.3"], "not both"),
                                           (["--scope", "all"], "--scope all needs --prune"),
                                           (["--params", "0"], "--params must be a share"),
                                           (["--prune", "0.3", "--params", "0.7"], "--params goes with --macs")])
def test_optimize_refuses_bad_pruning_arguments_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "zoo" / "q"
    rc = _tool("optimize").main(["--model", str(tmp_path / "nothing"), "--out", str(out), *args, "--no-progress"])
    assert rc == 2 and message in capsys.readouterr().err and not out.exists()


def test_optimize_starts_from_the_registry_full_and_refuses_an_onnx_model(tmp_path, capsys):
    from emod.training.build import model_meta

    zoo = REPO / "emod" / "models" / "zoo"
    meta = model_meta(zoo / "full")
    full = registry.read_manifest(zoo / "full")
    assert meta["input_size"] == full["input_size"] and meta["emod_preprocess"] == full["preprocess"]
    assert meta["trained_on"] == full["trained_on"] and meta["labels"] == full["labels"]
    train_dir = _trained_dir(tmp_path / "run" / "model")
    assert model_meta(train_dir)["input_size"] == json.loads((train_dir / "preprocessor_config.json").read_text())["input_size"]
    out = tmp_path / "zoo" / "q"
    rc = _tool("optimize").main(["--model", str(zoo / "quant"), "--out", str(out), "--no-progress"])
    assert rc == 2 and "only an hf-safetensors one" in capsys.readouterr().err and not out.exists()
    rc = _tool("optimize").main(["--model", str(tmp_path / "run"), "--out", str(out), "--no-progress"])
    assert rc == 2 and "its model is in RUN/model" in capsys.readouterr().err and not out.exists()
    (train_dir / "preprocessor_config.json").write_text("{not json")
    rc = _tool("optimize").main(["--model", str(train_dir), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "preprocessor_config.json: not valid JSON" in err and not out.exists()
    changed = tmp_path / "full"
    shutil.copytree(zoo / "full", changed)
    (changed / "config.json").write_text((changed / "config.json").read_text() + " ")
    rc = _tool("optimize").main(["--model", str(changed), "--out", str(out), "--no-progress"])
    assert rc == 2 and "config.json is corrupted or replaced" in capsys.readouterr().err and not out.exists()
