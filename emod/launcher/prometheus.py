"""A Prometheus ``/metrics`` endpoint for the launcher (``telemetry.prometheus = "HOST:PORT"``).

:func:`render` turns one stats snapshot (:meth:`emod.launcher.telemetry.Telemetry.snapshot`)
into the Prometheus text exposition format (version 0.0.4): a ``# HELP`` and ``# TYPE``
line per family, then its samples. Values that the snapshot holds as null (no power
sensor, no result yet) are left out rather than exported as 0.

:class:`MetricsServer` serves it from a daemon thread (stdlib ``ThreadingHTTPServer``):
``GET /metrics`` renders a fresh snapshot, every other path is 404. An empty host binds
127.0.0.1 (``":9100"``); ``"0.0.0.0:9100"`` or ``"[::]:9100"`` exposes it on the network.

    server = MetricsServer("127.0.0.1:9100", launcher.snapshot)
    ...
    server.close()

The snapshot function is called from the server's thread. Alternatively the owner can push
each snapshot it makes with :meth:`MetricsServer.update`; from then on scrapes serve the
newest pushed snapshot and never call the function.
"""

from __future__ import annotations

import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsError(OSError):
    """The endpoint cannot be served: a malformed address, or the port cannot be bound."""


# --- rendering ---------------------------------------------------------------------------------------------
def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


class _Family:
    def __init__(self, name: str, kind: str, help: str):
        self.name, self.kind, self.help = name, kind, help
        self.samples: list[tuple[dict, object]] = []

    def add(self, value, **labels) -> None:
        if isinstance(value, (int, float)):  # None (unknown) is left out
            self.samples.append((labels, value))

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}",
               f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out.append(f"{self.name}{{{lab}}} {_value(value)}" if lab else f"{self.name} {_value(value)}")
        return out


def _mb_to_bytes(mb) -> int | None:
    return int(round(mb * 2**20)) if isinstance(mb, (int, float)) else None


def render(s: dict) -> str:
    """The snapshot S in the Prometheus text exposition format (ends with a newline)."""
    fams: list[_Family] = []

    def fam(name: str, kind: str, help: str) -> _Family:
        f = _Family(name, kind, help)
        fams.append(f)
        return f

    fam("emod_info", "gauge", "The active model and the source (always 1).").add(
        1, model=s.get("model") or "", source=(s.get("source") or {}).get("name") or "")
    fam("emod_uptime_seconds", "gauge", "Seconds since the launcher started.").add(s.get("uptime_s"))
    fam("emod_processed_fps", "gauge", "Frames processed per second by the infer stage.").add(s.get("processed_fps"))
    fam("emod_faces_per_second", "gauge", "Faces classified per second.").add(s.get("faces_per_s"))
    frames = fam("emod_frames_total", "counter", "Frames by kind: captured (capture stage), processed and dropped (infer stage).")
    for kind in ("captured", "processed", "dropped"):
        frames.add((s.get("frames") or {}).get(kind), kind=kind)
    lat = fam("emod_latency_ms", "gauge", "Capture to result latency in milliseconds, rolling quantiles.")
    for q, key in (("0.5", "p50"), ("0.95", "p95")):
        lat.add((s.get("latency_ms") or {}).get(key), quantile=q)
    inf = s.get("inference_ms") or {}
    infer = fam("emod_inference_ms", "gauge", "Detection plus classification time per frame in milliseconds, rolling quantiles.")
    for q, key in (("0.5", "p50"), ("0.95", "p95")):
        infer.add(inf.get(key), quantile=q, model=inf.get("model") or "")
    power = s.get("power") or {}
    fam("emod_power_watts", "gauge", "Power draw in watts from the power stage.").add(power.get("watts"), backend=power.get("backend") or "")
    energy = fam("emod_energy_per_inference_joules", "gauge", "Energy per inference in joules, per model, since start.")
    for model, joules in (s.get("energy_per_inference_j") or {}).items():
        energy.add(joules, model=model)
    fam("emod_rejected_messages_total", "counter", "Malformed messages dropped, all sockets.").add((s.get("rejected") or {}).get("total"))
    fam("emod_source_ok", "gauge", "1 while the source delivers without error, 0 after an error.").add(
        0 if (s.get("source") or {}).get("error") else 1)
    stages = s.get("stages") or {}
    up = fam("emod_stage_up", "gauge", "1 while the stage process is alive.")
    restarts = fam("emod_stage_restarts_total", "counter", "Restarts of the stage since the launcher started.")
    rss = fam("emod_stage_rss_bytes", "gauge", "Resident memory of the stage process in bytes.")
    cpu = fam("emod_stage_cpu_percent", "gauge", "CPU use of the stage process in percent of one core.")
    fps = fam("emod_stage_fps", "gauge", "Frames per second the stage handles.")
    for name, st in stages.items():
        up.add(1 if st.get("alive") else 0, stage=name)
        restarts.add(st.get("restarts"), stage=name)
        rss.add(_mb_to_bytes(st.get("rss_mb")), stage=name)
        cpu.add(st.get("cpu_percent"), stage=name)
        fps.add(st.get("fps"), stage=name)
    fam("emod_total_rss_bytes", "gauge", "Resident memory of the launcher and every stage in bytes.").add(_mb_to_bytes(s.get("total_rss_mb")))
    emotions = s.get("emotions") or {}
    fam("emod_faces", "gauge", "Faces in the newest processed frame.").add(emotions.get("faces"))
    face_s = fam("emod_face_seconds_total", "counter", "Face-time in seconds per smoothed emotion label since the launcher started.")
    for label, seconds in ((emotions.get("total") or {}).get("face_s") or {}).items():
        face_s.add(seconds, label=label)
    fam("emod_tracks_total", "counter", "Face tracks started since the launcher started.").add((emotions.get("total") or {}).get("tracks"))
    lines: list[str] = []
    for f in fams:
        if f.samples:
            lines.extend(f.lines())
    return "\n".join(lines) + "\n"


