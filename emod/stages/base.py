"""The stage lifecycle, shared by every stage process.

``run()`` sets up, then calls ``step()`` until SIGTERM/SIGINT, sending a telemetry
report (which is also the heartbeat) every interval; ``teardown()`` always runs.
Subclasses fill in ``setup``, ``step``, ``teardown`` and ``stats``. Malformed messages
are counted in ``self.rejected`` (by socket) and dropped: a stage never dies of one.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import zmq

from emod import bus, protocol
from emod.config import Config
from emod.stages import lifeline

EXIT_MISSING_MODULE = 69  # EX_UNAVAILABLE: an ImportError; the supervisor retries slowly instead of restart-looping
PIP_NAMES = {"paho": "paho-mqtt", "aiohttp": "aiohttp", "onnxruntime": "onnxruntime", "cv2": "opencv-python-headless",
             "torch": "torch", "safetensors": "safetensors", "argon2": "argon2-cffi", "psutil": "psutil",
             "picamera2": "python3-picamera2 (apt)", "zmq": "pyzmq", "structlog": "structlog"}


def missing_module_message(e: ImportError) -> str:
    """``No module named 'paho' (pip install paho-mqtt)``: the error and the package that provides the module."""
    top = (e.name or "").split(".")[0]
    pkg = PIP_NAMES.get(top, top)
    how = f"apt install {pkg.split()[0]}" if pkg.endswith("(apt)") else f"pip install {pkg}"
    return f"{e} ({how})" if top else str(e)


class Stage:
    name = "stage"

    def __init__(self, cfg: Config, log):
        self.cfg = cfg
        self.log = log
        self.rundir = Path(cfg.daemon.runtime_dir)
        self.ctx = zmq.Context.instance()
        self.running = True
        self.rejected: Counter[str] = Counter()
        self._last_report = 0.0
        self._last_reason: dict[str, str] = {}

    def request_stop(self, *_args) -> None:
        self.running = False

    def reject(self, socket_name: str, err: Exception) -> None:
        """Count and drop one malformed message (logged once per reason kind, not per message)."""
        self.rejected[socket_name] += 1
        reason = str(err)[:120]
        if self._last_reason.get(socket_name) != reason.split(":")[0]:
            self._last_reason[socket_name] = reason.split(":")[0]
            self.log.warning("malformed message dropped", socket=socket_name, reason=reason)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        lifeline.bind_to_parent(self.request_stop, self.log)  # dies with the launcher, by any death
        self.telemetry = bus.connect(self.ctx, zmq.PUSH, self.rundir, protocol.TELEMETRY, hwm=4)
        self.telemetry.setsockopt(zmq.SNDTIMEO, 0)
        ready = False
        try:
            self.setup()
            ready = True
            self.log.info("stage started", pid=os.getpid())
            self.report(force=True)
            while self.running:
                self.step()
                self.report()
        except ImportError as e:  # a package is not installed: say which, and do not restart-loop
            msg = missing_module_message(e)
            self.log.error("stage cannot start: a package is missing", error=msg)
            self._final_report(msg)
            return EXIT_MISSING_MODULE
        except Exception as e:
            self.log.error("stage failed", error=f"{type(e).__name__}: {e}", exc_info=True)
            self._final_report(f"{type(e).__name__}: {e}")
            return 1
        finally:
            if ready:
                self.teardown()
            self.telemetry.close()
            self.log.info("stage stopped")
        return 0

    def _final_report(self, error: str) -> None:
        """Tell the launcher why this stage is about to exit (its ``problems`` name it); best effort."""
        try:
            self.telemetry.setsockopt(zmq.LINGER, 500)
            self.telemetry.send_multipart(protocol.encode(b"telemetry", {"stage": self.name, "pid": os.getpid(),
                                                                         "t_mono": time.monotonic(), "stats": {"error": error[:300]}}),
                                          zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < self.cfg.telemetry.interval:
            return
        self._last_report = now
        stats = self.stats()
        stats["rejected"] = dict(self.rejected)
        try:
            self.telemetry.send_multipart(
                protocol.encode(b"telemetry", {"stage": self.name, "pid": os.getpid(), "t_mono": now, "stats": stats}),
                zmq.NOBLOCK,
            )
        except zmq.Again:
            pass  # launcher not listening right now: a heartbeat is lost, nothing queues up

    # subclasses
    def setup(self) -> None:
        pass

    def step(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        pass

    def stats(self) -> dict:
        return {}


class RateMeter:
    """Events per second: (events - 1) / the time they span, over the last ``window`` seconds.

    A slow stream (1 frame a second) is measured over its last few events (within
    ``horizon`` seconds) instead of reading 2.0 or 0.0 from a short window; the rate falls
    to 0 once no event came for three of its own intervals.
    """

    def __init__(self, window: float = 2.0, horizon: float = 10.0, clock=time.monotonic):
        self.window, self.horizon, self.clock = window, horizon, clock
        self.times: list[float] = []

    def tick(self, t: float | None = None) -> None:
        self.times.append(self.clock() if t is None else t)

    def rate(self) -> float:
        now = self.clock()
        cut = now - max(self.window, self.horizon)
        i = 0
        while i < len(self.times) and self.times[i] < cut:
            i += 1
        del self.times[:i]
        recent = [t for t in self.times if t >= now - self.window]
        use = recent if len(recent) >= 3 else self.times[-3:]
        if len(use) < 2:
            return 0.0
        interval = (use[-1] - use[0]) / (len(use) - 1)
        if interval <= 0:  # a burst (several faces of one frame): events per window
            return round(len(recent) / self.window, 2)
        if now - use[-1] > 3 * interval:
            return 0.0
        return round(1.0 / interval, 2)
