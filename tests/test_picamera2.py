"""The picamera2 source against emod.testing.FakePicamera2, and the capture stage surviving a source that fails."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from _fixtures import EMOD, base_env, short_tmp, tiny_models  # noqa: F401
from emod import bus, protocol
from emod.sources.base import SourceError
from emod.sources.picamera2 import Picamera2Source
from emod.testing import IMX708_INFO, FakePicamera2


def test_testing_module_stays_numpy_free() -> None:
    """Importing emod.testing (FakePicamera2 included) does not import numpy."""
    code = "import sys, emod.testing; assert 'numpy' not in sys.modules; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_fake_follows_picamera2_configuration() -> None:
    """create_video_configuration returns picamera2's keys and defaults; configure() fills stride and checks like the real one."""
    cam_cls = FakePicamera2.variant()
    assert cam_cls.global_camera_info() == [IMX708_INFO]
    cam = cam_cls(0)
    try:
        cfg = cam.create_video_configuration(main={"size": (640, 480), "format": "RGB888"},
                                             lores={"size": (320, 240), "format": "YUV420"}, controls={"FrameRate": 15.0})
        assert cfg["use_case"] == "video" and cfg["buffer_count"] == 6 and cfg["display"] == "main" and cfg["encode"] == "main"
        assert cfg["main"] == {"size": (640, 480), "format": "RGB888"} and cfg["lores"] == {"size": (320, 240), "format": "YUV420"}
        assert cfg["controls"]["FrameRate"] == 15.0 and "raw" in cfg and "colour_space" in cfg
        assert cam.create_video_configuration()["main"] == {"format": "XBGR8888", "size": (1280, 720)}
        with pytest.raises(ValueError, match="Bad key"):
            cam.create_video_configuration(main={"sise": (640, 480)})
        with pytest.raises(RuntimeError, match="lores stream must be YUV"):
            cam.configure(cam.create_video_configuration(main={"size": (640, 480)}, lores={"size": (320, 240), "format": "RGB888"}))
        with pytest.raises(RuntimeError, match="may not exceed"):
            cam.configure(cam.create_video_configuration(main={"size": (320, 240)}, lores={"size": (640, 480)}))
        cam.configure(cfg)
        assert cam.camera_config["main"]["stride"] == 640 * 3 and cam.camera_config["lores"]["stride"] == 320
        cam.start()
        with pytest.raises(RuntimeError, match="stopped before configuring"):
            cam.configure(cfg)
        with pytest.raises(RuntimeError, match="busy"):
            cam_cls(0)  # one process per camera, as libcamera enforces
    finally:
        cam.close()
    with pytest.raises(RuntimeError):
        cam_cls(1)  # no second camera


def test_fake_arrays_have_real_shapes_and_byte_order() -> None:
    """make_array gives HxWx3 (RGB888 in B,G,R order), HxWx4 for XRGB8888 and (H*3/2, stride) for YUV420; requests must be released."""
    red = np.zeros((8, 8, 3), np.uint8)
    red[:, :, 2] = 255  # BGR: pure red
    cam = FakePicamera2.variant(image=red)(0)
    try:
        cam.configure(cam.create_video_configuration(main={"size": (100, 60), "format": "RGB888"},
                                                     lores={"size": (50, 30), "format": "YUV420"}, buffer_count=2))
        cam.start()
        with cam.captured_request() as req:
            main, lores = req.make_array("main"), req.make_array("lores")
            assert main.shape == (60, 100, 3) and main.dtype == np.uint8 and main.flags.c_contiguous
            assert (main[..., 2] == 255).all() and (main[..., :2] == 0).all()  # RGB888 is B,G,R in memory
            assert lores.shape == (45, 64) and lores.dtype == np.uint8  # stride: 50 rounded up to 64
            assert 75 < int(lores[0, 0]) < 90  # luma of pure red (BT.601 limited range: 82)
            assert req.make_array("raw").shape == (60, 256)  # raw: (H, stride) bytes
            assert cam.outstanding == 1
        assert cam.outstanding == 0
        with pytest.raises(RuntimeError, match="released"):
            req.make_array("main")
        held = [cam.capture_request(), cam.capture_request()]
        with pytest.raises(RuntimeError, match="stall"):
            cam.capture_request()  # more than buffer_count held
        for r in held:
            r.release()
        cam.stop()
        cam.configure(cam.create_video_configuration(main={"size": (100, 60), "format": "XRGB8888"}))
        cam.start()
        with cam.captured_request() as req:
            x = req.make_array("main")
            assert x.shape == (60, 100, 4) and (x[..., 2] == 255).all() and (x[..., 3] == 255).all()
            with pytest.raises(RuntimeError, match="'lores' is not defined"):
                req.make_array("lores")  # not configured this time
    finally:
        cam.close()