# --- serving -----------------------------------------------------------------------------------------------
def parse_address(addr: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[v6]:PORT"``; empty host: 127.0.0.1) -> (host, port)."""
    host, sep, port = str(addr).strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise MetricsError(f"prometheus address {addr!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    metrics: "MetricsServer"


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8", head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._send(404, b"not found: emod serves /metrics\n", head=head)
            return
        try:
            body = render(self.server.metrics.current()).encode()
        except Exception as e:  # never take the launcher down for a scrape
            self._send(500, f"snapshot failed: {type(e).__name__}: {e}\n".encode(), head=head)
            return
        self._send(200, body, CONTENT_TYPE, head=head)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def log_message(self, format: str, *args) -> None:
        pass  # scrapes are not log events


class MetricsServer:
    """Serves ``/metrics`` for ``snapshot_fn()`` on ADDR ("HOST:PORT") in a daemon thread until :meth:`close`."""

    def __init__(self, addr: str, snapshot_fn):
        host, port = parse_address(addr)
        self.snapshot_fn = snapshot_fn
        self._pushed: dict | None = None
        self._lock = threading.Lock()
        cls = _V6Server if ":" in host else _Server
        try:
            self.httpd = cls((host, port), _Handler)
        except OSError as e:
            raise MetricsError(f"cannot serve Prometheus metrics on {addr!r}: {e.strerror or e}") from None
        self.httpd.metrics = self
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                       name="emod-metrics", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def update(self, snapshot: dict) -> None:
        """Push SNAPSHOT: scrapes serve the newest pushed one from now on."""
        with self._lock:
            self._pushed = snapshot

    def current(self) -> dict:
        """The snapshot a scrape renders: the newest pushed one, else a fresh ``snapshot_fn()`` (retried once)."""
        with self._lock:
            if self._pushed is not None:
                return self._pushed
            try:
                return self.snapshot_fn()
            except RuntimeError:  # e.g. a dict the loop thread grew while we iterated it
                return self.snapshot_fn()

    def close(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)
