"""Capture stage: the only process that opens the source; publishes raw frames zero-copy.

Frames go out on an XPUB socket with a tiny high-water mark: a slow subscriber loses
frames (it sees gaps in ``seq``), nothing builds a backlog. The XPUB tells which topics are
subscribed: a file or folder source waits until an inference stage (the subscriber of
``end``) is connected before its first frame, so no frame is published to nobody, and
once it ends it repeats an ``end`` message naming its last ``seq`` so that frames lost at
the end are counted too (slow-joiner safe at both ends).

File frames are paced by their own media time (``t_media``, carried in the header), not by
an average rate: frame k is due at one start anchor plus its media time since the first
frame, so sleeps never add up to a drift, and frames made late by a stall catch up at
:data:`CATCH_UP_SPEED` times real time until the schedule is met again (only a stall over
:data:`RESYNC_S` starts a new anchor).

A file or folder has every frame analysed: the next frame goes out only once inference has
said it is done with the previous one (upstream, as a subscription: :data:`emod.protocol.ACKS_TOPIC`). A machine slower than the file's frame rate then plays it
slower than real time instead of losing frames; only an inference stage that gives no result
within :data:`ACK_TIMEOUT_S` (stuck, restarting) loses frames, and it counts them as dropped.
Source errors are retried with exponential backoff (reset only once a
frame arrives) and reported in telemetry as ``state`` and ``error``, never fatal; a live
source that sends nothing is "no signal", one that sends the same picture for
:data:`FROZEN_S` seconds is flagged ``frozen``.
"""

from __future__ import annotations

import time
import zlib

import zmq

from emod import bus, protocol, remote
from emod.sources import open_source
from emod.sources.base import NoSignal, SourceError
from emod.stages.base import RateMeter, Stage

FROZEN_S = 5.0  # a live source repeating one picture this long is frozen
END_REPEAT_S = 1.0
MAX_BACKOFF_S = 10.0
ACK_TIMEOUT_S = 5.0  # the longest a file frame waits for inference's result of the previous one (a first inference can be slow)
CATCH_UP_SPEED = 2.0  # late file frames catch up at most this much faster than real time (tracking sees sane motion)
JOIN_GRACE_S = 0.5  # a subscriber of `end` that does not acknowledge gets this long for its other subscriptions
RESYNC_S = 5.0  # a file frame this late (a suspended process, slow inference) starts a new pacing anchor, not a burst


def _fingerprint(frame) -> int:
    return zlib.crc32(frame[::7, ::7].tobytes())


