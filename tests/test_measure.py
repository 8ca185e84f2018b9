"""tools/measure.py: the daemon scenario behind docs/measurements.md's daemon table, end to end on the demo clip."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from _fixtures import REPO, TINY, base_env, build_tiny_model, tiny_models  # noqa: F401

TOOL = REPO / "tools" / "measure.py"


def test_measure_writes_the_report_the_readme_reads(tiny_models, tmp_path):
    """Two models, one fresh daemon each: fps, latency, RSS per stage and total, and timed set-model replies both ways."""
    if not (tiny_models / "tiny2").is_dir():
        build_tiny_model(tiny_models, "tiny2")
    out = tmp_path / "daemon.json"
    r = subprocess.run([sys.executable, str(TOOL), "--models", TINY, "tiny2", "--source", "demo", "--seconds", "3",
                        "--warmup", "0", "--json", str(out), "-q"], capture_output=True, text=True, timeout=240,
                       env=base_env(tiny_models))
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(out.read_text())
    assert rep["errors"] == [] and rep["scenario"]["source"] == "demo" and rep["scenario"]["seconds"] == 3
    assert rep["machine"]["cpu_count"] >= 1 and len(rep["machine"]["loadavg"]) == 3
    assert set(rep["models"]) == {TINY, "tiny2"}
    for name, other in ((TINY, "tiny2"), ("tiny2", TINY)):
        m = rep["models"][name]
        assert m["model"] == name and m["source"].endswith("demo.mp4") and m["snapshots"] >= 2
        assert m["processed_fps"] > 0 and m["frames"]["processed"] > 0
        assert m["processed_fps"] == pytest.approx(m["frames"]["processed"] / m["window_s"], rel=0.03, abs=0.06)
        assert m["latency_ms"]["p95"] >= m["latency_ms"]["p50"] > 0 and m["inference_ms"]["p50"] > 0
        assert set(m["stages"]) == {"capture", "infer", "display", "power", "launcher"}
        stage_rss = [st["rss_mb"] for st in m["stages"].values()]
        assert all(x > 0 for x in stage_rss) and m["total_rss_mb"] >= max(stage_rss)
        swap = m["set_model"][other]
        assert swap["exit"] == 0 and swap["back_exit"] == 0 and 0 < swap["reply_s"] < 60
        assert swap["first_inference"] in ("frame", "warm-up")
    assert f"{TINY}: " in r.stdout and "fps" in r.stdout


def test_measure_refuses_a_missing_source(tmp_path):
    """A source that does not exist is a usage error (exit 2) before any daemon starts."""
    r = subprocess.run([sys.executable, str(TOOL), "--source", str(tmp_path / "nosuch.mp4"), "--json", str(tmp_path / "x.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "nosuch.mp4" in r.stderr and not (tmp_path / "x.json").exists()
