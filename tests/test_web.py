"""emod-view --http against a real daemon: endpoints, hostile clients, and the page in headless Chromium after a login."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from _fixtures import BIN, DEMO, Daemon, tiny_models, wait_for  # noqa: F401
from _web import CHROMIUM, Browser, View, mjpeg_parts, request
from emod.labels import LABELS

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def daemon(tiny_models):
    """One daemon for the module, playing the bundled clip in a loop."""
    root = Path(tempfile.mkdtemp(prefix="emw"))
    d = Daemon(root, tiny_models, DEMO)
    try:
        d.wait_processing()
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def view(daemon):
    """An open (loopback, no login) viewer of the module's daemon."""
    v = View(daemon.rundir, daemon.rundir.parent / "view.log")
    wait_for(lambda: _stats_ok(v.base), 30, 0.5, "emod-view to serve live stats")
    yield v
    assert v.stop() == 0, "emod-view did not stop cleanly on SIGTERM"


def _stats_ok(base: str):
    try:
        code, _, body = request(base, "/stats.json", timeout=5)
    except OSError:
        return None
    s = json.loads(body)
    return s if code == 200 and s.get("ok") and s.get("fps") else None


def test_http_endpoints_and_bad_clients(daemon, view) -> None:
    """/stats.json updates, /api/stats is the emod-stats object, JPEGs flow, stalled or garbage clients hurt nobody."""
    d, base = daemon, view.base
    assert not d.stats()["stages"]["display"]["fps"], "an idle emod-view made the display stage encode"
    a = json.loads(request(base, "/stats.json")[2])
    wait_for(lambda: json.loads(request(base, "/stats.json")[2])["uptime_s"] > a["uptime_s"], 10, 0.3, "a newer sample")
    b = json.loads(request(base, "/stats.json")[2])
    assert a["ok"] and b["ok"] and b["source"] == "control" and b["model"] == "tiny" and b["t"] > a["t"]
    hist = json.loads(request(base, "/history.json")[2])
    assert len(hist) >= 2 and all(h["ok"] for h in hist)
    full = json.loads(request(base, "/api/stats")[2])
    assert full["version"] == d.stats()["version"] and set(full) == set(d.stats()) and full["preview"]["enabled"] is True
    code, headers, page = request(base, "/")
    assert code == 200 and headers["Content-Type"].startswith("text/html") and b'id="timeline"' in page and b"://" not in page
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    code, headers, jpg = request(base, "/snapshot.jpg")
    assert code == 200 and headers["Content-Type"] == "image/jpeg" and jpg[:3] == b"\xff\xd8\xff"
    assert request(base, "/nope")[0] == 404

    port = view.port
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    garbage = socket.create_connection(("127.0.0.1", port))
    garbage.sendall(b"\x00\xffNOT HTTP AT ALL\r\n\r\n" * 10)
    try:
        t0 = time.monotonic()
        parts = mjpeg_parts(base, 20)
        rate = len(parts) / (time.monotonic() - t0)
        assert all(p[:3] == b"\xff\xd8\xff" for p in parts) and len(set(parts)) > 1
        print(f"\nMJPEG client beside a stalled one: {rate:.1f} frames/s; pipeline processed {d.stats()['processed_fps']} fps")
        assert rate > 1.0
        assert _stats_ok(base), "the viewer stopped answering"
    finally:
        stalled.close()
        garbage.close()
    # once the last stream is gone the viewer unsubscribes and the display stage stops encoding
    wait_for(lambda: not d.stats()["stages"]["display"]["fps"], 30, 0.5, "the display stage to stop publishing")


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, return what the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and len(out) > 4096:
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.") else 0


