"""``emod-view --http``: the web page, an MJPEG stream, live telemetry and its recent history.

Routes: ``/`` the page (emod/web/index.html), ``/stream.mjpg`` the annotated preview as
``multipart/x-mixed-replace``, ``/snapshot.jpg`` one frame, ``/stats.json`` the newest
telemetry sample, ``/history.json`` the samples of the last minutes.

Every HTTP client has its own thread that asks the one :class:`Receiver` for "the newest
frame after mine": a slow client skips frames, a stalled one times out after
``WRITE_TIMEOUT`` seconds; neither touches the receiver, the other clients or the daemon.
Telemetry is sampled once a second by one thread, whatever the number of pages open:
from the control socket when local, from the preview header's ``info`` when remote.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from emod.client import Client, ClientError
from emod.viewer.receiver import Receiver

BOUNDARY = "emodframe"
WRITE_TIMEOUT = 10.0
MAX_STREAMS = 32
HISTORY_S = 300


def parse_listen(value: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[v6]:PORT``) -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"--http wants [HOST:]PORT, got {value!r}") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"port {p} is out of range")
    return host, p


class StatsSampler:
    """Samples telemetry once a second into ``latest`` and a ring of the last minutes."""

    def __init__(self, receiver: Receiver, rundir=None, remote: bool = False, period: float = 1.0):
        self.receiver, self.remote, self.period = receiver, remote, period
        self.client = None if remote else Client(rundir, timeout=2.0)
        self.latest: dict = {"ok": False, "error": "no sample yet"}
        self.history: deque[dict] = deque(maxlen=int(HISTORY_S / period))
        self.last_request = 0.0
        self._running = True
        self._thread = threading.Thread(target=self._run, name="stats-sampler", daemon=True)
        self._thread.start()

    def _sample_local(self) -> dict:
        try:
            s = self.client.call("stats")
        except ClientError as e:
            return {"ok": False, "error": str(e)}
        lat, inf, pw = s.get("latency_ms") or {}, s.get("inference_ms") or {}, s.get("power") or {}
        return {"ok": True, "source": "control", "uptime_s": s.get("uptime_s"), "fps": s.get("processed_fps"),
                "latency_p50": lat.get("p50"), "latency_p95": lat.get("p95"), "infer_p50": inf.get("p50"),
                "infer_p95": inf.get("p95"), "model": s.get("model"), "watts": pw.get("watts"),
                "power_backend": pw.get("backend")}

    def _sample_remote(self) -> dict:
        f = self.receiver.latest
        if f is None or time.monotonic() - f.t_recv > 5.0:
            return {"ok": False, "error": "no preview from the remote daemon in the last 5 s"}
        info = f.header.get("info") or {}
        return {"ok": True, "source": "preview", "uptime_s": None, "fps": info.get("fps"), "latency_p50": None,
                "latency_p95": None, "infer_p50": info.get("infer_ms"), "infer_p95": None, "model": info.get("model"),
                "watts": info.get("watts"), "power_backend": None, "seq": f.header.get("seq")}

    def _run(self) -> None:
        holding = False
        while self._running:
            t0 = time.monotonic()
            if self.remote:  # remote telemetry rides on the preview: subscribe while a page is watching
                want = t0 - self.last_request < 10.0
                if want != holding:
                    (self.receiver.acquire if want else self.receiver.release)()
                    holding = want
            rec = self._sample_remote() if self.remote else self._sample_local()
            rec["t"] = round(time.time(), 3)
            rec["viewer_fps"] = self.receiver.rate()
            self.latest = rec
            if rec["ok"]:
                self.history.append(rec)
            time.sleep(max(0.05, self.period - (time.monotonic() - t0)))

    def close(self) -> None:
        self._running = False


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], receiver: Receiver, sampler: StatsSampler, log=None):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, Handler)
        self.receiver, self.sampler, self.log = receiver, sampler, log
        self.page = resources.files("emod.web").joinpath("index.html").read_bytes()
        self.streams = 0
        self.lock = threading.Lock()
        self.stopping = False


class Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"
    server_version = "emod-view"
    timeout = 30  # idle keep-alive or half-sent requests do not hold a thread forever

    def log_message(self, format, *args):  # quiet: one line per request would flood the journal
        if self.server.log is not None:
            self.server.log.debug("http", client=self.client_address[0], request=format % args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj, code: int = 200) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":")).encode(), "application/json")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path in ("/", "/index.html"):
                self._send(200, self.server.page, "text/html; charset=utf-8")
            elif path == "/stream.mjpg":
                self._stream()
            elif path == "/snapshot.jpg":
                self._snapshot()
            elif path == "/stats.json":
                self.server.sampler.last_request = time.monotonic()
                self._json(self.server.sampler.latest)
            elif path == "/history.json":
                self.server.sampler.last_request = time.monotonic()
                self._json(list(self.server.sampler.history))
            else:
                self._send(404, b"not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def _snapshot(self) -> None:
        rx = self.server.receiver
        rx.acquire()
        try:
            f = rx.latest
            if f is None or time.monotonic() - f.t_recv > 1.0:
                f = rx.wait(after=f.n if f else 0, timeout=5.0)
        finally:
            rx.release()
        if f is None:
            self._send(503, b"no preview frame within 5 s: is emod running?\n", "text/plain")
        else:
            self._send(200, f.jpeg, "image/jpeg")

    def _stream(self) -> None:
        srv = self.server
        with srv.lock:
            if srv.streams >= MAX_STREAMS:
                self._send(503, b"too many streams\n", "text/plain")
                return
            srv.streams += 1
        srv.receiver.acquire()
        self.connection.settimeout(WRITE_TIMEOUT)  # a stalled client is dropped, it never blocks anyone else
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            f = srv.receiver.latest
            last = f.n if f is not None and time.monotonic() - f.t_recv > 1.0 else 0  # never start with an old frame
            while not srv.stopping:
                f = srv.receiver.wait(after=last, timeout=2.0)
                if f is None:
                    continue
                last = f.n
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(f.jpeg)}\r\n\r\n".encode()
                                 + f.jpeg + b"\r\n")
                self.wfile.flush()
        finally:
            srv.receiver.release()
            with srv.lock:
                srv.streams -= 1
