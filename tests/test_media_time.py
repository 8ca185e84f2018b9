"""File sources are paced by each frame's own media time, which frames and `emod analyze` carry (issue 14, kind 4)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from _fixtures import EMOD, HAMILTON, base_env, short_tmp, tiny_models  # noqa: F401
from emod import bus, protocol
from test_source_health import capture_stage

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "media" / "photos" / "obama_small.jpg"
DURATIONS_MS = [40] * 6 + [200] * 4 + [40] * 6  # a variable-frame-rate animation: 16 frames, 1.64 s


def _vfr_gif(path: Path) -> Path:
    from PIL import Image

    img = cv2.imread(str(PHOTO))
    if img is None:
        pytest.skip(f"{PHOTO} is absent")
    frames = [Image.fromarray(cv2.cvtColor(np.roll(img, 12 * i, axis=1), cv2.COLOR_BGR2RGB)) for i in range(len(DURATIONS_MS))]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=DURATIONS_MS, loop=0)
    return path


def _expected_times() -> list[float]:
    return [sum(DURATIONS_MS[:k]) / 1e3 for k in range(len(DURATIONS_MS))]


def test_a_variable_frame_rate_file_is_paced_by_its_own_timestamps(short_tmp) -> None:
    """Each frame of a VFR animation is sent at its media time (not the average rate) and carries it as t_media."""
    src = _vfr_gif(short_tmp / "vfr.gif")
    stage, log, sub = capture_stage(short_tmp, str(src))
    got = []
    try:
        t_end = time.monotonic() + 20
        while not stage.eos and time.monotonic() < t_end:
            stage.step()
            while sub.poll(0):
                topic, h, _ = protocol.decode(sub.recv_multipart())
                if topic == b"frame":
                    got.append((h["t_mono"], h["t_media"]))
    finally:
        stage.teardown()
        sub.close()
    want = _expected_times()
    assert [round(m, 3) for _, m in got] == pytest.approx(want, abs=0.002)
    sent = [t - got[0][0] for t, _ in got]
    late = max(abs(s - w) for s, w in zip(sent, want))
    assert late < 0.06, f"frames sent up to {late * 1e3:.0f} ms away from their media time"


def test_a_constant_rate_clip_carries_media_time_too(short_tmp) -> None:
    """The daemon's own clip: frame k (``seq`` k + 1) carries t_media = k / 29.97 s.

    Frames are matched by ``seq``: the frame bus keeps no backlog, so a subscriber that falls
    behind on a loaded machine may miss one, by design.
    """
    if not HAMILTON.is_file():
        pytest.skip(f"{HAMILTON} is absent")
    stage, log, sub = capture_stage(short_tmp, str(HAMILTON))
    stage.cfg.capture.realtime = False
    got = []  # (seq, t_media)
    try:
        while stage.seq < 30:
            stage.step()
            while sub.poll(0):
                topic, h, _ = protocol.decode(sub.recv_multipart())
                got.append((h["seq"], h["t_media"]))
        while sub.poll(500):
            topic, h, _ = protocol.decode(sub.recv_multipart())
            got.append((h["seq"], h["t_media"]))
    finally:
        stage.teardown()
        sub.close()
    seqs = [s for s, _ in got]
    assert len(got) >= 20 and seqs == sorted(set(seqs)), seqs
    assert [t for _, t in got] == pytest.approx([(s - 1) / 29.97 for s in seqs], abs=0.002)


def test_analyze_gives_each_video_frame_its_media_time(short_tmp, tiny_models) -> None:
    """`emod analyze --json` on a VFR animation gives every frame its media time in seconds."""
    src = _vfr_gif(short_tmp / "vfr.gif")
    r = subprocess.run([str(EMOD), "analyze", "--json", "--model", "tiny", str(src)], env=base_env(tiny_models),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    entry = json.loads(r.stdout)
    assert entry["format"] == "gif" and [f["time"] for f in entry["frames"]] == pytest.approx(_expected_times(), abs=0.002)