class CaptureStage(Stage):
    name = "capture"
    frozen_s = FROZEN_S
    opener = staticmethod(open_source)  # how a spec becomes a source (tests hand in fakes)

    def setup(self) -> None:
        self.pub = bus.bind(self.ctx, zmq.XPUB, self.rundir, protocol.FRAMES, hwm=2)
        self.link = remote.open_link_publisher(self.ctx, self.cfg, protocol.FRAMES, self.log)  # frames_bind, or None
        self.topics: set[bytes] = set()  # topics some local subscriber holds
        self.end_seen_at: float | None = None  # when a subscriber of `end` that does not acknowledge was first seen
        self.acked = 0  # the newest frame seq inference has said it is done with (an ``acks:SEQ`` subscription)
        self.seq = 0
        self.source = None
        self.spec: str | None = None  # the source last opened; kept while a looping clip reopens
        self.state, self.error = "starting", None
        self.retry_at = 0.0
        self.backoff = 0.5
        self.eos = False
        self.end_sent_t = 0.0
        self.rate = RateMeter()
        self.errors = self.loops = 0
        self.opened_once = False
        self.looping = False
        self.frozen = False
        self.same_since: float | None = None
        self.last_print: int | None = None
        self.t_media: float | None = None
        self.auto_notes: set[str] = set()

    # --- subscribers ------------------------------------------------------------------------------------------
    def _subscriptions(self) -> None:
        for _ in range(bus.read_subscriptions(self.pub, self.topics)):
            self.reject("frames", protocol.ProtocolError("not a subscription message"))
        for topic in [t for t in self.topics if t.startswith(b"acks:")]:  # inference's acknowledgements: keep the newest
            seq = protocol.acked_seq(topic)
            if seq is not None:
                self.acked = max(self.acked, seq)
            self.topics.discard(topic)

    def _infer_connected(self) -> bool:
        """Inference receives frames: its last subscription (ACKS_TOPIC) is here; or, for a subscriber that does not
        acknowledge, ``end`` has been for :data:`JOIN_GRACE_S` (``end`` alone can arrive before ``frame``)."""
        if self.cfg.remote.frames_bind:  # inference may run on another host: nothing to wait for here
            return True
        if protocol.ACKS_TOPIC in self.topics:
            return True
        if b"end" not in self.topics:
            self.end_seen_at = None
            return False
        if self.end_seen_at is None:
            self.end_seen_at = time.monotonic()
        return time.monotonic() - self.end_seen_at >= JOIN_GRACE_S

    # --- the source -------------------------------------------------------------------------------------------
    def _open(self) -> None:
        c = self.cfg.capture
        src = self.opener(c.source, c.width, c.height, c.fps, warn=self._auto_note)
        src.open()
        if src.spec != self.spec:  # a new name (auto resolved, demo's path): the next report() says it at once,
            self._last_report = float("-inf")  # not up to a telemetry interval after the first frames were processed
        self.source, self.spec = src, src.spec
        self.t0 = time.monotonic()
        self.m0: float | None = None
        self.n0 = 0
        self.resynced = False  # said once per opening that the file plays slower than real time
        self.sent_at: float | None = None  # when the last file frame went out, and its media offset
        self.sent_offset = 0.0
        if self.looping:
            self.looping = False  # a looping clip starts again: not news
        elif not self.opened_once:
            self.log.info("source opened", source=src.spec, kind=src.kind, fps=src.fps)
            for path, reason in getattr(src, "skipped", [])[:20]:  # a folder's special files, link loops, non-images
                self.log.warning("folder entry skipped", path=path, reason=reason)
        else:
            self.log.info("source reopened", source=src.spec, kind=src.kind, after_errors=self.errors)
        self.opened_once = True

    def _auto_note(self, note: str) -> None:
        """Log why ``auto`` passed a camera over, once per distinct reason (a looping clip reopens often)."""
        if note not in self.auto_notes:
            self.auto_notes.add(note)
            self.log.warning("source auto", reason=note)

    def _fail(self, err: Exception) -> None:
        self.errors += 1
        self.error = str(err)
        self.state = "no signal" if isinstance(err, NoSignal) else "error"
        self.log.warning("source error, retrying", error=self.error, retry_in=self.backoff)  # repeats are rate-limited (emod.log)
        self._close()
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF_S)

    def _close(self) -> None:
        if self.source is not None:
            try:
                self.source.close()
            except Exception:
                pass
        self.source = None

    def step(self) -> None:
        self._subscriptions()
        if self.eos:
            self._send_end()
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
        src = self.source
        if not src.live and self.seq == 0 and not self._infer_connected():
            time.sleep(0.02)  # a finite source waits for inference: frames sent before it joins are lost uncounted
            return
        try:
            frame = src.read()
        except (SourceError, OSError) as e:
            self._fail(e)
            return
        if frame is None:  # end of a file or folder
            self._close()
            if self.cfg.capture.loop:
                self.loops += 1
                self.looping = True
                self.retry_at = 0.0
                return
            warn = getattr(src, "truncated", None)
            self.log.info("end of source", frames=self.seq, **({"warning": warn} if warn else {}))
            self.eos, self.state = True, "ended"
            self._send_end()
            return
        self.backoff = 0.5  # a frame arrived: the source works again
        self.state, self.error = "ok", None
        self._pace(src)
        if not src.live:
            self._await_inference()
        if src.live:
            self._check_frozen(frame)
        self.seq += 1
        header = {"seq": self.seq, "t_mono": time.monotonic(), "t_wall": time.time(), "shape": list(frame.shape),
                  "dtype": "uint8", "source": src.spec}
        if src.t_media is not None:
            header["t_media"] = round(src.t_media, 6)
            self.t_media = src.t_media
        topic, h = protocol.encode(b"frame", header, b"x")[:2]
        self.sent_at = header["t_mono"]
        self.pub.send_multipart([topic, h, frame.data], copy=False)
        if self.link is not None and self.link.active():
            self.link.send([topic, h, frame.data], copy=False)
        self.rate.tick()

    def _pace(self, src) -> None:
        """Sleep until this file frame is due: by its own media time, else by the source's nominal rate.

        Every due time is the first frame's anchor plus the media time since it, with no drift; late
        frames go out at :data:`CATCH_UP_SPEED` times their media spacing until back on it (a burst would
        squeeze their capture times, and tracking reads motion from them); over :data:`RESYNC_S` late re-anchors.
        """
        if src.live or not self.cfg.capture.realtime:
            return
        if src.t_media is not None:
            if self.m0 is None:
                self.t0, self.m0 = time.monotonic(), src.t_media
            offset = src.t_media - self.m0
        elif src.fps:
            if self.n0 == 0:
                self.t0 = time.monotonic()
            offset = self.n0 / src.fps
            self.n0 += 1
        else:
            return
        due = self.t0 + offset
        if self.sent_at is not None and offset >= self.sent_offset:  # catching up: at most CATCH_UP_SPEED x real time
            due = max(due, self.sent_at + (offset - self.sent_offset) / CATCH_UP_SPEED)
        self.sent_offset = offset
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -RESYNC_S:  # stalled for long, or inference slower than the file: start again from here
            if not self.resynced:
                self.resynced = True
                self.log.warning("file source behind its own frame rate (slow inference or a stall): played slower "
                                 "than real time, every frame analysed", late_s=round(-delay, 2))
            self.t0, self.m0, self.n0 = time.monotonic(), src.t_media, 1
            self.sent_offset = 0.0

    def _await_inference(self) -> None:
        """Before a file frame goes out: wait for inference to be done with the previous one (see the module doc)."""
        self._subscriptions()
        if self.seq == 0 or self.acked >= self.seq or protocol.ACKS_TOPIC not in self.topics:
            return
        if self.cfg.remote.frames_bind:  # inference may run on another host, subscribed on the link: not waited for
            return
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while self.acked < self.seq:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.pub.poll(int(min(left, 0.1) * 1e3) + 1, zmq.POLLIN)  # subscription messages make an XPUB readable
            self._subscriptions()
            if protocol.ACKS_TOPIC not in self.topics:  # inference went away
                return

    def _check_frozen(self, frame) -> None:
        fp = _fingerprint(frame)
        now = time.monotonic()
        if fp != self.last_print:
            self.last_print, self.same_since = fp, now
            if self.frozen:
                self.frozen = False
                self.log.info("source moving again", source=self.source.spec)
            return
        if not self.frozen and now - self.same_since >= self.frozen_s:
            self.frozen = True
            self.log.warning("source frozen: the same picture for seconds", source=self.source.spec,
                             seconds=round(now - self.same_since, 1))

    def _send_end(self) -> None:
        now = time.monotonic()
        if now - self.end_sent_t < END_REPEAT_S:
            return
        self.end_sent_t = now
        parts = protocol.encode(b"end", {"seq": self.seq, "source": self.cfg.capture.source})
        try:
            self.pub.send_multipart(parts, zmq.NOBLOCK)
        except zmq.Again:
            pass
        if self.link is not None and self.link.active():
            self.link.send(parts)

    def teardown(self) -> None:
        self._close()
        self.pub.close()
        if self.link is not None:
            self.link.close()

    def source_state(self) -> str:
        return "frozen" if self.frozen and self.state == "ok" else self.state

    def stats(self) -> dict:
        return {"fps": self.rate.rate(), "frames": self.seq, "errors": self.errors, "error": self.error, "eos": self.eos,
                "state": self.source_state(), "frozen": self.frozen, "loops": self.loops, "t_media": self.t_media,
                "source": self.spec or self.cfg.capture.source,
                **({"remote_sent": self.link.sent, "remote_dropped": self.link.dropped} if self.link else {})}
