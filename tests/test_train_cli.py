"""tools/train.py end to end on a tiny hand-made FER2013 folder (seconds on a CPU)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from emod.labels import LABELS
from test_package import _tool


def _fer_folder(root, with_private: bool) -> None:
    """3 training and 1 PublicTest image per class (and 1 PrivateTest with ``with_private``), all distinct."""
    rng = np.random.default_rng(0)
    for label in LABELS:
        names = [("train", f"Training_{i}") for i in range(3)] + [("test", "PublicTest_0")]
        names += [("test", "PrivateTest_0")] if with_private else []
        for split, stem in names:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{stem}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))


@pytest.mark.parametrize("with_private", [True, False])
def test_train_reports_privatetest_once_or_says_where_to(tmp_path, monkeypatch, capsys, with_private) -> None:
    data, out = tmp_path / "fer", tmp_path / "run"
    _fer_folder(data, with_private)
    monkeypatch.chdir(tmp_path)  # train.py caches the decoded images in ./.cache
    rc = _tool("train").main(["--data", str(data), "--out", str(out), "--epochs", "2", "--input-size", "48", "--width", "0.35",
                              "--batch-size", "8", "--device", "cpu", "--threads", "1", "--no-progress"])
    assert rc == 0
    said = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert (out / "model" / "model.safetensors").is_file() and (out / "curves.png").is_file()
    assert metrics["n_train"] == 3 * len(LABELS) and metrics["n_private"] == (len(LABELS) if with_private else 0)
    if with_private:
        assert 0.0 <= metrics["private_acc"] <= 1.0 and "PrivateTest fer2013" in said
    else:  # a copy of the data made to train elsewhere (e.g. on a GPU machine) has no PrivateTest: no figure, and why
        assert "private_acc" not in metrics and "private_acc_fer2013" not in metrics
        assert f"no PrivateTest images in {data}" in said and f"tools/package.py {out / 'model'} DIR" in said and "--labels fer2013" in said


def test_fit_epochs_fills_the_time_left_within_bounds() -> None:
    fit = _tool("train").fit_epochs
    assert fit(200, seconds_left=100.0, epoch_seconds=10.0) == 2 + 9  # 95 % of 100 s at 10 s an epoch, after 2 done
    assert fit(5, seconds_left=100.0, epoch_seconds=10.0) == 5  # never more than asked
    assert fit(200, seconds_left=-30.0, epoch_seconds=10.0) == 3  # out of time: one more epoch, to anneal


def test_a_time_budget_shortens_the_schedule_and_records_it(tmp_path, monkeypatch, capsys) -> None:
    data, out = tmp_path / "fer", tmp_path / "run"
    _fer_folder(data, with_private=False)
    monkeypatch.chdir(tmp_path)
    rc = _tool("train").main(["--data", str(data), "--out", str(out), "--epochs", "40", "--time-budget", "0.001",
                              "--input-size", "48", "--width", "0.35", "--batch-size", "8", "--device", "cpu",
                              "--threads", "1", "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3] and metrics["args"]["epochs"] == "3"
    assert metrics["args"]["epochs_asked"] == "40"
    assert "--time-budget 0.001 min: 3 epochs fit (of 40)" in capsys.readouterr().out
    # the shortened one-cycle schedule annealed to its end (the 40-epoch one would still be warming up, near 1.4e-3)
    assert metrics["history"][-1]["lr"] < 0.05 * 2e-3
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epochs"] == 3  # --resume keeps the fitted length
    rc = _tool("train").main(["--data", str(data), "--out", str(out), "--epochs", "40", "--time-budget", "0.001", "--resume",
                              "--input-size", "48", "--width", "0.35", "--batch-size", "8", "--device", "cpu",
                              "--threads", "1", "--no-progress"])
    assert rc == 0 and "--resume: 3 epochs, as the checkpoint was fitted to (not --epochs 40)" in capsys.readouterr().out
    again = json.loads((out / "metrics.json").read_text())
    assert again["args"]["epochs"] == "3" and again["args"]["epochs_asked"] == "40" and len(again["history"]) == 3


def test_distilling_from_an_ensemble_of_teachers(tmp_path, monkeypatch, capsys) -> None:
    """--teacher DIR (repeated) distils from the mean of the teachers' probabilities; a wrong teacher exits 2 by name."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    from emod.training.build import Ensemble

    data = tmp_path / "fer"
    _fer_folder(data, with_private=False)
    monkeypatch.chdir(tmp_path)
    train = _tool("train").main
    tiny = ["--data", str(data), "--epochs", "1", "--width", "0.35", "--batch-size", "8", "--device", "cpu", "--threads", "1",
            "--no-progress"]
    for seed in ("0", "1"):
        assert train([*tiny, "--input-size", "48", "--out", str(tmp_path / f"t{seed}"), "--seed", seed]) == 0
    capsys.readouterr()
    teachers = ["--teacher", str(tmp_path / "t0" / "model"), "--teacher", str(tmp_path / "t1" / "model")]
    assert train([*tiny, "--input-size", "48", "--out", str(tmp_path / "s"), *teachers, "--kd-alpha", "0.7"]) == 0
    assert "distilling from 2 teacher(s): kd-alpha 0.7, temperature 2" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert metrics["args"]["teacher"] == str([str(tmp_path / "t0" / "model"), str(tmp_path / "t1" / "model")])

    assert train([*tiny, "--input-size", "64", "--out", str(tmp_path / "x"), *teachers]) == 2
    assert "trained at 48 px, the student at 64 px" in capsys.readouterr().err
    assert train([*tiny, "--input-size", "48", "--out", str(tmp_path / "y"), "--teacher", str(tmp_path / "nowhere")]) == 2
    assert f"teacher {tmp_path / 'nowhere'}: no such directory" in capsys.readouterr().err
    assert train([*tiny, "--input-size", "48", "--out", str(tmp_path / "y"), "--teacher", str(tmp_path / "t0")]) == 2
    assert "its model is in RUN/model" in capsys.readouterr().err and not (tmp_path / "y").exists()  # nothing written
    assert train([*tiny, "--input-size", "48", "--out", str(tmp_path / "z"), *teachers, "--kd-alpha", "1.5"]) == 2

    torch.manual_seed(0)
    members = [MobileNetV2ForImageClassification(MobileNetV2Config(num_channels=1, image_size=48, depth_multiplier=0.35,
                                                                   num_labels=len(LABELS))).eval() for _ in range(2)]
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        mean = torch.stack([m(pixel_values=x).logits.softmax(1) for m in members]).mean(0)
        assert torch.allclose(Ensemble(members)(pixel_values=x).logits.softmax(1), mean, atol=1e-6)
