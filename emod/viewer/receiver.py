"""The one preview receiver of a viewer process.

A single thread owns the SUB socket (local ipc or remote TCP+CURVE), keeps only the
newest valid preview message and wakes every waiting consumer. Consumers never hold
the thread up: each one asks for "a frame newer than the one I had" and so skips
whatever it was too slow for. Garbage on the socket is counted and dropped.

The socket is subscribed only while someone wants frames (:meth:`Receiver.acquire`);
the display stage encodes JPEG only while a viewer is subscribed, so an idle
``emod-view --http`` costs the pipeline nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import zmq

from emod import protocol

TOPIC = b"preview"
PREVIEW_DISABLED = "preview disabled: the daemon runs with display.preview = false (no images leave it)"


@dataclass(frozen=True)
class Frame:
    """One received preview: a running number (per receiver), its header, its JPEG bytes, when it arrived."""

    n: int
    header: dict
    jpeg: bytes
    t_recv: float


class Receiver:
    """Receives previews on ``sock`` in a background thread (the thread takes the socket over)."""

    def __init__(self, sock: zmq.Socket, poll_ms: int = 100):
        self.sock = sock
        self.poll_ms = poll_ms
        self.cond = threading.Condition()
        self.latest: Frame | None = None
        self.received = 0
        self.rejected = 0
        self.arrivals: deque[float] = deque(maxlen=64)
        self.listeners: list = []  # callables(Frame), called in the receiver thread (keep them short)
        self._users = 0
        self._running = True
        self._thread = threading.Thread(target=self._run, name="preview-receiver", daemon=True)
        self._thread.start()

    # --- demand ---------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Declare interest in frames (subscribes the socket)."""
        with self.cond:
            self._users += 1

    def release(self) -> None:
        with self.cond:
            self._users = max(0, self._users - 1)

    def wait(self, after: int = 0, timeout: float | None = None) -> Frame | None:
        """The newest frame with ``n > after``, waiting up to ``timeout`` seconds; None on timeout or stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self._running and (self.latest is None or self.latest.n <= after):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.cond.wait(left if left is not None else 1.0)
            return self.latest if self.latest is not None and self.latest.n > after else None

    def rate(self, window: float = 3.0) -> float:
        """Frames received per second over the last ``window`` seconds."""
        now = time.monotonic()
        ts = [t for t in list(self.arrivals) if now - t <= window]
        if len(ts) < 2:
            return 0.0
        return round((len(ts) - 1) / max(ts[-1] - ts[0], 1e-6), 2)

    # --- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        subscribed = True  # sockets come subscribed (bus.connect / remote.connect_subscriber)
        try:
            while self._running:
                want = self._users > 0
                if want != subscribed:
                    self.sock.setsockopt(zmq.SUBSCRIBE if want else zmq.UNSUBSCRIBE, TOPIC)
                    subscribed = want
                if not self.sock.poll(self.poll_ms, zmq.POLLIN):
                    continue
                newest = None
                while True:  # drain: only the newest message matters
                    try:
                        parts = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        _, header, payload = protocol.decode(parts, expect=TOPIC)
                        if header.get("format") != "jpeg":
                            raise protocol.ProtocolError(f"unsupported preview format {header.get('format')!r}")
                    except protocol.ProtocolError:
                        self.rejected += 1
                        continue
                    newest = (header, bytes(payload))
                if newest is None:
                    continue
                now = time.monotonic()
                self.arrivals.append(now)
                with self.cond:
                    self.received += 1
                    self.latest = frame = Frame(self.received, newest[0], newest[1], now)
                    self.cond.notify_all()
                for listener in self.listeners:
                    listener(frame)
        finally:
            self.sock.close()
            with self.cond:
                self._running = False
                self.cond.notify_all()

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
