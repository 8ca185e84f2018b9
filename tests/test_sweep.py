"""tools/sweep.py: several real train.py runs side by side on a tiny folder, collected; a failing one named."""

from __future__ import annotations

import json
import tarfile

import torch

from test_package import _tool
from test_train_cli import _fer_folder


def test_sweep_runs_side_by_side_collects_and_names_a_failed_run(tmp_path, monkeypatch, capsys) -> None:
    data, out, got = tmp_path / "fer", tmp_path / "sweep", tmp_path / "collected"
    _fer_folder(data, with_private=False)
    monkeypatch.chdir(tmp_path)  # train.py caches the decoded images in ./.cache
    common = f"--data {data} --input-size 48 --width 0.35 --batch-size 8 --device cpu --epochs 2"
    rc = _tool("sweep").main(["--out", str(out), "--minutes", "2", "--threads", "1", "--common", common,
                              "--run", "a", "--seed 0", "--run", "b", "--seed 1 --mixup 0.2 --width 0.5", "--run", "bad", "--lr abc",
                              "--collect", str(got), "--max-file-mb", "2.2"])
    assert rc == 1
    captured = capsys.readouterr()
    err, capsys_out = captured.err, captured.out
    assert "run bad failed (rc 2)" in err and "invalid float value: 'abc'" in err
    rows = {r["run"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert rows["a"]["rc"] == rows["b"]["rc"] == 0 and rows["a"]["epochs_done"] == rows["b"]["epochs_done"] == 2
    assert 0.0 <= rows["a"]["best_public_acc"] <= 1.0 and rows["bad"]["epochs_done"] == 0
    assert sorted(p.name for p in got.iterdir()) == ["a.safetensors", "b.safetensors", "logs.tgz"]
    assert (got / "a.safetensors").read_bytes() == (out / "a" / "model" / "model.safetensors").read_bytes()
    assert "b.safetensors (float16:" in capsys_out
    from safetensors.torch import load_file

    full, half = load_file(out / "b" / "model" / "model.safetensors"), load_file(got / "b.safetensors")
    assert full.keys() == half.keys() and {v.dtype for v in half.values() if v.is_floating_point()} == {torch.float16}
    assert all(torch.allclose(full[k].float(), half[k].float(), rtol=1e-3, atol=1e-4) for k in full if full[k].is_floating_point())
    with tarfile.open(got / "logs.tgz") as t:
        assert {"sweep.json", "a.log", "bad.log", "a/metrics.json", "b/curves.png", "a/model/config.json"} <= set(t.getnames())


def test_sweep_refuses_bad_names_and_budgets(tmp_path) -> None:
    import pytest

    for args in (["--run", "a", "", "--run", "a", ""], ["--run", "a/b", ""], ["--minutes", "0", "--run", "a", ""]):
        with pytest.raises(SystemExit) as e:
            _tool("sweep").main(["--out", str(tmp_path), *(["--minutes", "1"] if "--minutes" not in args else []), *args])
        assert e.value.code == 2
