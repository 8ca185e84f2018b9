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
        self.frames, self.frames_remote = remote.subscribe(self.ctx, self.cfg, self.rundir, protocol.FRAMES, hwm=2)
        self.results = bus.bind(self.ctx, zmq.PUB, self.rundir, protocol.RESULTS, hwm=50)
        self.link = remote.open_link_publisher(self.ctx, self.cfg, protocol.RESULTS, self.log)  # results_bind, or None
        self.control = bus.bind(self.ctx, zmq.ROUTER, self.rundir, protocol.INFER_CONTROL, hwm=100)
        self.last_seq = 0
        self.processed = self.dropped = self.faces = 0
        self.rate = RateMeter()
        self.face_rate = RateMeter()
        self.loading: threading.Thread | None = None
        self.loaded: tuple | None = None  # (request id, identity, Classifier | Exception)
        self.pending_reply: tuple | None = None  # (identity, id, deadline)
        self.last_ms = {"detect_ms": 0.0, "classify_ms": 0.0}
        self.log.info("model loaded", model=self.classifier.name, format=self.classifier.info.format)

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
        msg, skipped = bus.recv_latest(self.frames, 50)
        if msg is None:
            self._maybe_reply_swapped(False)
            return
        t_start = time.monotonic()
        try:
            _, h, payload = protocol.decode(msg, expect=b"frame")
        except protocol.ProtocolError as e:
            self.reject("frames", e)
            return
        if self.frames_remote:  # captured on another host: its monotonic clock means nothing here
            h["t_mono"] = remote.local_mono(h)
        seq = h["seq"]
        if self.last_seq and seq > self.last_seq + 1:
            self.dropped += seq - self.last_seq - 1
        self.last_seq = seq
        frame = np.frombuffer(payload.buffer, np.uint8).reshape(h["shape"])
        faces, detect_ms, classify_ms = self.pipeline.process(frame)
        t_done = time.monotonic()
        result = {"seq": seq, "t_capture": h["t_mono"], "t_done": t_done, "model": self.classifier.name,
                  "detect_ms": round(detect_ms, 3), "classify_ms": round(classify_ms, 3),
                  "queue_ms": round((t_start - h["t_mono"]) * 1e3, 3), "faces": [f.as_dict() for f in faces],
                  "frame_shape": h["shape"]}
        parts = protocol.encode(b"result", result)
        self.results.send_multipart(parts)
        if self.link is not None and self.link.active():
            self.link.send(parts)
        self.processed += 1
        self.faces += len(faces)
        self.rate.tick()
        for _ in faces:
            self.face_rate.tick()
        self.last_ms = {"detect_ms": detect_ms, "classify_ms": classify_ms}
        self._maybe_reply_swapped(True)

    def teardown(self) -> None:
        for s in (self.frames, self.results, self.control):
            s.close()
        if self.link is not None:
            self.link.close()

    def stats(self) -> dict:
        return {"fps": self.rate.rate(), "processed": self.processed, "dropped": self.dropped, "faces": self.faces,
                "faces_per_s": self.face_rate.rate(), "model": self.classifier.name, "loading": self.loading is not None,
                **{k: round(v, 3) for k, v in self.last_ms.items()}}
