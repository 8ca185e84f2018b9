"""Display stage: joins frames with results, tracks and smooths each face, draws the overlay,
and publishes annotated JPEG frames for any number of viewers (``emod-view``).

Every processed frame also becomes one ``emotions`` message (tracked, smoothed faces; schema in
:mod:`emod.protocol`), published on a plain PUB whether or not anyone listens, and to remote
subscribers of ``emotions`` over ``[remote]``'s CURVE link.

The preview socket is an XPUB: JPEG encoding happens only while at least one viewer is
subscribed. A viewer that stalls loses frames at its own socket (tiny high-water mark);
the pipeline never waits for it. The local window opens only when a display exists.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

import numpy as np
import zmq

from emod import bus, protocol, remote
from emod.stages.base import RateMeter, Stage
from emod.vision.emotions import from_config as emotion_stream

RING = 8  # frames kept to join with their results
STALE_S = 0.3  # without results for this long, frames are shown with the last overlay
STALE_FPS = 10.0


class DisplayStage(Stage):
    name = "display"

    def setup(self) -> None:
        d = self.cfg.display
        # [remote] frames_connect / results_connect: the capture or infer stage runs on another host
        self.frames, self.frames_remote = remote.subscribe(self.ctx, self.cfg, self.rundir, protocol.FRAMES, hwm=4, topic=b"frame")
        self.results, _ = remote.subscribe(self.ctx, self.cfg, self.rundir, protocol.RESULTS, hwm=20)
        self.power = bus.connect(self.ctx, zmq.SUB, self.rundir, protocol.POWER, hwm=4)
        self.preview = bus.bind(self.ctx, zmq.XPUB, self.rundir, protocol.PREVIEW, hwm=2) if d.preview else None
        self.emotions = bus.bind(self.ctx, zmq.PUB, self.rundir, protocol.EMOTIONS, hwm=100)
        self.remote = remote.open_publisher(self.ctx, self.cfg, self.log)  # [remote] TCP+CURVE XPUB, or None
        self.stream = emotion_stream(d)  # tracker + smoother, shared with emod analyze --summary
        self.emotions_sent = 0
        self.ring: OrderedDict[int, tuple[dict, np.ndarray, object]] = OrderedDict()
        self.topics: set[bytes] = set()  # topics some viewer subscribes to (emod.bus.read_subscriptions)
        self.tracks = []
        self.info = {"fps": 0.0, "infer_ms": None, "model": "", "watts": None}
        self.last_result_t = 0.0
        self.last_stale_t = 0.0
        self.rate = RateMeter()
        self.result_rate = RateMeter()
        self.published = 0
        self.encode_ms = 0.0
        self.encoded = 0  # JPEGs encoded since start (0 forever with display.preview = false)
        self.poller = zmq.Poller()
        for s in (self.frames, self.results, self.power, self.preview):
            if s is not None:
                self.poller.register(s, zmq.POLLIN)
        self.window = None
        if not d.preview:
            self.log.info("preview disabled: no image leaves this stage (display.preview = false)")
        elif d.window == "on" or (d.window == "auto" and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
            try:
                from emod.vision.window import Window

                self.window = Window("emod")
            except Exception as e:
                self.log.warning("no local window", reason=str(e))

    def step(self) -> None:
        events = dict(self.poller.poll(50))
        if self.preview in events:
            self._subscriptions()
        if self.power in events:
            self._power()
        if self.frames in events:
            self._frames()
        if self.results in events:
            self._results()
        now = time.monotonic()
        if self.ring and now - self.last_result_t > STALE_S and now - self.last_stale_t > 1.0 / STALE_FPS:
            self.last_stale_t = now
            seq = next(reversed(self.ring))
            self._publish(seq, stale=True)

    @property
    def subscribed(self) -> bool:
        """Whether some viewer subscribes to a topic that preview messages match (``preview`` or a prefix of it)."""
        return any(protocol.PREVIEW_TOPIC.startswith(t) for t in self.topics)

    def _subscriptions(self) -> None:
        # A set of topics, not a count of messages: the XPUB also passes up unsubscriptions a peer
        # never subscribed to (garbage bytes from a broken client can spell "\x00" or "\x00xyz"), which
        # made a count reach 0 while a viewer still watched. Such a message removes nothing from the
        # set. (An unsubscription of exactly "preview" from a peer that never subscribed would still
        # switch the preview off: libzmq does not say which peer sent it.)
        for _ in range(bus.read_subscriptions(self.preview, self.topics)):
            self.reject("preview", protocol.ProtocolError("not a subscription message"))

    def _power(self) -> None:
        msg, _ = bus.recv_latest(self.power, 0)
        if msg is None:
            return
        try:
            _, h, _ = protocol.decode(msg, expect=b"power")
        except protocol.ProtocolError as e:
            self.reject("power", e)
            return
        self.info["watts"] = h["watts"]

    def _frames(self) -> None:
        while True:
            try:
                msg = self.frames.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                _, h, payload = protocol.decode(msg, expect=b"frame")
            except protocol.ProtocolError as e:
                self.reject("frames", e)
                continue
            if self.frames_remote:
                h["t_mono"] = remote.local_mono(h)
            img = np.frombuffer(payload.buffer, np.uint8).reshape(h["shape"])
            self.ring[h["seq"]] = (h, img, payload)  # payload keeps the zero-copy buffer alive
            while len(self.ring) > RING:
                self.ring.popitem(last=False)

    def _results(self) -> None:
        latest = None
        while True:
            try:
                msg = self.results.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                _, r, _ = protocol.decode(msg, expect=b"result")
            except protocol.ProtocolError as e:
                self.reject("results", e)
                continue
            now = time.monotonic()
            self.last_result_t = now
            self.result_rate.tick()
            faces = [(tuple(f["box"]), np.asarray(f["probs"], np.float32)) for f in r["faces"]]
            frame = self.ring.get(r["seq"])
            age = now - r["t_capture"]  # frame gone from the ring: its capture time through the clocks
            t_wall = frame[0]["t_wall"] if frame is not None else time.time() - (age if 0.0 <= age <= 10.0 else 0.0)
            try:
                message = self.stream.update(faces, r["t_capture"], t_wall, r["seq"], r["model"],
                                             frame=frame[1] if frame is not None else None)  # a cut ends the tracks
            except ValueError as e:  # e.g. a zero-sized box
                self.reject("results", e)
                continue
            self.tracks = self.stream.visible
            self._publish_emotions(message)
            self.info.update(fps=self.result_rate.rate(), infer_ms=r["detect_ms"] + r["classify_ms"], model=r["model"])
            latest = r["seq"]
        if latest is not None:  # publish once, for the newest result: a slow display never builds a backlog
            seq = latest if latest in self.ring else (next(reversed(self.ring)) if self.ring else None)
            if seq is not None:
                self._publish(seq)

    def _publish_emotions(self, message: dict) -> None:
        """One ``emotions`` message: to local subscribers (a PUB drops it when nobody listens) and remote ones."""
        parts = protocol.encode_emotions(message)
        try:
            self.emotions.send_multipart(parts, zmq.NOBLOCK)
            self.emotions_sent += 1
        except zmq.Again:
            pass
        if self.remote is not None and self.remote.active(b"emotions"):  # [remote]
            self.remote.send(parts)

    def _publish(self, seq: int, stale: bool = False) -> None:
        if self.preview is None:  # display.preview = false: no overlay, no JPEG, nothing published
            return
        remote_on = self.remote is not None and self.remote.active(b"preview")  # [remote]
        if not self.subscribed and self.window is None and not remote_on:
            return
        import cv2  # imported on first use: without viewers this stage never pays OpenCV's memory

        from emod.vision import overlay

        h, img, _ = self.ring[seq]
        canvas = img.copy() if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        overlay.draw(canvas, self.tracks, self.info)
        if self.window is not None:
            self.window.show(canvas)
        if not self.subscribed and not remote_on:
            return
        t0 = time.perf_counter()
        ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.display.jpeg_quality])
        self.encode_ms = (time.perf_counter() - t0) * 1e3
        self.encoded += 1
        if not ok:
            return
        tracks = [{"id": t.id, "box": [round(v) for v in t.box], "raw_label": t.raw_label, "label": t.smoothed.label,
                   "confidence": round(float(t.smoothed.confidence), 4)} for t in self.tracks]
        header = {"seq": seq, "t_capture": h["t_mono"], "shape": list(canvas.shape), "format": "jpeg", "stale": stale,
                  "tracks": tracks, "info": self.info}
        parts = protocol.encode(b"preview", header, jpeg.tobytes())
        if remote_on:  # [remote] same message to remote viewers; NOBLOCK inside
            self.remote.send(parts)
        try:
            self.preview.send_multipart(parts, zmq.NOBLOCK)
            self.published += 1
            self.rate.tick()
        except zmq.Again:
            pass

    def teardown(self) -> None:
        if self.window is not None:
            self.window.close()
        for s in (self.frames, self.results, self.power, self.preview, self.emotions):
            if s is not None:
                s.close()
        if self.remote is not None:  # [remote]
            self.remote.close()

    def stats(self) -> dict:
        st = self.stream
        return {"fps": self.rate.rate(), "results_fps": self.result_rate.rate(), "published": self.published,
                "viewers": int(self.subscribed), "tracks": len(self.tracks), "encode_ms": round(self.encode_ms, 3),
                "encoded": self.encoded,
                "emotions": {"sent": self.emotions_sent, "faces": st.faces, "tracks_seen": st.tracks_seen,
                             "face_s": {k: round(v, 3) for k, v in st.face_seconds.items()}}}
