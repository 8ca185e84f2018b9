"""Honest health: a missing file is a config error, a failing source shows on every surface,
failures back off and repeated log lines are rate-limited (issue 14, kind 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog
import zmq

from _fixtures import BIN, EMOD, Daemon, base_env, free_port, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import bus, config, protocol
from emod.log import RepeatLimiter

EMOD_CTL = BIN / "emod-ctl"
EMOD_STATS = BIN / "emod-stats"


class ListLog:
    """A logger that keeps ``(level, event, fields)`` tuples, for stages run in this process."""

    def __init__(self):
        self.events: list[tuple[str, str, dict]] = []

    def _add(self, level):
        return lambda event, **kw: self.events.append((level, event, kw))

    def __getattr__(self, level):
        return self._add(level)

    def count(self, event: str) -> int:
        return sum(1 for _, e, _ in self.events if e == event)


def capture_stage(rundir: Path, source: str, loop: bool = False, opener=None):
    """A capture stage in this process (set up, not yet stepped), with a SUB that stands in for inference."""
    from emod.stages.capture import CaptureStage

    cfg = config.Config()
    cfg.daemon.runtime_dir = str(rundir)
    cfg.capture.source, cfg.capture.loop = source, loop
    log = ListLog()
    stage = CaptureStage(cfg, log)
    if opener is not None:
        stage.opener = opener
    stage.setup()
    sub = bus.connect(zmq.Context.instance(), zmq.SUB, rundir, protocol.FRAMES, hwm=1000, topic=b"frame")
    sub.setsockopt(zmq.SUBSCRIBE, b"end")
    return stage, log, sub


def run_steps(stage, seconds: float) -> None:
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        stage.step()


@pytest.mark.parametrize("kind", ["missing video", "missing folder", "named pipe", "missing file in the config"])
def test_a_missing_source_file_is_a_config_error(short_tmp, tiny_models, kind) -> None:
    """`emod run --source /nonexistent.mp4` (or a missing folder, or a FIFO) exits 78 at once, naming the path."""
    args = []
    if kind == "missing video":
        path = "/nonexistent.mp4"
    elif kind == "missing folder":
        path = str(short_tmp / "no" / "such" / "folder")
    elif kind == "named pipe":
        path = str(short_tmp / "x.mp4")
        os.mkfifo(path)
    else:
        path = str(short_tmp / "gone.mp4")
        (short_tmp / "emod.toml").write_text(f'[capture]\nsource = "{path}"\n')
        args = ["--config", str(short_tmp / "emod.toml")]
    argv = [str(EMOD), "run", "--runtime-dir", str(short_tmp / "run"), "--state-dir", str(short_tmp / "st"), *args]
    if kind != "missing file in the config":
        argv += ["--source", path]
    t0 = time.monotonic()
    r = subprocess.run(argv, env=base_env(tiny_models), capture_output=True, text=True, timeout=60)
    assert r.returncode == protocol.EXIT_CONFIG, (r.returncode, r.stderr)
    assert path in r.stderr and ("no such file" in r.stderr or "named pipe" in r.stderr), r.stderr
    assert time.monotonic() - t0 < 20
    assert not (short_tmp / "run" / "capture.sock").exists() and "stage spawned" not in r.stdout


@pytest.mark.parametrize("kind", ["refused stream", "undecodable file"])
def test_a_failing_source_shows_on_every_surface(short_tmp, tiny_models, kind) -> None:
    """While the source fails, status exits 5 naming the error, emod-stats prints it, the JSON says state and error, and nothing prints None."""
    if kind == "refused stream":
        source = f"http://127.0.0.1:{free_port()}/stream.mjpg"
    else:
        source = str(short_tmp / "broken.mp4")
        Path(source).write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    d = Daemon(short_tmp, tiny_models, source, loop=False)
    try:
        snap = wait_for(lambda: (s := d.stats()) and s["source"]["error"] and s, 60, 0.5, "the source error in stats")
        assert snap["source"]["state"] in ("error", "no signal") and not snap["healthy"]
        assert any(source in p for p in snap["problems"]), snap["problems"]
        env = base_env(tiny_models)
        st = subprocess.run([str(EMOD_CTL), "status", "--runtime-dir", str(d.rundir)], env=env, capture_output=True, text=True, timeout=30)
        assert st.returncode == protocol.EXIT_UNHEALTHY, st
        assert "DEGRADED" in st.stdout and snap["source"]["error"].split(":")[0] in st.stdout
        text = subprocess.run([str(EMOD_STATS), "--runtime-dir", str(d.rundir)], env=env, capture_output=True, text=True, timeout=30)
        assert text.returncode == 0 and "SOURCE" in text.stdout and source in text.stdout, text.stdout
        for out in (st.stdout, text.stdout):
            assert "None" not in out, out
        js = json.loads(subprocess.run([str(EMOD_CTL), "status", "--json", "--runtime-dir", str(d.rundir)], env=env,
                                       capture_output=True, text=True, timeout=30).stdout)
        assert js["healthy"] is False and js["source"]["error"]
    finally:
        d.stop()


def test_a_camera_failing_every_capture_backs_off(short_tmp) -> None:
    """A camera that opens but fails every capture is retried with growing pauses, not every 0.5 s."""
    from emod.sources.picamera2 import Picamera2Source
    from emod.testing import FakePicamera2

    cam = FakePicamera2.variant(capture_error=OSError("dma heap exhausted"))
    stage, log, sub = capture_stage(short_tmp, "picamera2", opener=lambda spec, w, h, fps, **kw: Picamera2Source(spec, w, h, fps, factory=cam))
    try:
        run_steps(stage, 4.0)
    finally:
        stage.teardown()
        sub.close()
    # 0.5 + 1 + 2 s of pauses: at most 3-4 attempts in 4 s (no backoff: 8)
    assert 2 <= len(cam.instances) <= 4, len(cam.instances)
    assert stage.stats()["state"] == "error" and "dma heap exhausted" in stage.stats()["error"]


def test_an_unreachable_stream_backs_off_and_says_no_signal(short_tmp) -> None:
    """A stream URL that refuses connections is a source problem ("no signal"), retried with backoff."""
    stage, log, sub = capture_stage(short_tmp, f"http://127.0.0.1:{free_port()}/x.mjpg")
    try:
        run_steps(stage, 3.0)
    finally:
        stage.teardown()
        sub.close()
    assert stage.stats()["state"] == "no signal"
    assert 1 <= log.count("source error, retrying") <= 3


def test_repeated_identical_log_lines_are_counted_not_repeated() -> None:
    """Identical log lines within the window are written once; the next one after it carries the count."""
    now = [0.0]
    lim = RepeatLimiter(window=30.0, clock=lambda: now[0])
    written = []
    for i in range(100):
        now[0] = i * 0.1
        try:
            written.append(lim(None, "warning", {"event": "source error, retrying", "error": "capture failed"}))
        except structlog.DropEvent:
            pass
    assert len(written) == 1
    other = lim(None, "warning", {"event": "source error, retrying", "error": "another error"})
    assert "repeated" not in other
    now[0] = 31.0
    again = lim(None, "warning", {"event": "source error, retrying", "error": "capture failed"})
    assert again["repeated"] == 99


@pytest.mark.parametrize("what", ["clip", "folder"])
def test_a_looping_source_logs_source_opened_once(short_tmp, what) -> None:
    """A looping clip (or image folder) logs "source opened" once, however often it starts again."""
    import cv2
    import numpy as np

    if what == "clip":
        src = short_tmp / "short.avi"
        w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
        for i in range(3):
            w.write(np.full((48, 64, 3), i * 40, np.uint8))
        w.release()
    else:
        src = short_tmp / "imgs"
        src.mkdir()
        cv2.imwrite(str(src / "a.png"), np.zeros((48, 64, 3), np.uint8))
    stage, log, sub = capture_stage(short_tmp, str(src), loop=True)
    try:
        wait_for(lambda: (stage.step(), stage.loops >= 4)[1], 30, 0, "four loops")
    finally:
        stage.teardown()
        sub.close()
    assert log.count("source opened") == 1 and log.count("source reopened") == 0
    assert stage.stats()["loops"] >= 4


def test_a_looping_source_keeps_its_name_between_loops(short_tmp) -> None:
    """The stats name the source opened (the demo clip's path, not "demo") at every step, also in the moment
    between a clip's end and its reopening (CI once read "demo" there)."""
    import cv2
    import numpy as np

    from emod.sources import open_source

    clip = short_tmp / "short.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(3):
        w.write(np.full((48, 64, 3), i * 40, np.uint8))
    w.release()
    # the configured spec is a name the opener resolves, as "demo" resolves to the bundled clip's path
    stage, log, sub = capture_stage(short_tmp, "alias", loop=True, opener=lambda _spec, *a, **k: open_source(str(clip), *a, **k))
    names = []
    try:
        def step():
            stage.step()
            if stage.opened_once:
                names.append(stage.stats()["source"])
            return stage.loops >= 3
        wait_for(step, 30, 0, "three loops")
    finally:
        stage.teardown()
        sub.close()
    assert names and set(names) == {str(clip)}, set(names)


def test_the_opened_source_is_reported_at_once(short_tmp) -> None:
    """The heartbeat after the step that opens the source names it, without waiting a telemetry interval: the
    launcher must not pair infer's first processed frames with capture's start-up name ("auto"; CI once read it)."""
    import cv2
    import numpy as np

    from emod.sources import open_source

    clip = short_tmp / "short.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(3):
        w.write(np.full((48, 64, 3), i * 40, np.uint8))
    w.release()
    ctx = zmq.Context.instance()
    pull = bus.bind(ctx, zmq.PULL, short_tmp, protocol.TELEMETRY, hwm=100)
    stage, log, sub = capture_stage(short_tmp, "auto", opener=lambda _spec, *a, **k: open_source(str(clip), *a, **k))
    stage.cfg.telemetry.interval = 60.0  # no heartbeat falls due on its own during the test
    stage.telemetry = bus.connect(ctx, zmq.PUSH, short_tmp, protocol.TELEMETRY, hwm=100)
    try:
        stage.report(force=True)  # the start-up heartbeat: nothing opened yet
        stage.step()  # opens the clip
        stage.report()  # the run loop's report after that step
        names = []
        while pull.poll(2000):
            names.append(protocol.decode(pull.recv_multipart())[1]["stats"]["source"])
            if len(names) == 2:
                break
        assert names == ["auto", str(clip)], names
        stage.step(); stage.report()  # the same source again: back to one heartbeat per interval
        assert not pull.poll(300)
    finally:
        stage.teardown()
        sub.close()
        stage.telemetry.close(0)
        pull.close(0)
