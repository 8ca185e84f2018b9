"""Client side of the ``emotions`` stream: a reconnecting subscriber and per-track events.

:class:`Subscriber` yields validated ``emotions`` headers (schema in :mod:`emod.protocol`) from
a local daemon (ipc under the runtime directory) or a remote one (TCP + CURVE, as
``emod-view --connect``). Malformed messages are counted in ``rejected`` and dropped. When
nothing arrives for ``silence_s`` (daemon stopped or restarting) the socket is reopened, so a
long-running client follows a daemon restart. ``emod events``, ``emod-view --http`` and the
mqtt stage use it.

:class:`TrackEvents` turns messages into the events ``emod events --changes`` prints and the
mqtt stage publishes: ``start``, ``change`` (with ``from``) and ``end`` (with ``duration_s``
and per-label ``shares``), one JSON-able dict each.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import zmq

from emod import bus, protocol

TOPIC = b"emotions"


class Subscriber:
    """SUB to the ``emotions`` stream. ``connect`` (tcp://HOST:PORT) with ``server_key`` and
    ``client_key`` selects a remote daemon; otherwise the local one under ``rundir``.

    Raises ValueError for a bad remote endpoint or unreadable keys (at construction).
    """

    def __init__(self, rundir: str | Path | None = None, connect: str | None = None, server_key: str | None = None,
                 client_key: str | None = None, silence_s: float = 5.0, hwm: int = 1000, ctx: zmq.Context | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.rundir = None if connect else bus.runtime_dir(rundir)
        self.connect, self.server_key, self.client_key = connect, server_key, client_key
        self.silence_s, self.hwm = silence_s, hwm
        self.received = self.rejected = self.reconnects = 0
        self.last_t: float | None = None  # monotonic time of the latest valid message
        self.sock: zmq.Socket | None = None
        self._open()

    @property
    def endpoint(self) -> str:
        return self.connect or bus.endpoint(self.rundir, protocol.EMOTIONS)

    def _open(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.reconnects += 1
        if self.connect:
            from emod import remote

            self.sock = remote.connect_subscriber(self.ctx, self.connect, self.server_key, self.client_key, self.hwm, TOPIC)
        else:
            self.sock = bus.connect(self.ctx, zmq.SUB, self.rundir, protocol.EMOTIONS, hwm=self.hwm, topic=TOPIC)
        self._opened = time.monotonic()

    def available(self) -> bool:
        """Whether a daemon looks reachable: the local socket file exists (always true for remote)."""
        return bool(self.connect) or bus.socket_path(self.rundir, protocol.EMOTIONS).exists()

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next valid message, waiting up to ``timeout`` s (None: forever); None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            quiet_since = self.last_t if self.last_t is not None and self.last_t > self._opened else self._opened
            if now - quiet_since > self.silence_s:
                self._open()  # the daemon went away or restarted: connect afresh
                continue
            wait = min(0.5, quiet_since + self.silence_s - now)
            if deadline is not None:
                wait = min(wait, deadline - now)
            if not self.sock.poll(max(1, int(wait * 1000))):
                continue
            parts = self.sock.recv_multipart()
            try:
                message = protocol.decode_emotions(parts)
            except protocol.ProtocolError:
                self.rejected += 1
                continue
            self.received += 1
            self.last_t = time.monotonic()
            return message

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.recv()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class TrackEvents:
    """Per-track start / seen / change / end events from consecutive ``emotions`` messages.

    ``start`` only when the message says the track began in that frame (its ``started``
    flag). A client that joins late, or reconnects, first meets tracks already running: that
    is a ``seen`` event, whose ``age_s`` says how old the track is, never a ``start``. A track
    id met again with ``started`` true (the daemon restarted and reuses ids) is a new track:
    a ``start``, not a ``change``. ``end`` events come from the message's ``ended`` list, so
    their duration and shares cover the whole track.
    """

    def __init__(self):
        self.labels: dict[int, str] = {}

    def feed(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        base = {"time": message["time"], "t_wall": message["t_wall"], "seq": message["seq"]}
        for f in message["faces"]:
            face = {"track": f["track"], "label": f["label"], "confidence": f["confidence"], "box": f["box"], "age_s": f["age_s"]}
            before = self.labels.get(f["track"])
            if f.get("started"):
                out.append({"event": "start", **base, **face})
            elif before is None:
                out.append({"event": "seen", **base, **face})
            elif before != f["label"]:
                out.append({"event": "change", **base, **face, "from": before})
            self.labels[f["track"]] = f["label"]
        for e in message["ended"]:
            self.labels.pop(e["track"], None)
            out.append({"event": "end", **base, **e})
        return out


def describe(message: dict[str, Any]) -> str:
    """One readable line for a message: time, then ``#track label confidence (raw ...)`` per face."""
    clock = message["time"][11:23]
    if not message["faces"]:
        return f"{clock}  no faces"
    faces = "  ".join(f"#{f['track']} {f['label']} {f['confidence']:.2f}" + (f" (raw {f['raw_label']})" if f["raw_label"] != f["label"] else "")
                      for f in message["faces"])
    return f"{clock}  {faces}"


def describe_event(event: dict[str, Any]) -> str:
    """One readable line for a start / change / end event."""
    clock = event["time"][11:23]
    t = event["track"]
    if event["event"] == "start":
        return f"{clock}  track {t} started: {event['label']} {event['confidence']:.2f}"
    if event["event"] == "seen":  # a late subscriber's first sight of a running track: not its start
        return f"{clock}  track {t} seen (age {event['age_s']:.0f} s): {event['label']} {event['confidence']:.2f}"
    if event["event"] == "change":
        return f"{clock}  track {t} changed: {event['from']} -> {event['label']} {event['confidence']:.2f}"
    shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(event["shares"].items(), key=lambda kv: -kv[1]) if v >= 0.005)
    return f"{clock}  track {t} ended after {event['duration_s']:.1f} s ({event['frames']} frames): {shares}"
