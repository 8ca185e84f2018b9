"""Telemetry for ``emod-view --http``, sampled once a second by one thread whatever the number of pages.

Locally the sample comes from the control socket (``stats``: the ``emod-stats --json``
object, kept whole in :attr:`StatsSampler.snapshot` for ``/api/stats``); remotely
(``--connect``) from the preview header's ``info``, and only while a page is watching.
:meth:`StatsSampler.down` gives the reason the daemon cannot be reached, or None.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from emod.client import Client, ClientError
from emod.viewer.receiver import Receiver

HISTORY_S = 300


class StatsSampler:
    """Samples telemetry every ``period`` seconds into ``latest`` (compact), ``snapshot`` (whole) and ``history``."""

    def __init__(self, receiver: Receiver, rundir=None, remote: bool = False, period: float = 1.0):
        self.receiver, self.remote, self.period = receiver, remote, period
        self.client = None if remote else Client(rundir, timeout=2.0)
        self.latest: dict = {"ok": False, "error": "no sample yet"}
        self.snapshot: dict | None = None
        self.history: deque[dict] = deque(maxlen=int(HISTORY_S / period))
        self.last_request = 0.0
        self._running = True
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats-sampler", daemon=True)
        self._thread.start()

    def wait_first(self, timeout: float = 5.0) -> None:
        """Block until the first sample is taken (so a server never answers 'no sample yet')."""
        self._first.wait(timeout)

    def down(self) -> str | None:
        """Why the daemon is unreachable (local: control socket; remote: no preview lately), or None."""
        return None if self.latest.get("ok") else self.latest.get("error", "no telemetry")

    def preview_disabled(self) -> bool:
        """True when the daemon says ``display.preview = false`` (local only)."""
        return bool(self.snapshot) and (self.snapshot.get("preview") or {}).get("enabled") is False

    def _sample_local(self) -> dict:
        try:
            s = self.client.call("stats")
        except ClientError as e:
            self.snapshot = None
            return {"ok": False, "error": str(e)}
        self.snapshot = s
        lat, inf, pw = s.get("latency_ms") or {}, s.get("inference_ms") or {}, s.get("power") or {}
        src = s.get("source") or {}
        return {"ok": True, "source": "control", "uptime_s": s.get("uptime_s"), "fps": s.get("processed_fps"),
                "latency_p50": lat.get("p50"), "latency_p95": lat.get("p95"), "infer_p50": inf.get("p50"),
                "infer_p95": inf.get("p95"), "model": s.get("model"), "watts": pw.get("watts"),
                "power_backend": pw.get("backend"), "source_name": src.get("name"), "source_error": src.get("error"),
                "preview": (s.get("preview") or {}).get("enabled", True)}

    def _sample_remote(self) -> dict:
        f = self.receiver.latest
        if f is None or time.monotonic() - f.t_recv > 5.0:
            return {"ok": False, "error": "no preview from the remote daemon in the last 5 s"}
        info = f.header.get("info") or {}
        return {"ok": True, "source": "preview", "uptime_s": None, "fps": info.get("fps"), "latency_p50": None,
                "latency_p95": None, "infer_p50": info.get("infer_ms"), "infer_p95": None, "model": info.get("model"),
                "watts": info.get("watts"), "power_backend": None, "seq": f.header.get("seq"), "source_name": None,
                "source_error": None, "preview": True}

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
            self._first.set()
            if rec["ok"]:
                self.history.append(rec)
            time.sleep(max(0.05, self.period - (time.monotonic() - t0)))

    def close(self) -> None:
        self._running = False
