"""Infer stage: newest frame -> face boxes -> emotion probabilities -> results.

Owns the classifier and hot-swaps it: ``set-model`` loads the new model in a thread
beside the old one (which keeps serving), warms it up, swaps, and answers once the
new model has classified a frame, or after 2 s without frames (the reply's ``first_inference``
is ``"frame"`` or ``"warm-up"``); on any failure the old model stays and the caller gets the reason.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from emod import bus, protocol, remote
from emod.models import registry
from emod.models.classifier import Classifier
from emod.pipeline import FacePipeline
from emod.stages.base import RateMeter, Stage
from emod.vision import detect


class InferStage(Stage):
    name = "infer"

    def setup(self) -> None:
        c = self.cfg.infer
        self.detector = detect.from_config(c)
        self.classifier = Classifier(registry.find(c.model, self.cfg.daemon.state_dir), c.threads)
        self.pipeline = FacePipeline.from_config(c, self.classifier, self.detector)
        # frames, and the end-of-source marker (capture waits for this subscription before a file's first frame)
        self.frames, self.frames_remote = remote.subscribe(self.ctx, self.cfg, self.rundir, protocol.FRAMES, hwm=2, topic=b"frame")
        self.frames.setsockopt(zmq.SUBSCRIBE, b"end")
        # last: capture sends a file's first frame once it sees this one (see emod.protocol.ACKS_TOPIC)
        self.frames.setsockopt(zmq.SUBSCRIBE, protocol.ACKS_TOPIC)
        self.acked: int | None = None  # the frame last acknowledged to capture
        self.interval: float | None = None  # seconds between captured frames (EMA), to tell a stale frame
        self.last_t_mono: float | None = None
        self.last_rx_seq = 0
        self.results = bus.bind(self.ctx, zmq.PUB, self.rundir, protocol.RESULTS, hwm=50)
        self.link = remote.open_link_publisher(self.ctx, self.cfg, protocol.RESULTS, self.log)  # results_bind, or None
        self.control = bus.bind(self.ctx, zmq.ROUTER, self.rundir, protocol.INFER_CONTROL, hwm=100)
        self.last_seq = 0
        self.first_rx_seq = None  # the first frame this process received: frames before it were sent to nobody
        self.processed = self.dropped = self.faces = self.faces_dropped = 0
        self.rate = RateMeter()
        self.face_rate = RateMeter()
        self.loading: threading.Thread | None = None
        self.loaded: tuple | None = None  # (request id, identity, Classifier | Exception)
        self.pending_reply: tuple | None = None  # (identity, id, deadline)
        self.last_ms = {"detect_ms": 0.0, "classify_ms": 0.0}
        self.log.info("model loaded", model=self.classifier.name, format=self.classifier.info.format, backend=self.classifier.backend)

    # --- control --------------------------------------------------------------------------------------------
    def _send_reply(self, identity: bytes, body: dict) -> None:
        self.control.send_multipart([identity, *protocol.encode(b"reply", body)])

    def _handle_control(self) -> None:
        while True:
            try:
                parts = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, rest = parts[0], parts[1:]
            try:
                _, req, _ = protocol.decode(rest, expect=b"request")
            except protocol.ProtocolError as e:
                self.reject("infer-control", e)
                continue
            rid, cmd, args = req["id"], req["cmd"], req["args"]
            if cmd == "ping":
                self._send_reply(identity, protocol.reply_ok(rid, {"model": self.classifier.name}))
            elif cmd == "set-model":
                self._start_load(identity, rid, args.get("name"))
            else:
                self._send_reply(identity, protocol.reply_error(rid, protocol.E_UNKNOWN_COMMAND, f"infer has no command {cmd!r}"))

    def _start_load(self, identity: bytes, rid: str, name) -> None:
        if self.loading is not None or self.pending_reply is not None:
            self._send_reply(identity, protocol.reply_error(rid, protocol.E_BUSY, "a model change is already in progress"))
            return
        try:
            info = registry.find(str(name), self.cfg.daemon.state_dir)
        except registry.ModelError as e:
            self._send_reply(identity, protocol.reply_error(rid, protocol.E_UNKNOWN_MODEL, str(e)))
            return

        def work():
            try:
                result = Classifier(info, self.cfg.infer.threads)
            except Exception as e:  # any failure leaves the old model serving
                result = e
            self.loaded = (rid, identity, result)

        self.log.info("loading model", model=info.name)
        self.loading = threading.Thread(target=work, name="model-loader", daemon=True)
        self.loading.start()

    def _finish_load(self) -> None:
        if self.loaded is None:
            return
        rid, identity, result = self.loaded
        self.loaded, self.loading = None, None
        if isinstance(result, Exception):
            self.log.warning("model change failed, keeping the old model", error=str(result), model=self.classifier.name)
            code = protocol.E_MODEL_FAILED
            self._send_reply(identity, protocol.reply_error(rid, code, str(result)))
            return
        old = self.classifier
        self.classifier = self.pipeline.classifier = result
        del old
        self.log.info("model swapped", model=result.name)
        self.pending_reply = (identity, rid, time.monotonic() + 2.0)

    def _maybe_reply_swapped(self, served: bool) -> None:
        if self.pending_reply is None:
            return
        identity, rid, deadline = self.pending_reply
        if served or time.monotonic() > deadline:
            self.pending_reply = None
            self._send_reply(identity, protocol.reply_ok(rid, {"model": self.classifier.name, "first_inference": "frame" if served else "warm-up"}))

    # --- frames ---------------------------------------------------------------------------------------------
    def step(self) -> None:
        self._handle_control()
        self._finish_load()
        got = self._freshest()
        if got is None:
            self._maybe_reply_swapped(False)
            return
        h, payload = got
        t_start = time.monotonic()
        seq = h["seq"]
        base = self.last_seq or self.first_rx_seq - 1  # frames received but skipped before the first one count too
        if seq > base + 1:
            self.dropped += seq - base - 1
        self.last_seq = seq
        frame = np.frombuffer(payload.buffer, np.uint8).reshape(h["shape"])
        faces, detect_ms, classify_ms = self.pipeline.process(frame)
        dropped_faces = self.pipeline.faces_dropped
        t_done = time.monotonic()
        result = {"seq": seq, "t_capture": h["t_mono"], "t_done": t_done, "model": self.classifier.name,
                  "detect_ms": round(detect_ms, 3), "classify_ms": round(classify_ms, 3),
                  "queue_ms": round((t_start - h["t_mono"]) * 1e3, 3), "faces": [f.as_dict() for f in faces],
                  "faces_dropped": dropped_faces, "frame_shape": h["shape"]}
        if "t_media" in h:
            result["t_media"] = h["t_media"]
        parts = protocol.encode(b"result", result)
        self.results.send_multipart(parts)
        if self.link is not None and self.link.active():
            self.link.send(parts)
        self._ack(seq)
        self.processed += 1
        self.faces += len(faces)
        self.faces_dropped += dropped_faces
        self.rate.tick()
        for _ in faces:
            self.face_rate.tick()
        self.last_ms = {"detect_ms": detect_ms, "classify_ms": classify_ms}
        self._maybe_reply_swapped(True)

    def _ack(self, seq: int) -> None:
        """Tell capture, upstream on the frames socket, that frame SEQ is done (see ``emod.protocol.ACKS_TOPIC``)."""
        self.frames.setsockopt(zmq.SUBSCRIBE, protocol.ack_topic(seq))
        if self.acked is not None and self.acked != seq:
            self.frames.setsockopt(zmq.UNSUBSCRIBE, protocol.ack_topic(self.acked))
        self.acked = seq

    def _freshest(self) -> tuple[dict, object] | None:
        """The newest frame, decoded: ``(header, payload)``, or None when none came within 50 ms.

        Frames that waited in the socket queues while the previous one was processed are
        stale: the newest one is taken, and if even that is older than a frame interval the
        stage waits (at most two intervals) for the next one, so inference always starts on a
        fresh frame instead of one several frames old. Skipped frames count as ``dropped``.
        """
        newest = None
        deadline = None
        wait_ms = 50
        while True:
            end = None
            for msg in self._drain(wait_ms):
                try:
                    topic, h, payload = protocol.decode(msg)
                    if topic not in (b"frame", b"end"):
                        raise protocol.ProtocolError(f"unexpected topic {topic!r} on frames")
                except protocol.ProtocolError as e:
                    self.reject("frames", e)
                    continue
                if topic == b"end":
                    end = h
                    continue
                if self.frames_remote:  # captured on another host: its monotonic clock means nothing here
                    h["t_mono"] = remote.local_mono(h)
                self._learn_interval(h)
                if self.first_rx_seq is None:
                    self.first_rx_seq = h["seq"]
                newest = (h, payload)
            if newest is None:
                if end is not None:  # applied only with no frame in hand (it repeats every second)
                    self._on_end(end)
                return None
            now = time.monotonic()
            if self.interval is None or now - newest[0]["t_mono"] <= self.interval + 0.005:
                return newest
            if deadline is None:
                deadline = now + min(2.0 * self.interval, 0.25)
            if now >= deadline:
                return newest
            wait_ms = max(1, int((deadline - now) * 1e3))

    def _drain(self, wait_ms: int) -> list:
        """Every message waiting on the frames socket (after up to ``wait_ms`` for the first), oldest first."""
        if not self.frames.poll(wait_ms, zmq.POLLIN):
            return []
        out = []
        while len(out) < 1000:
            try:
                out.append(self.frames.recv_multipart(zmq.NOBLOCK, copy=False))
            except zmq.Again:
                break
        return out

    def _learn_interval(self, h: dict) -> None:
        if self.last_t_mono is not None and h["seq"] > self.last_rx_seq:
            dt = (h["t_mono"] - self.last_t_mono) / (h["seq"] - self.last_rx_seq)
            if 0 < dt < 5.0:
                self.interval = dt if self.interval is None else 0.8 * self.interval + 0.2 * dt
        self.last_t_mono, self.last_rx_seq = h["t_mono"], h["seq"]

    def _on_end(self, h: dict) -> None:
        """A finite source ended after frame ``seq``: frames after the last one seen were lost, count them."""
        if self.last_seq and h["seq"] > self.last_seq:
            self.dropped += h["seq"] - self.last_seq
            self.last_seq = h["seq"]
        elif not self.last_seq and h["seq"] > 0 and self.processed == 0:
            self.dropped += h["seq"]
            self.last_seq = h["seq"]

    def teardown(self) -> None:
        for s in (self.frames, self.results, self.control):
            s.close()
        if self.link is not None:
            self.link.close()

    def stats(self) -> dict:
        return {"fps": self.rate.rate(), "processed": self.processed, "dropped": self.dropped, "last_seq": self.last_seq,
                "faces": self.faces, "faces_per_s": self.face_rate.rate(), "faces_dropped": self.faces_dropped, "model": self.classifier.name, "loading": self.loading is not None,
                **{k: round(v, 3) for k, v in self.last_ms.items()}}
