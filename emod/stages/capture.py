"""Capture stage: the only process that opens the source; publishes raw frames zero-copy.

Frames go out on a PUB socket with a tiny high-water mark: a slow subscriber loses
frames (it sees gaps in ``seq``), nothing builds a backlog. Source errors are retried
with exponential backoff and reported in telemetry, never fatal.
"""

from __future__ import annotations

import time

import zmq

from emod import bus, protocol, remote
from emod.sources import open_source
from emod.sources.base import SourceError
from emod.stages.base import RateMeter, Stage


class CaptureStage(Stage):
    name = "capture"

    def setup(self) -> None:
        self.pub = bus.bind(self.ctx, zmq.PUB, self.rundir, protocol.FRAMES, hwm=2)
        self.link = remote.open_link_publisher(self.ctx, self.cfg, protocol.FRAMES, self.log)  # frames_bind, or None
        self.seq = 0
        self.source = None
        self.error: str | None = None
        self.retry_at = 0.0
        self.backoff = 0.5
        self.eos = False
        self.rate = RateMeter()
        self.errors = 0
        self.auto_notes: set[str] = set()

    def _open(self) -> None:
        c = self.cfg.capture
        src = open_source(c.source, c.width, c.height, c.fps, warn=self._auto_note)
        src.open()
        self.source, self.error, self.backoff = src, None, 0.5
        self.t0, self.n0 = time.monotonic(), 0
        self.log.info("source opened", source=src.spec, kind=src.kind, fps=src.fps)

    def _auto_note(self, note: str) -> None:
        """Log why ``auto`` passed a camera over, once per distinct reason (a looping clip reopens often)."""
        if note not in self.auto_notes:
            self.auto_notes.add(note)
            self.log.warning("source auto", reason=note)

    def _fail(self, err: Exception) -> None:
        self.errors += 1
        self.error = str(err)
        self.log.warning("source error, retrying", error=self.error, retry_in=self.backoff)
        if self.source is not None:
            try:
                self.source.close()
            except Exception:
                pass
        self.source = None
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, 10.0)

    def step(self) -> None:
        if self.eos:
            time.sleep(0.1)
            return
        if self.source is None:
            if time.monotonic() < self.retry_at:
                time.sleep(min(0.1, self.retry_at - time.monotonic()))
                return
            try:
                self._open()
            except (SourceError, OSError) as e:
                self._fail(e)
                return
        try:
            frame = self.source.read()
        except (SourceError, OSError) as e:
            self._fail(e)
            return
        if frame is None:  # end of a file or folder
            if self.cfg.capture.loop:
                self.source.close()
                self.source = None
                self.retry_at = 0.0
                return
            self.log.info("end of source", frames=self.seq)
            self.eos = True
            return
        src = self.source
        if src.fps and self.cfg.capture.realtime and src.kind in ("video", "folder"):
            due = self.t0 + self.n0 / src.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.5:  # fell far behind (stalled): re-anchor instead of bursting
                self.t0, self.n0 = time.monotonic(), 0
            self.n0 += 1
        self.seq += 1
        header = {"seq": self.seq, "t_mono": time.monotonic(), "t_wall": time.time(), "shape": list(frame.shape),
                  "dtype": "uint8", "source": src.spec}
        topic, h = protocol.encode(b"frame", header, b"x")[:2]
        self.pub.send_multipart([topic, h, frame.data], copy=False)
        if self.link is not None and self.link.active():
            self.link.send([topic, h, frame.data], copy=False)
        self.rate.tick()

    def teardown(self) -> None:
        if self.source is not None:
            self.source.close()
        self.pub.close()
        if self.link is not None:
            self.link.close()

    def stats(self) -> dict:
        return {"fps": self.rate.rate(), "frames": self.seq, "errors": self.errors, "error": self.error, "eos": self.eos,
                "source": self.source.spec if self.source else self.cfg.capture.source,
                **({"remote_sent": self.link.sent, "remote_dropped": self.link.dropped} if self.link else {})}