def test_adapter_reads_frames_and_releases_every_request() -> None:
    """Picamera2Source opens, configures main+lores video, reads BGR frames of the right shape, releases all and closes."""
    cam_cls = FakePicamera2.variant()
    src = Picamera2Source(width=640, height=480, fps=30.0, factory=cam_cls)
    with src:
        frames = [src.read() for _ in range(20)]  # more than buffer_count: a leaked request would stall
        cam = cam_cls.instances[-1]
        assert cam.started and cam.outstanding == 0 and cam.frames == 20
        cfg = cam.camera_config
        assert cfg["use_case"] == "video" and cfg["main"]["format"] == "RGB888" and cfg["main"]["size"] == (640, 480)
        assert cfg["lores"] == {"format": "YUV420", "size": (320, 240), "stride": 320, "framesize": 320 * 240 * 3 // 2}
        assert cfg["controls"]["FrameRate"] == 30.0
    for f in frames:
        assert f.shape == (480, 640, 3) and f.dtype == np.uint8 and f.flags.c_contiguous
    assert not np.array_equal(frames[0], frames[1])  # the scene moves
    assert not cam.is_open and not cam.started and cam.outstanding == 0
    with Picamera2Source(factory=cam_cls) as again:  # the camera was released: it can be opened again
        assert again.read().shape == (480, 640, 3)


def test_no_camera_is_a_clear_source_error() -> None:
    """With no camera attached (global_camera_info() == []) opening fails with a SourceError saying so."""
    src = Picamera2Source(factory=FakePicamera2.variant(cameras=[]))
    with pytest.raises(SourceError, match="no camera"):
        src.open()
    assert not src.is_open


def test_capture_failure_is_a_source_error() -> None:
    """A captured_request that raises surfaces as SourceError from read()."""
    cam_cls = FakePicamera2.variant(capture_error=RuntimeError("dma heap exhausted"))
    with Picamera2Source(factory=cam_cls) as src:
        with pytest.raises(SourceError, match="dma heap exhausted"):
            src.read()
    assert not cam_cls.instances[-1].is_open


def test_busy_camera_is_a_source_error() -> None:
    """A camera already held by another user fails open() with a SourceError naming the camera."""
    cam_cls = FakePicamera2.variant()
    holder = cam_cls(0)
    try:
        with pytest.raises(SourceError, match="camera 0.*busy"):
            Picamera2Source(factory=cam_cls).open()
    finally:
        holder.close()


def test_capture_stage_retries_a_failing_source(short_tmp, tiny_models) -> None:
    """`emod stage capture` on a missing file stays alive, reports the error in telemetry and backs off exponentially."""
    rundir = short_tmp / "run"
    rundir.mkdir()
    ctx = zmq.Context.instance()
    pull = bus.bind(ctx, zmq.PULL, rundir, protocol.TELEMETRY)  # stand in for the launcher
    missing = short_tmp / "missing.mp4"
    env = base_env(tiny_models, EMOD_TELEMETRY_INTERVAL="0.25")
    proc = subprocess.Popen([str(EMOD), "stage", "capture", "--runtime-dir", str(rundir), "--state-dir", str(short_tmp / "st"),
                             "--source", str(missing)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    reports = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if pull.poll(500):
                _, h, _ = protocol.decode(pull.recv_multipart())
                reports.append(h["stats"])
                if h["stats"]["errors"] >= 3:
                    break
        assert proc.poll() is None, "the capture stage died"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        pull.close(0)
    assert proc.returncode == 0
    last = reports[-1]
    assert last["errors"] >= 3 and str(missing) in last["error"] and last["frames"] == 0 and last["eos"] is False
    events = [json.loads(l) for l in out.decode().splitlines() if l.startswith("{")]
    retries = [e["retry_in"] for e in events if e.get("event") == "source error, retrying"]
    assert retries[:3] == [0.5, 1.0, 2.0]  # exponential backoff
    assert any(e.get("event") == "stage stopped" for e in events)
