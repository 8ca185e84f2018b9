"""tools/soup.py: the weights of several runs averaged into one model the daemon loads."""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors.torch import load_file
from test_package import _tool
from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

from emod.labels import LABELS
from emod.models import classifier
from emod.models.preprocess import Preprocess


def _run_dir(path, seed: int, depth: float = 0.35):
    """What tools/train.py writes to OUT/model, for an untrained tiny network seeded with ``seed``."""
    torch.manual_seed(seed)
    model = MobileNetV2ForImageClassification(MobileNetV2Config(
        num_channels=1, image_size=48, depth_multiplier=depth, tf_padding=False, num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})).eval()
    for m in model.modules():  # give BatchNorm statistics that differ per run, as training would
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(100 + seed)
    _tool("train").save_model_dir(model, Preprocess(48), path)
    return path


def test_soup_is_the_mean_of_every_float_tensor_and_packages(tmp_path, capsys) -> None:
    runs = [_run_dir(tmp_path / f"r{s}", s) for s in (0, 1, 2)]
    out = tmp_path / "soup"
    assert _tool("soup").main([str(out), *map(str, runs)]) == 0
    assert "mean of 3 models" in capsys.readouterr().out
    sds = [load_file(str(r / "model.safetensors")) for r in runs]
    got = load_file(str(out / "model.safetensors"))
    assert set(got) == set(sds[0])
    for k, v in got.items():
        if v.is_floating_point():
            want = (sds[0][k].double() + sds[1][k].double() + sds[2][k].double()) / 3
            assert torch.allclose(v.double(), want, atol=1e-6), k
            assert not torch.equal(v, sds[0][k]) or torch.equal(sds[0][k], sds[1][k]), k
        else:
            assert torch.equal(v, sds[0][k]), k  # num_batches_tracked from the first run
    assert json.loads((out / "soup.json").read_text())["models"] == [str(r) for r in runs]
    zoo = tmp_path / "zoo" / "souped"
    assert _tool("package").main([str(out), str(zoo), "--tta", "hflip"]) == 0
    probs = classifier.load(str(zoo)).classify([np.full((48, 48), 90, np.uint8)])
    assert probs.shape == (1, 7) and np.isclose(probs.sum(), 1, atol=1e-5)


def test_soup_of_other_architectures_fails_by_name_and_writes_nothing(tmp_path, capsys) -> None:
    a = _run_dir(tmp_path / "a", 0)
    b = _run_dir(tmp_path / "b", 1, depth=0.5)
    out = tmp_path / "soup"
    assert _tool("soup").main([str(out), str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert str(b / "config.json") in err and "depth_multiplier" in err
    assert not out.exists() and not (tmp_path / "soup.new").exists()
    (b / "model.safetensors").unlink()
    assert _tool("soup").main([str(out), str(a), str(b)]) == 2
    assert "no model.safetensors" in capsys.readouterr().err
    assert _tool("soup").main([str(out), str(a)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert _tool("soup").main([str(out), str(a), str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: no such directory" in capsys.readouterr().err
