"""emod-view --http against a real daemon: the JSON and MJPEG endpoints, robustness to bad clients, and the page in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from _fixtures import BIN, Daemon, free_port, hamilton, short_tmp, tiny_models, wait_for  # noqa: F401
from emod.viewer.http import parse_listen

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NUM = r"-?\d+(?:\.\d+)?"


def get(url: str, timeout: float = 10) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def mjpeg_parts(url: str, n: int, timeout: float = 20) -> list[bytes]:
    """The first N JPEG parts of a multipart/x-mixed-replace stream."""
    parts = []
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
        while len(parts) < n:
            line = r.readline()
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":")[1])
                assert r.readline() == b"\r\n"
                parts.append(r.read(size))
    return parts


def chromium(url: str, tmp: Path, *mode: str, budget_ms: int = 6000) -> subprocess.CompletedProcess:
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1280,900",
            f"--virtual-time-budget={budget_ms}", *mode, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.fixture
def served(tiny_models, short_tmp, hamilton):
    """A daemon and an ``emod-view --http`` on a free port; yields (daemon, base url)."""
    d = Daemon(short_tmp, tiny_models, hamilton)
    port = free_port()
    log = open(short_tmp / "view.log", "wb")
    v = subprocess.Popen([str(BIN / "emod-view"), "--runtime-dir", str(d.rundir), "--http", f"127.0.0.1:{port}"],
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        d.wait_processing()
        wait_for(lambda: _stats_ok(base), 30, 0.5, "emod-view to serve live stats")
        yield d, base
    finally:
        v.send_signal(signal.SIGTERM)
        try:
            assert v.wait(10) == 0, "emod-view did not stop cleanly on SIGTERM"
        finally:
            if v.poll() is None:
                v.kill()
            log.close()
            d.stop()


def _stats_ok(base: str):
    try:
        s = json.loads(get(base + "/stats.json", 5)[2])
    except (OSError, ValueError):
        return None
    return s if s.get("ok") and s.get("fps") else None


def test_parse_listen() -> None:
    """--http takes PORT or HOST:PORT and binds 127.0.0.1 unless a host is given."""
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("0.0.0.0:81") == ("0.0.0.0", 81)
    assert parse_listen("[::1]:82") == ("::1", 82)
    with pytest.raises(ValueError):
        parse_listen("host:http")


def test_http_endpoints_and_bad_clients(served) -> None:
    """/stats.json updates, JPEGs flow, stalled or garbage clients hurt nobody, and an unwatched viewer costs no encoding."""
    d, base = served
    assert not d.stats()["stages"]["display"]["fps"], "an idle emod-view made the display stage encode"
    a = json.loads(get(base + "/stats.json")[2])
    time.sleep(2.5)
    b = json.loads(get(base + "/stats.json")[2])
    assert a["ok"] and b["ok"] and a["source"] == "control" and b["model"] == "tiny"
    assert b["uptime_s"] > a["uptime_s"] and b["t"] > a["t"]
    assert isinstance(b["latency_p50"], float) and isinstance(b["infer_p50"], float)
    hist = json.loads(get(base + "/history.json")[2])
    assert len(hist) >= 2 and all(h["ok"] for h in hist)
    code, ctype, page = get(base + "/")
    assert code == 200 and ctype.startswith("text/html") and b"<canvas" in page and b"://" not in page  # no CDN
    code, ctype, jpg = get(base + "/snapshot.jpg")
    assert code == 200 and ctype == "image/jpeg" and jpg[:3] == b"\xff\xd8\xff"
    assert get(base + "/nope")[0] == 404

    host, port = base[len("http://"):].split(":")
    stalled = socket.create_connection((host, int(port)))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    garbage = socket.create_connection((host, int(port)))
    garbage.sendall(b"\x00\xffNOT HTTP AT ALL\r\n\r\n" * 10)
    try:
        time.sleep(2)
        t0 = time.monotonic()
        parts = mjpeg_parts(base + "/stream.mjpg", 20)
        rate = len(parts) / (time.monotonic() - t0)
        assert all(p[:3] == b"\xff\xd8\xff" for p in parts) and len(set(parts)) > 1
        s = d.stats()
        print(f"\nMJPEG client beside a stalled one: {rate:.1f} frames/s; pipeline processed {s['processed_fps']} fps")
        assert rate > 2.0
        assert _stats_ok(base), "the viewer stopped answering"
    finally:
        stalled.close()
        garbage.close()
    # once the last stream is gone the viewer unsubscribes and the display stage stops encoding
    wait_for(lambda: not d.stats()["stages"]["display"]["fps"], 30, 0.5, "the display stage to stop publishing")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_page_in_headless_chromium(served, short_tmp) -> None:
    """Headless Chromium renders the page with live numbers (no placeholders) and the video, and the numbers move."""
    d, base = served
    time.sleep(3)  # some history for the chart
    r1 = chromium(base + "/", short_tmp, "--dump-dom")
    assert r1.returncode == 0, r1.stderr[-2000:]
    dom1 = r1.stdout
    for key in ("fps", "lat50", "lat95", "inf50", "inf95"):
        assert re.search(rf'id="{key}">{NUM}<', dom1), f"#{key} shows no number: {re.search(rf'id=.{key}.>[^<]*<', dom1)}"
    assert re.search(r'id="model">tiny<', dom1) and re.search(r'id="status" class="ok">live<', dom1)
    up1 = float(re.search(rf'id="uptime">({NUM}) s<', dom1).group(1))
    time.sleep(2)
    shot = short_tmp / "viewer.png"
    r2 = chromium(base + "/", short_tmp, f"--screenshot={shot}", budget_ms=8000)
    assert r2.returncode == 0 and shot.is_file(), r2.stderr[-2000:]
    r3 = chromium(base + "/", short_tmp, "--dump-dom")
    up2 = float(re.search(rf'id="uptime">({NUM}) s<', r3.stdout).group(1))
    assert up2 > up1, f"uptime did not advance: {up1} -> {up2}"
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (900, 1280)
    video = img[80:500, 20:820].astype(np.float32)  # where the stream is laid out
    assert video.std() > 20, "the video area is blank"
    chart = img[340:580, 860:1260]
    assert (np.abs(chart.astype(int) - (39, 32, 27)).sum(axis=2) > 60).mean() > 0.005, "the chart is empty"
    if os.environ.get("EMOD_VIEWER_SCREENSHOT"):  # e.g. docs/viewer.png
        shutil.copyfile(shot, os.environ["EMOD_VIEWER_SCREENSHOT"])
