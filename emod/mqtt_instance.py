"""One emod among others on a broker: a client id per instance, device id clashes, and retained topics left behind.

* :func:`client_id`: ``emod-<device_id>-<8 hex>``, the hex from the machine (``/etc/machine-id``,
  the MAC address) and the runtime directory. Two cameras on one host (two runtime directories)
  or two Pis left at one hostname get different ids, so the broker never closes one for the
  other ("already connected, closing old connection"); the same instance restarted gets the
  same id, so its old session is taken over at once instead of leaving a last will behind.
* :class:`ClashDetector`: every instance sends a small non-retained claim
  (``<prefix>/<device_id>/instance``: client id, host, pid, a per-process nonce) on connect and
  every few seconds, and listens to the same topic. A claim with another nonce means a second
  emod publishes under this device id: Home Assistant would mix the two. The stage names it in
  its log and in ``problems`` for as long as claims keep coming (``CLASH_HOLD_S``).
* :class:`PublishedRecord`: ``STATE_DIR/mqtt-retained.json`` lists the retained topics the last
  run published (discovery configs and states). On connect, every listed topic this run does not
  publish (the device id was renamed, ``discovery`` turned off, a prefix changed) gets an empty
  retained payload, which deletes it from the broker, so Home Assistant drops the old device.
  :func:`forget` does the same for any device id from the command line (``emod mqtt-forget``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from emod import protocol

CLASH_HOLD_S = 15.0  # a clash is current while another instance's claim came within this many seconds
RECORD_NAME = "mqtt-retained.json"


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return socket.gethostname()


def client_id(device_id: str, runtime_dir: str | os.PathLike) -> str:
    """``emod-<device_id>-<8 hex>``: unique per instance (machine id, MAC address, runtime directory), stable across restarts."""
    key = f"{_machine_id()}\0{uuid.getnode():012x}\0{os.path.realpath(runtime_dir)}"
    return f"emod-{device_id}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


class ClashDetector:
    """Claims of the instances publishing under one device id; :attr:`clash` names another one while it is current.

    ``claim()`` is this instance's payload (JSON text); ``on_claim(payload, retained, now)`` takes a
    message from the claim topic and returns the other instance's description when it begins a
    clash (so the caller logs it once), else None.
    """

    def __init__(self, device_id: str, client: str, runtime_dir: str | os.PathLike):
        self.device_id = device_id
        self.me = {"client_id": client, "host": socket.gethostname(), "pid": os.getpid(),
                   "runtime_dir": str(runtime_dir), "nonce": secrets.token_hex(8)}
        self.other: dict[str, Any] | None = None
        self.last_t = -1e9
        self.claims_seen = 0

    def claim(self, leaving: bool = False) -> str:
        """This instance's claim; ``leaving``: the last one, sent on a clean stop (the other instance then owns the id)."""
        return json.dumps({**self.me, "leaving": True} if leaving else self.me, separators=(",", ":"))

    def on_claim(self, payload: bytes, retained: bool, now: float | None = None) -> str | None:
        if retained:  # only live claims count: nobody should retain one, and an old one proves nothing
            return None
        try:
            other = json.loads(payload)
            nonce = other["nonce"]
        except (ValueError, TypeError, KeyError):
            return None
        if nonce == self.me["nonce"]:
            return None
        now = time.monotonic() if now is None else now
        if other.get("leaving"):  # the other instance stopped cleanly: the clash is over
            if self.other is not None and self.other.get("nonce") == nonce:
                self.other = None
            return None
        began = not self.current(now)
        self.other, self.last_t = other, now
        self.claims_seen += 1
        return self.describe() if began else None

    def current(self, now: float | None = None) -> bool:
        return self.other is not None and (time.monotonic() if now is None else now) - self.last_t <= CLASH_HOLD_S

    def describe(self) -> str:
        o = self.other or {}
        return (f"device id {self.device_id!r} is used by another emod too (its client id {o.get('client_id')}, host {o.get('host')}, "
                f"pid {o.get('pid')}): Home Assistant mixes the two; give each instance its own [mqtt] device_id")

    @property
    def clash(self) -> str | None:
        """The clash, in words, while it is current; else None."""
        return self.describe() if self.current() else None


def retained_topics(topics, discovery: bool, discovery_topics: Iterable[str]) -> list[str]:
    """Every retained topic one run publishes: its states, and its discovery configs when discovery is on."""
    states = [topics.availability, *(topics.state(s) for s in (protocol.MQTT_DOMINANT, protocol.MQTT_FACES,
                                                                protocol.MQTT_FPS, protocol.MQTT_WATTS))]
    return states + (sorted(discovery_topics) if discovery else [])


class PublishedRecord:
    """``STATE_DIR/mqtt-retained.json``: which device id and retained topics the previous run left on which broker."""

    def __init__(self, state_dir: str | os.PathLike):
        self.path = Path(state_dir) / RECORD_NAME

    def load(self) -> dict[str, Any] | None:
        """The previous record, or None (none yet, or unreadable: a stale cleanup is not worth a failure)."""
        try:
            rec = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or not isinstance(rec.get("topics"), list):
            return None
        return rec

    def stale(self, broker: str, current: list[str]) -> tuple[str | None, list[str]]:
        """(previous device id, its retained topics on this broker that this run does not publish)."""
        rec = self.load()
        if rec is None or rec.get("broker") != broker:
            return None, []
        keep = set(current)
        return rec.get("device_id"), [t for t in rec["topics"] if isinstance(t, str) and t not in keep]

    def save(self, broker: str, device_id: str, topics: list[str]) -> None:
        """Write the record atomically (a crash leaves the old one or the new one; a full disk, no temporary file):
        :func:`emod.launcher.statefiles.write_atomic`. OSError on failure."""
        from emod.launcher.statefiles import write_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"broker": broker, "device_id": device_id, "topics": topics, "time": time.time()},
                                           indent=1))


def clear(publish: Callable[..., Any], topics: Iterable[str]) -> int:
    """Delete retained topics: an empty retained payload on each (QoS 1); returns how many."""
    n = 0
    for topic in topics:
        publish(topic, b"", qos=1, retain=True)
        n += 1
    return n


def retained_of(m, device_id: str, wait_s: float = 1.5, client=None) -> list[str]:
    """The retained topics a broker holds for DEVICE_ID: discovery configs (any component) and states.

    ``m`` is an ``[mqtt]`` config section; ``client`` a connected paho client (the caller's). Waits
    ``wait_s`` after the subscription is acknowledged for the retained messages to arrive.
    """
    import threading

    found: set[str] = set()
    acked = threading.Event()
    last = [time.monotonic()]

    def on_message(c, userdata, msg):
        if msg.retain and msg.payload:  # a running emod's live messages are not retained: they do not count
            last[0] = time.monotonic()
            found.add(msg.topic)

    client.on_message = on_message
    client.on_subscribe = lambda *a: acked.set()
    client.subscribe([(f"{m.discovery_prefix}/+/{device_id}/+/config", 0), (f"{m.topic_prefix}/{device_id}/#", 0)])
    acked.wait(5.0)
    start = time.monotonic()
    while time.monotonic() - start < 10 * wait_s and (time.monotonic() - start < wait_s or time.monotonic() - last[0] < 0.5):
        time.sleep(0.1)  # at least wait_s, then until no retained message came for 0.5 s
    return sorted(found)
