"""A stalled or frozen network stream is a source problem, reported and retried; rates are real (issue 14, kind 5)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from _fixtures import Daemon, short_tmp, tiny_models, wait_for  # noqa: F401
from emod.stages.base import RateMeter
from emod.testing import MjpegServer
from test_source_health import capture_stage

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "media" / "photos" / "obama_small.jpg"


def _jpegs(n: int) -> list[bytes]:
    img = cv2.imread(str(PHOTO))
    if img is None:
        pytest.skip(f"{PHOTO} is absent")
    return [cv2.imencode(".jpg", np.roll(img, 7 * i, axis=1))[1].tobytes() for i in range(n)]


def test_a_stalled_stream_is_no_signal_and_the_daemon_stays_up(short_tmp, tiny_models) -> None:
    """An MJPEG URL that stops sending: "no signal" in stats, no stage restart, and frames again once it resumes."""
    server = MjpegServer(_jpegs(4), fps=10, stall_after=20)
    d = Daemon(short_tmp, tiny_models, server.url, loop=False)
    try:
        d.wait_processing(90)
        s = wait_for(lambda: (s := d.stats()) and s["source"]["state"] == "no signal" and s, 60, 0.5, "no signal")
        assert "no signal" in s["source"]["error"] and not s["healthy"]
        assert any("no signal" in p for p in s["problems"])
        captured = s["frames"]["captured"]
        time.sleep(6)  # longer than the heartbeat timeout: a blocked read would have got capture killed
        s = d.stats()
        assert d.proc.poll() is None and s["stages"]["capture"]["restarts"] == 0, s["stages"]
        server.resume()
        s = wait_for(lambda: (s := d.stats()) and s["source"]["state"] == "ok" and s["frames"]["captured"] > captured and s,
                     60, 0.5, "frames after the stream resumed")
        assert s["source"]["error"] is None and server.connections >= 2
    finally:
        d.stop()
        server.close()


def test_a_stream_repeating_one_picture_is_flagged_frozen(short_tmp) -> None:
    """A stream that keeps sending the same JPEG is flagged frozen (state and stats), and cleared when it moves again."""
    frames = _jpegs(1)
    server = MjpegServer(frames, fps=15)
    stage, log, sub = capture_stage(short_tmp, server.url)
    stage.frozen_s = 1.0
    try:
        wait_for(lambda: (stage.step(), stage.stats()["frozen"])[1], 30, 0, "the frozen flag")
        assert stage.stats()["state"] == "frozen" and log.count("source frozen: the same picture for seconds") == 1
        server.jpegs[:] = _jpegs(5)
        wait_for(lambda: (stage.step(), not stage.stats()["frozen"])[1], 30, 0, "the flag to clear")
        assert stage.stats()["state"] == "ok"
    finally:
        stage.teardown()
        sub.close()
        server.close()


def test_a_one_fps_stream_reports_one_fps(short_tmp) -> None:
    """A stream at a true 1 frame per second shows about 1.0 fps in capture's stats, not 2.0."""
    server = MjpegServer(_jpegs(3), fps=1.0)
    stage, log, sub = capture_stage(short_tmp, server.url)
    try:
        wait_for(lambda: (stage.step(), stage.seq >= 5)[1], 30, 0, "five frames")
        fps = stage.stats()["fps"]
    finally:
        stage.teardown()
        sub.close()
        server.close()
    assert 0.8 <= fps <= 1.25, fps


@pytest.mark.parametrize("period, expected", [(1.0, 1.0), (2.0, 0.5), (0.1, 10.0)])
def test_rate_meter_measures_slow_and_fast_streams(period, expected) -> None:
    """Ticks every PERIOD seconds read 1/PERIOD per second (a 2 s window neither doubles nor zeroes a slow stream)."""
    now = [0.0]
    meter = RateMeter(window=2.0, clock=lambda: now[0])
    for _ in range(8):
        meter.tick()
        now[0] += period
    now[0] -= period * 0.5  # read between two ticks
    assert meter.rate() == pytest.approx(expected, rel=0.02)
    now[0] += 10 * period  # nothing more: the stream stopped
    assert meter.rate() == 0.0
