"""Under overload, inference works on the newest frame: no queue holds stale frames (issue 14, kind 8)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from _fixtures import EMOD, HAMILTON, base_env, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import config

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "media" / "photos"


class _Log:
    def __getattr__(self, name):
        return lambda *a, **k: None


class SlowPipeline:
    """The real pipeline, made to take at least ``seconds`` per frame (an overloaded CPU, a slower model)."""

    def __init__(self, inner, seconds: float):
        self.inner, self.seconds = inner, seconds

    @property
    def faces_dropped(self) -> int:
        return self.inner.faces_dropped

    def process(self, frame):
        t0 = time.monotonic()
        out = self.inner.process(frame)
        time.sleep(max(0.0, self.seconds - (time.monotonic() - t0)))
        return out


def _percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


@pytest.mark.parametrize("source, interval, slow", [("video", 1 / 29.97, 0.100), ("folder", 0.1, 0.150)])
def test_capture_to_result_latency_stays_near_one_inference(short_tmp, tiny_models, monkeypatch, source, interval, slow) -> None:
    """With inference slower than the frame rate, capture-to-result latency stays below 1.5 x inference + one frame interval."""
    from emod.stages.infer import InferStage

    if source == "video":
        if not HAMILTON.is_file():
            pytest.skip(f"{HAMILTON} is absent")
        spec = HAMILTON
    else:
        spec = short_tmp / "imgs"
        spec.mkdir()
        for i in range(60):
            shutil.copy(PHOTOS / "obama_small.jpg", spec / f"{i:03d}.jpg")
    monkeypatch.setenv("EMOD_MODELS_DIR", str(tiny_models))
    cfg = config.Config()
    cfg.daemon.runtime_dir, cfg.daemon.state_dir = str(short_tmp), str(short_tmp / "st")
    cfg.infer.model, cfg.infer.detector = "tiny", "haar"
    capture = subprocess.Popen([str(EMOD), "stage", "capture", "--runtime-dir", str(short_tmp), "--source", str(spec)],
                               env=base_env(tiny_models), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    stage = InferStage(cfg, _Log())
    stage.setup()
    stage.pipeline = SlowPipeline(stage.pipeline, slow)
    latencies = []
    from emod import bus, protocol
    import zmq

    results = bus.connect(zmq.Context.instance(), zmq.SUB, short_tmp, protocol.RESULTS, hwm=1000, topic=b"result")
    try:
        wait_for(lambda: (stage.step(), stage.processed >= 5)[1], 60, 0, "the first results")
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:
            stage.step()
            while results.poll(0):
                _, r, _ = protocol.decode(results.recv_multipart())
                latencies.append(r["t_done"] - r["t_capture"])
    finally:
        results.close()
        stage.teardown()
        capture.terminate()
        capture.wait(10)
    assert len(latencies) >= 10
    p50 = _percentile(latencies, 50)
    limit = 1.5 * slow + interval
    print(f"\n{source}: inference {slow * 1e3:.0f} ms, frames every {interval * 1e3:.0f} ms: latency p50 {p50 * 1e3:.0f} ms "
          f"(limit {limit * 1e3:.0f} ms), {stage.dropped} frames skipped for fresher ones")
    assert p50 < limit, f"latency p50 {p50 * 1e3:.0f} ms >= {limit * 1e3:.0f} ms: inference works on stale frames"
