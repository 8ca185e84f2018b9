"""The event-loop side of the viewer's inputs: preview frames and ``emotions`` messages.

Both arrive on threads (the :class:`~emod.viewer.receiver.Receiver`, and an
:class:`emod.events.Subscriber` loop) and are handed to the asyncio loop with
``call_soon_threadsafe``. Every HTTP client then waits on its own for "something newer than
what I had": a slow client skips frames, a stalled one is dropped by its own write timeout,
and none of them ever holds up a thread, another client or the daemon.

:class:`EmotionHub` also keeps the latest message (``/api/emotions``), per-client queues for
``/events`` (a client whose queue fills up is dropped, never waited for) and the 5-minute
timeline of face-seconds per smoothed label (``/api/timeline``), in ``BUCKET_S`` buckets.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

from emod.labels import LABELS
from emod.viewer.receiver import Frame, Receiver

BUCKET_S = 5
WINDOW_S = 300
MAX_GAP_S = 1.0  # a gap between messages longer than this adds no face-time (the daemon was away)
SSE_QUEUE = 256


class FrameHub:
    """The newest preview frame, awaitable from the event loop."""

    def __init__(self, receiver: Receiver, loop: asyncio.AbstractEventLoop):
        self.receiver, self.loop = receiver, loop
        self.latest: Frame | None = None
        self._event = asyncio.Event()
        receiver.listeners.append(lambda f: loop.call_soon_threadsafe(self._publish, f))

    def _publish(self, frame: Frame) -> None:
        self.latest = frame
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, after: int, timeout: float) -> Frame | None:
        """The newest frame with ``n > after``, waiting up to ``timeout`` s; None on timeout."""
        deadline = self.loop.time() + timeout
        while self.latest is None or self.latest.n <= after:
            left = deadline - self.loop.time()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except asyncio.TimeoutError:
                return None
        return self.latest

    def fresh_after(self, max_age: float = 1.0) -> int:
        """A frame number to wait after so that a new client never starts with an old frame."""
        f = self.latest
        return f.n if f is not None and time.monotonic() - f.t_recv > max_age else 0


class SseClient:
    """One ``/events`` client: its queue of encoded events, the latest message to start with, whether it fell behind."""

    def __init__(self, first: bytes):
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(SSE_QUEUE)
        self.first = first
        self.lagging = False


def sse_event(msg: dict) -> bytes:
    """One Server-Sent Event: ``id: SEQ`` and one ``data:`` line of strict JSON."""
    return f"id: {msg['seq']}\ndata: {json.dumps(msg, separators=(',', ':'), allow_nan=False)}\n\n".encode()


class EmotionHub:
    """Latest ``emotions`` message, SSE fan-out and the face-time timeline, fed by a subscriber thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, subscriber=None, clock=time.monotonic, wall=time.time):
        self.loop = loop
        self.clock, self.wall = clock, wall  # buckets age on the monotonic clock; wall time only labels them
        self.latest: dict | None = None
        self.latest_t = 0.0  # monotonic time it arrived
        self.clients: set[SseClient] = set()
        self.buckets: dict[int, dict[str, float]] = {}  # monotonic bucket start (s) -> face-seconds per label
        self.tracks_seen: set[int] = set()
        self._prev_t: float | None = None
        self._sub = subscriber
        self._running = subscriber is not None
        if subscriber is not None:
            self._thread = threading.Thread(target=self._run, name="emotions-subscriber", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while self._running:
                msg = self._sub.recv(timeout=0.5)
                if msg is not None:
                    self.loop.call_soon_threadsafe(self.publish, msg)
        except RuntimeError:  # the loop closed under us at shutdown
            pass
        finally:
            self._sub.close()

    def close(self) -> None:
        self._running = False

    def age(self) -> float | None:
        return None if self.latest is None else time.monotonic() - self.latest_t

    # --- on the loop --------------------------------------------------------------------------------
    def add_client(self) -> SseClient:
        c = SseClient(sse_event(self.latest) if self.latest is not None else b"")
        self.clients.add(c)
        return c

    def remove_client(self, c: SseClient) -> None:
        self.clients.discard(c)

    def publish(self, msg: dict) -> None:
        self.latest, self.latest_t = msg, time.monotonic()
        self._account(msg)
        data = sse_event(msg)
        for c in self.clients:
            if c.lagging:
                continue
            try:
                c.queue.put_nowait(data)
            except asyncio.QueueFull:
                c.lagging = True  # its handler drops it; nobody waits for a slow reader

    def _account(self, msg: dict) -> None:
        t = self.clock()  # arrival time: a wall-clock step (NTP on a Pi without RTC) neither freezes nor skips the window
        dt = 0.0 if self._prev_t is None else t - self._prev_t
        self._prev_t = t
        if not 0.0 < dt <= MAX_GAP_S:
            dt = 0.0
        start = int(math.floor(t / BUCKET_S) * BUCKET_S)
        bucket = self.buckets.setdefault(start, {})
        for f in msg["faces"]:
            self.tracks_seen.add(f["track"])
            bucket[f["label"]] = bucket.get(f["label"], 0.0) + dt
        for old in [k for k in self.buckets if k < start - WINDOW_S]:
            del self.buckets[old]

    def timeline(self) -> dict:
        """Face-seconds per label in BUCKET_S buckets over the last WINDOW_S seconds, with the window's shares.

        Each bucket's ``t`` is its start in epoch seconds (now's wall time minus its monotonic age).
        """
        mono, now = self.clock(), self.wall()
        keep = sorted(k for k in self.buckets if k > mono - WINDOW_S - BUCKET_S)
        buckets = [{"t": round(now - (mono - k), 3), "face_s": {lab: round(v, 3) for lab, v in self.buckets[k].items() if v > 0}}
                   for k in keep]
        totals = {lab: 0.0 for lab in LABELS}
        for b in buckets:
            for lab, v in b["face_s"].items():
                totals[lab] += v
        total = sum(totals.values())
        return {"labels": list(LABELS), "bucket_s": BUCKET_S, "window_s": WINDOW_S, "now": round(now, 3),
                "buckets": buckets, "face_s": {k: round(v, 3) for k, v in totals.items()},
                "shares": {k: (round(v / total, 4) if total > 0 else 0.0) for k, v in totals.items()}}