def test_hostile_http(daemon, view) -> None:
    """Malformed, oversized and traversal requests get 4xx; slowloris and 200 stream clients are contained; others keep frames."""
    port, base = view.port, view.base
    slow = []
    for _ in range(40):  # slowloris: partial requests, a byte at a time, never finished
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /stats.json HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    t_slow = time.monotonic()

    replies = {
        "garbage line": _raw(port, b"\x00\xff\xfe GARBAGE\r\n\r\n"),
        "no target": _raw(port, b"GET\r\n\r\n"),
        "bad version": _raw(port, b"GET / HTTP/9.9\r\nHost: x\r\n\r\n"),
        "bad method": _raw(port, b"G(E)T / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "huge header": _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"),
        "huge url": _raw(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        "many headers": _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\n"),
    }
    for name, reply in replies.items():
        first = reply.split(b"\r\n")[0][:60]
        print(f"{name}: {first!r}")
    codes = {k: _status(v) for k, v in replies.items()}
    assert all(400 <= c < 500 for c in codes.values()), codes  # oversized bodies: test_web_auth.py
    for path in ["/static/../viewer/http.py", "/static/%2e%2e/%2e%2e/viewer/http.py", "/static/..%2f..%2fviewer%2fhttp.py",
                 "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/..\\..\\viewer\\http.py", "/../../etc/passwd"]:
        reply = _raw(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert _status(reply) in (400, 403, 404), (path, reply[:200])
        assert b"root:" not in reply and b"import" not in reply, path
    assert request(base, "/static/app.js")[0] == 200

    # hundreds of stream clients at once: at most --max-streams (32) served, the rest 503 at once
    n = 200
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    t0 = time.monotonic()
    for c in clients:
        c.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    got: dict[socket.socket, bytes] = {c: b"" for c in clients}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        waiting = [c for c in clients if b"\r\n\r\n" not in got[c] or (got[c].startswith(b"HTTP/1.1 200") and b"\xff\xd8\xff" not in got[c])]
        if not waiting:
            break
        ready, _, _ = select.select(waiting, [], [], 1.0)
        for c in ready:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                chunk = b""
            got[c] += chunk if len(got[c]) < 200000 else b""
            if not chunk:
                clients.remove(c)
    served = [c for c, b in got.items() if b.startswith(b"HTTP/1.1 200")]
    refused = [c for c, b in got.items() if b.startswith(b"HTTP/1.1 503")]
    with_frames = [c for c in served if b"\xff\xd8\xff" in got[c]]
    took = time.monotonic() - t0
    stats_meanwhile = _stats_ok(base)
    print(f"\n{n} stream clients: {len(served)} served ({len(with_frames)} received JPEG frames), {len(refused)} refused "
          f"with 503, in {took:.1f} s; /stats.json meanwhile {'ok' if stats_meanwhile else 'FAILED'}")
    assert len(served) + len(refused) == n and len(served) <= 32 and len(refused) >= n - 32
    assert len(with_frames) == len(served) > 0
    assert b"too many streams" in got[refused[0]]
    assert stats_meanwhile, "the viewer stopped answering under the stream storm"
    for c in got:
        c.close()

    # the slowloris connections never held anything up, and the server closes them (REQUEST_TIMEOUT = 15 s)
    def stream_again():  # the server notices the closed clients at their next frame and frees their places
        try:
            return mjpeg_parts(base, 3)
        except AssertionError:
            return None

    wait_for(stream_again, 30, 0.5, "a stream to be accepted again after the storm")
    closed = 0
    for s in slow:
        s.settimeout(max(1.0, 30 - (time.monotonic() - t_slow)))
        try:
            s.sendall(b"X")
            closed += s.recv(100) == b""
        except (OSError, socket.timeout):
            closed += 1
        s.close()
    print(f"slowloris: {closed} of {len(slow)} partial requests closed by the server within 30 s")
    assert closed == len(slow)
    assert daemon.proc.poll() is None and view.proc.poll() is None


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: sudo apt-get install chromium (or make system-deps as root)")
def test_page_login_in_headless_chromium(daemon, tmp_path) -> None:
    """Chromium gets the login form, logs in through it, and then shows live numbers, the video and the emotion panels."""
    pw = tmp_path / "viewer.passwd"
    r = subprocess.run([str(BIN / "emod-view"), "passwd", "alice", "--stdin", "--file", str(pw)], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    v = View(daemon.rundir, tmp_path / "view.log", "--auth", "--passwd-file", str(pw))
    b = Browser()
    try:
        b.goto(v.base + "/")
        assert b.eval("!!document.querySelector('form#login')"), "no login form at /"
        b.eval("document.getElementById('user').value = 'alice'; document.getElementById('password').value = 'wrong password'")
        b.eval("document.getElementById('signin').click()")
        b.wait("document.readyState == 'complete' && document.getElementById('message')?.textContent.includes('Wrong')", 30,
               "the login form to say the password is wrong")
        b.eval(f"document.getElementById('user').value = 'alice'; document.getElementById('password').value = {PASSWORD!r}")
        b.eval("document.getElementById('signin').click()")
        b.wait("!!document.getElementById('stream')", 30, "the page after logging in")
        assert b.eval("document.cookie") == "", "the session cookie is readable by scripts (not HttpOnly)"
        b.wait("document.getElementById('status').className == 'ok'", 30, "the status to turn live")
        b.wait("document.getElementById('stream').naturalWidth > 0", 30, "the stream to show a frame")
        b.wait("/^[0-9.]+$/.test(document.getElementById('fps').textContent)", 20, "a number in the fps tile")
        assert b.eval("document.getElementById('model').textContent") == "tiny"
        assert not b.eval("document.getElementById('logout').hidden"), "no log-out button with a login on"
        b.wait("document.querySelectorAll('#faces .face').length > 0", 60, "a per-face readout")
        face = b.eval("(() => { const f = document.querySelector('#faces .face'); return {id: f.id, label: f.querySelector('.label')"
                      ".textContent, conf: f.querySelector('.conf').textContent, bars: f.querySelectorAll('.bar').length}; })()")
        assert face["id"].startswith("face-") and face["label"] in LABELS and face["conf"].endswith("%") and face["bars"] == 7, face
        shares = b.wait("document.querySelectorAll('#shares span[id^=share-]').length == 7 && "
                        "[...document.querySelectorAll('#shares span')].map(s => s.textContent)", 30, "the 5-minute shares")
        print(f"\nper-face readout: {face}; timeline shares: {shares}")
        time.sleep(3)  # a few seconds of history for the charts
        shot = tmp_path / "viewer.png"
        b.screenshot(shot)
        img = cv2.imread(str(shot))
        assert img is not None and img.shape[:2] == (900, 1280)
        x, y, w, h = (round(t) for t in b.eval("(() => { const r = document.getElementById('stream').getBoundingClientRect();"
                                                " return [r.x, r.y, r.width, r.height]; })()"))
        assert w > 300 and h > 150 and img[y:y + h, x:x + w].astype(np.float32).std() > 20, "the video area is blank"
        x, y, w, h = (round(t) for t in b.eval("(() => { const r = document.getElementById('timeline').getBoundingClientRect();"
                                                " return [r.x, r.y, r.width, r.height]; })()"))
        strip = img[y + 4:y + h - 16, x + 8:x + w - 8].astype(int)
        colored = (np.abs(strip - strip[..., :1]).max(axis=2) > 40).mean()  # label colours, not the grey background
        assert colored > 0.002, f"the timeline is empty ({colored:.4f} coloured)"
        if os.environ.get("EMOD_VIEWER_SCREENSHOT"):  # e.g. docs/reports/viewer.png
            shutil.copyfile(shot, os.environ["EMOD_VIEWER_SCREENSHOT"])
    finally:
        b.close()
        assert v.stop() == 0


def test_emotion_endpoints(daemon, view) -> None:
    """/api/emotions is the latest emotions message, /events streams them as SSE that curl -N can follow, /api/timeline sums face-time."""
    code, _, body = request(view.base, "/api/emotions")
    assert code == 200, body
    m = json.loads(body)
    assert {"seq", "time", "t_wall", "model", "faces"} <= set(m) and m["model"] == "tiny"
    for f in m["faces"]:
        assert f["label"] in LABELS and abs(sum(f["probs"].values()) - 1) < 1e-3
    curl = subprocess.run(["curl", "-sN", "--max-time", "4", view.base + "/events"], capture_output=True, text=True, timeout=30)
    events = [json.loads(line[len("data: "):]) for line in curl.stdout.splitlines() if line.startswith("data: ")]
    seqs = [e["seq"] for e in events]
    print(f"\n/events over 4 s with curl -N: {len(events)} messages, seq {seqs[:1]}..{seqs[-1:]}")
    assert curl.stdout.startswith("retry: ") and len(events) >= 5 and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    tl = wait_for(lambda: (t := json.loads(request(view.base, "/api/timeline")[2]))["buckets"] and t, 20, 0.5, "timeline buckets")
    assert tl["labels"] == list(LABELS) and tl["window_s"] == 300 and set(tl["face_s"]) == set(LABELS)
    total = sum(tl["face_s"].values())
    assert total == 0 or abs(sum(tl["shares"].values()) - 1) < 1e-2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_four_tabs_of_the_page_stay_live(daemon, view) -> None:
    """Field case: a browser opens at most 6 connections per host; with the stream, /events and polls per page, tab 3
    never loaded. Now a visible tab holds one /live connection (frames, emotions, telemetry) and a hidden one polls
    telemetry: four tabs each update their telemetry every second, every visible one shows frames, on at most 6
    connections. Tabs 0-1 share the browser's first window (0 hidden behind 1), tabs 2-3 have windows of their own.
    The issue's check is 30 s; here 8 s (EMOD_TABS_WINDOW_S changes it; EMOD_TABS=N opens N windows instead)."""
    window = float(os.environ.get("EMOD_TABS_WINDOW_S", "8"))
    n = int(os.environ.get("EMOD_TABS", "4"))
    windows = [True] * n if "EMOD_TABS" in os.environ else [False, False, True, True]
    b = Browser()
    try:
        tabs = [b.new_tab(f"{view.base}/?tab={i}", window=w) for i, w in enumerate(windows)]
        for i, tab in enumerate(tabs):
            tab.wait("+(document.body?.dataset.stats || 0) >= 2 && (document.hidden || document.getElementById('stream')"
                     ".src.startsWith('blob:'))", 60, f"tab {i} to show telemetry (and frames when visible)")
        start = [int(t.eval("document.body.dataset.stats")) for t in tabs]
        frames0 = [int(t.eval("document.body.dataset.frames || 0")) for t in tabs]
        worst = [0.0] * n
        t_end = time.monotonic() + window
        while time.monotonic() < t_end:
            for i, tab in enumerate(tabs):  # how long ago each tab last updated its telemetry
                worst[i] = max(worst[i], tab.eval("Date.now() - +document.body.dataset.statsAt") / 1000)
            time.sleep(0.5)
        updates = [int(t.eval("document.body.dataset.stats")) - s for t, s in zip(tabs, start)]
        visible = [not t.eval("document.hidden") for t in tabs]
        frames = [int(t.eval("document.body.dataset.frames || 0")) - f for t, f in zip(tabs, frames0)]  # shown in the window
        port = view.base.rsplit(":", 1)[1]
        conns = subprocess.run(["ss", "-tnH", "state", "established", f"( dport = :{port} )"], capture_output=True,
                               text=True).stdout.splitlines()
        print(f"\n{n} tabs over {window:.0f} s: visible {visible},"
              f" telemetry updates {updates}, longest gap per tab {[round(w, 2) for w in worst]} s, frames shown {frames},"
              f" {len(conns)} connections browser -> emod-view")
        assert all(u >= window - 1 for u in updates), updates
        assert all(w <= 1.6 for w in worst), worst  # sampled every 0.5 s: an update at least once a second
        assert any(visible) and all(f for f, vis in zip(frames, visible) if vis) and len(conns) <= 6
        assert visible == ([True] * n if all(windows) else [False, True, True, True]), visible  # a window shows its last tab
    finally:
        b.close()
