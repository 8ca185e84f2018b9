"""What the mqtt stage publishes: topics, Home Assistant discovery configs, the dominant emotion.

Topics live under ``<topic_prefix>/<device_id>/`` (suffixes in :mod:`emod.protocol`, ``MQTT_*``).
Discovery configs go to ``<discovery_prefix>/sensor/<device_id>/<sensor>/config`` (retained), one per
sensor of :data:`SENSORS`, all naming the same device, so Home Assistant shows emod as one device
with sensors for dominant emotion, face count, fps and watts. No network here: the stage
(:mod:`emod.stages.mqtt`) does the sending with paho-mqtt.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import time
from collections import Counter, deque
from typing import Any

from emod import protocol
from emod.labels import LABELS

NO_FACE = "none"  # the dominant emotion while no face was seen in the window

# sensor -> (state topic suffix, Home Assistant config fields)
SENSORS: dict[str, tuple[str, dict[str, Any]]] = {
    "dominant_emotion": (protocol.MQTT_DOMINANT, {"name": "Dominant emotion", "icon": "mdi:emoticon-outline",
                                                  "device_class": "enum", "options": [*LABELS, NO_FACE]}),
    "faces": (protocol.MQTT_FACES, {"name": "Faces", "icon": "mdi:account-multiple", "state_class": "measurement"}),
    "fps": (protocol.MQTT_FPS, {"name": "Processed fps", "icon": "mdi:speedometer", "unit_of_measurement": "fps",
                                "state_class": "measurement", "entity_category": "diagnostic"}),
    "watts": (protocol.MQTT_WATTS, {"name": "Power", "device_class": "power", "unit_of_measurement": "W",
                                    "state_class": "measurement", "entity_category": "diagnostic"}),
}


def default_device_id() -> str:
    """The hostname, with anything but letters, digits, _ and - replaced by _; for an instance (``emod run -i NAME``,
    ``emod@NAME.service``) HOSTNAME-NAME, so Home Assistant shows one device per camera."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "emod"
    name = os.environ.get(protocol.INSTANCE_ENV)
    return f"{host}-{name}" if name else host


class CredentialError(ValueError):
    """The broker password or CA file cannot be used; the message is one line naming the key and the file."""


def read_password(path: str) -> str:
    """The first line of the ``mqtt.password_file`` (the broker password); CredentialError if missing, unreadable or empty."""
    if not os.path.exists(path):
        raise CredentialError(f"mqtt.password_file: no such file {path!r}")
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().rstrip("\r\n")
    except PermissionError:
        try:
            who = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            who = f"uid {os.geteuid()}"
        raise CredentialError(f"mqtt.password_file: {path!r} is not readable by user {who} (fix: chgrp emod {path}; "
                              f"chmod 0640 {path})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CredentialError(f"mqtt.password_file: cannot read {path!r}: {getattr(e, 'strerror', None) or e}") from None
    if not first:
        raise CredentialError(f"mqtt.password_file: {path!r} is empty (the password is its first line)")
    return first


def check_ca_file(path: str) -> None:
    """CredentialError unless ``mqtt.ca_file`` exists and is readable (it is loaded as PEM when connecting)."""
    if not os.path.exists(path):
        raise CredentialError(f"mqtt.ca_file: no such file {path!r}")
    if not os.access(path, os.R_OK):
        raise CredentialError(f"mqtt.ca_file: {path!r} is not readable by this user")


class Topics:
    """The topics of one device: ``topics.state(protocol.MQTT_FACES)`` -> ``emod/pi/faces``."""

    def __init__(self, prefix: str, device_id: str, discovery_prefix: str):
        self.device_id = device_id
        self.base = f"{prefix}/{device_id}"
        self.discovery_prefix = discovery_prefix

    def state(self, suffix: str) -> str:
        return f"{self.base}/{suffix}"

    @property
    def availability(self) -> str:
        return self.state(protocol.MQTT_AVAILABILITY)

    @property
    def events(self) -> str:
        return self.state(protocol.MQTT_EVENTS)

    def discovery(self, sensor: str) -> str:
        return f"{self.discovery_prefix}/sensor/{self.device_id}/{sensor}/config"


def discovery_configs(topics: Topics, version: str) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for every sensor of :data:`SENSORS`."""
    device = {"identifiers": [f"emod_{topics.device_id}"], "name": f"emod {topics.device_id}", "manufacturer": "emod",
              "model": "emod emotion sensor", "sw_version": version}
    out = {}
    for sensor, (suffix, fields) in SENSORS.items():
        out[topics.discovery(sensor)] = {
            **fields, "unique_id": f"emod_{topics.device_id}_{sensor}", "state_topic": topics.state(suffix),
            "availability_topic": topics.availability, "payload_available": "online", "payload_not_available": "offline",
            "device": device}
    return out


class DominantWindow:
    """The label with the most face-time over the last ``window`` seconds of messages.

    Ages on ``clock`` (default ``time.monotonic``; injectable for tests), never on the messages'
    wall-clock ``t_wall``: NTP stepping the clock (a Pi has no RTC) neither freezes nor empties
    the window. Each message adds, per face, the clock time since the previous message (capped
    at 1 s) to its smoothed label. :meth:`label` is :data:`NO_FACE` when the window holds no face.
    """

    def __init__(self, window: float = 5.0, clock=time.monotonic):
        self.window, self.clock = window, clock
        self.items: deque[tuple[float, str, float]] = deque()  # (clock time, label, seconds)
        self.last_t: float | None = None

    def _evict(self, now: float) -> None:
        while self.items and self.items[0][0] < now - self.window:
            self.items.popleft()

    def add(self, message: dict[str, Any]) -> None:
        """One ``emotions`` message (only its ``faces[].label`` are read)."""
        t = self.clock()
        dt = 0.0 if self.last_t is None else min(max(t - self.last_t, 0.0), 1.0)
        self.last_t = t
        for f in message["faces"]:
            self.items.append((t, f["label"], dt))
        self._evict(t)

    def label(self) -> str:
        self._evict(self.clock())
        time_per_label: Counter[str] = Counter()
        for _, label, dt in self.items:
            time_per_label[label] += dt
        if not self.items:
            return NO_FACE
        if not any(time_per_label.values()):  # only first frames so far: count faces
            time_per_label = Counter(label for _, label, _ in self.items)
        return max(time_per_label, key=time_per_label.get)


class Debounced:
    """The latest value of a state topic, published on change but at most every ``min_interval`` seconds."""

    def __init__(self, min_interval: float = 0.5):
        self.min_interval = min_interval
        self.value: str | None = None
        self.sent: str | None = None
        self.sent_t = -1e9

    def set(self, value: str) -> None:
        self.value = value

    def due(self, now: float | None = None) -> str | None:
        """The value to publish now, or None (unchanged, or changed too recently)."""
        now = time.monotonic() if now is None else now
        if self.value is None or self.value == self.sent or now - self.sent_t < self.min_interval:
            return None
        return self.value

    def mark_sent(self, now: float | None = None) -> None:
        self.sent, self.sent_t = self.value, time.monotonic() if now is None else now

    def forget(self) -> None:
        """After a reconnect: publish the current value again."""
        self.sent = None
