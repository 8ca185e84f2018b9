"""tools/bench.py: the MAC counters against a hand-counted net, and a short end-to-end run on the tiny model."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from _fixtures import tiny_models  # noqa: F401
from emod.datasets import fer2013

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "bench.py"

# conv1: 4x8x8 = 256 outputs x (1 x 3 x 3) = 2304
# conv2: stride 2, 2 groups: 8x4x4 = 128 outputs x (4/2 x 3 x 3) = 2304
# fc:    7 outputs x 128 inputs = 896
HAND_MACS = 2304 + 2304 + 896


class HandNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(8 * 4 * 4, 7)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def bench():
    """tools/bench.py imported as a module."""
    spec = importlib.util.spec_from_file_location("bench_tool", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def hand_onnx(tmp_path_factory):
    """HandNet exported to ONNX with a symbolic batch dimension."""
    path = tmp_path_factory.mktemp("hand") / "hand.onnx"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, as in emod.training.export
        torch.onnx.export(HandNet().eval(), (torch.zeros(1, 1, 8, 8),), str(path), input_names=["pixel_values"],
                          output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return path


def test_torch_counter_matches_hand_count(bench):
    """Forward hooks count exactly the hand-computed MACs per image, whatever the batch size."""
    net = HandNet().eval()
    assert bench.torch_macs(net, torch.zeros(1, 1, 8, 8)) == HAND_MACS
    assert bench.torch_macs(net, torch.zeros(3, 1, 8, 8)) == HAND_MACS


def test_onnx_counter_matches_hand_count(bench, hand_onnx):
    """The ONNX graph counter (Conv + Gemm, batch fixed to 1) gives the hand-computed MACs."""
    assert bench.onnx_macs(hand_onnx) == HAND_MACS


def test_onnx_counter_follows_qdq_weights(bench, hand_onnx, tmp_path):
    """In a QDQ int8 graph the weights sit behind DequantizeLinear and the count is unchanged."""
    import numpy as np
    import onnx

    from emod.training.export import quantize_int8

    q = tmp_path / "hand.int8.onnx"
    quantize_int8(hand_onnx, q, np.random.default_rng(0).normal(size=(8, 1, 8, 8)).astype(np.float32))
    g = onnx.load(str(q)).graph
    producer = {o: n.op_type for n in g.node for o in n.output}
    assert any(n.op_type == "Conv" and producer.get(n.input[1]) == "DequantizeLinear" for n in g.node)
    assert bench.onnx_macs(q) == HAND_MACS


def test_onnx_and_torch_counters_agree_on_mobilenet(bench, tiny_models):
    """The tiny MobileNetV2's exported graph has the same MAC count as hooks on the same architecture in torch."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    model = MobileNetV2ForImageClassification(MobileNetV2Config(num_channels=1, image_size=48, depth_multiplier=0.35,
                                                                num_labels=7, tf_padding=False)).eval()
    macs = bench.torch_macs(model, torch.zeros(1, 1, 48, 48))
    assert macs > 1_000_000
    assert bench.onnx_macs(tiny_models / "tiny" / "model.onnx") == macs


def test_bench_run_writes_results(tiny_models, tmp_path):
    """A 5-face run reports positive latencies, sizes and MACs for the model and the seed baseline, with ratios and a plot."""
    root = fer2013.default_root()
    if not root.exists():
        pytest.skip(f"FER2013 not found at {root} (set $EMOD_FER2013)")
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    env = {k: v for k, v in os.environ.items() if k != "EMOD_MODELS_DIR"}
    r = subprocess.run([sys.executable, str(TOOL), "--models", str(tiny_models / "tiny"), "--n", "5", "--warmup", "1",
                        "--threads", "1", "--json", str(out), "--plot", str(png)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert set(rep["models"]) == {"tiny", "seed"}
    for name, m in rep["models"].items():
        for key in ("latency_ms", "model_latency_ms"):
            assert m[key]["median"] > 0 and m[key]["p90"] >= m[key]["median"] and m[key]["n"] == 5, name
        assert m["size_bytes"] > 0 and m["macs"] > 0 and m["format"], name
    tiny_dir = tiny_models / "tiny"
    assert rep["models"]["tiny"]["size_bytes"] == (tiny_dir / "model.onnx").stat().st_size
    assert rep["models"]["tiny"]["input_size"] == 48 and rep["models"]["seed"]["input_size"] == 224
    assert rep["models"]["seed"]["processor"] in ("MobileNetV2ImageProcessor", "MobileNetV2ImageProcessorPil")
    assert rep["models"]["seed"]["macs"] > 250_000_000  # MobileNetV2 1.0 at 224: ~300M
    ratio = rep["ratios"]["tiny/seed"]
    assert 0 < ratio["macs"] < 1 and ratio["latency_median"] > 0 and ratio["size"] > 0
    assert rep["threads"] == 1 and rep["machine"]["cpu_count"] >= 1 and rep["machine"]["onnxruntime"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_model_exits_2():
    """An unknown registry model makes bench exit 2 with one line on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "EMOD_MODELS_DIR"}
    r = subprocess.run([sys.executable, str(TOOL), "--models", "no-such-model", "--n", "1"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("bench: unknown model 'no-such-model'") and len(r.stderr.strip().splitlines()) == 1


def test_model_paths_in_the_report_are_the_same_on_every_machine(bench, tmp_path, monkeypatch):
    """Report paths: relative inside the checkout, under $EMOD_MODELS_DIR when there, else absolute."""
    monkeypatch.setenv("EMOD_MODELS_DIR", str(tmp_path / "models"))
    assert bench.shown(REPO / "emod" / "models" / "zoo" / "quant") == "emod/models/zoo/quant"
    assert bench.shown(tmp_path / "models" / "quant-fer2013") == "$EMOD_MODELS_DIR/quant-fer2013"
    assert bench.shown(tmp_path / "elsewhere") == str((tmp_path / "elsewhere").resolve())
