"""The wire protocol: topics, endpoint names, message headers, the control envelope, error codes.

Every message is multipart ``[topic, header]`` or ``[topic, header, payload]``.
The header is UTF-8 JSON with ``"v": 1``; payloads are raw bytes (pixels, JPEG).
Nothing is ever pickled. :func:`decode` rejects anything malformed with
:class:`ProtocolError`; receivers count the error and drop the message.

This module imports nothing heavy (no numpy): the launcher and the CLIs use it too.

The ``emotions`` stream (endpoint :data:`EMOTIONS`, topic ``b"emotions"``, no payload) is the
public output for other programs: the display stage publishes one message per processed frame,
whether or not anyone subscribes (a PUB with no subscriber drops it at once). Header fields:

* ``seq`` (int): the frame's capture sequence number;
* ``time`` (str): capture wall-clock time, ISO 8601 UTC with milliseconds (``2026-01-01T12:00:00.123Z``);
* ``t_wall`` (float): the same instant in epoch seconds;
* ``model`` (str): the model that classified the frame;
* ``faces`` (list): one object per face seen in this frame, by ``track``:

  - ``track`` (int): the stable track id (1, 2, ...; restarts at 1 with the display stage);
  - ``box`` ([x, y, w, h] ints): frame pixels, top-left corner and size;
  - ``label`` (str): the smoothed label, one of :data:`emod.labels.LABELS`;
  - ``confidence`` (float, 0..1): the smoothed probability of ``label`` (vote smoother: its vote share);
  - ``raw_label`` (str): this frame's unsmoothed top label;
  - ``probs`` ({label: float}): the smoothed probabilities over all 7 labels, summing to 1 (within 1e-3);
  - ``age_s`` (float): seconds since the track started;
  - ``changed`` (bool): true on the frame where the smoothed label changed (not on the track's first frame);
  - ``started`` (bool): true on the track's first frame;

* ``ended`` (list): tracks that ended since the previous message (unseen for ``display.track_max_age``):
  ``track``, ``label`` (the label with the largest time share), ``frames``, ``start``/``end`` (epoch s),
  ``duration_s`` and ``shares`` ({label: fraction of the track's face-time}, summing to 1).

All numbers are finite (strict JSON: no NaN). :func:`encode_emotions` builds the parts,
:func:`decode` validates them (a malformed message raises :class:`ProtocolError`; receivers count
and drop it). :class:`emod.events.Subscriber` is the client, with reconnect.
"""

from __future__ import annotations

import json
import math
from typing import Any

from emod.labels import LABELS

VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024

# Endpoint names: one ipc socket file each under the runtime directory.
FRAMES = "frames"  # XPUB capture -> SUB infer (topics frame + end; upstream: infer-acks, acks:SEQ), display (frame)
# Topics never sent, subscribed to by inference on FRAMES as an upstream channel (in order with its other
# subscriptions, so it has no slow-joiner loss): ACKS_TOPIC says "I acknowledge frames", then ``acks:SEQ`` (the
# previous one unsubscribed) that frame SEQ is done. A finite source hands its next frame over only then.
# ACKS_TOPIC is subscribed last and sorts after ``end`` and ``frame`` (a reconnecting SUB resends its topics in
# order): once capture sees it, inference is sure to receive frames.
ACKS_TOPIC = b"infer-acks"


def ack_topic(seq: int) -> bytes:
    """The subscription by which inference says frame SEQ is done."""
    return b"acks:%d" % seq


def acked_seq(topic: bytes) -> int | None:
    """SEQ of an :func:`ack_topic` subscription, else None."""
    if topic.startswith(b"acks:") and topic[5:].isdigit():
        return int(topic[5:])
    return None
RESULTS = "results"  # PUB infer -> SUB display, launcher
PREVIEW = "preview"  # PUB display -> SUB emod-view (any number)
POWER = "power"  # PUB power -> SUB display, launcher
TELEMETRY = "telemetry"  # PUSH every stage -> PULL launcher
CONTROL = "control"  # ROUTER launcher <- DEALER emod-ctl / emod-stats
INFER_CONTROL = "infer-control"  # ROUTER infer <- DEALER launcher
EMOTIONS = "emotions"  # PUB display -> SUB emod events, emod-view --http, the mqtt stage (any number)
ENDPOINTS = (FRAMES, RESULTS, PREVIEW, POWER, TELEMETRY, CONTROL, INFER_CONTROL, EMOTIONS)

STAGES = ("capture", "infer", "display", "power")

# MQTT topics (the [mqtt] stage), each under <topic_prefix>/<device_id>/; payloads in emod/mqtt.py.
MQTT_AVAILABILITY = "availability"  # "online" / "offline" (last will), retained
MQTT_DOMINANT = "dominant_emotion"  # a label, or "none" without faces; retained, on change
MQTT_FACES = "faces"  # face count of the newest frame; retained, on change
MQTT_FPS = "fps"  # processed frames per second; retained, every few seconds
MQTT_WATTS = "watts"  # power draw, or "None" without a reading (Home Assistant: unknown); retained, every few seconds
MQTT_INSTANCE = "instance"  # JSON claim of the instance (client id, host, pid, nonce); not retained: spots a device id clash
MQTT_EVENTS = "events"  # JSON track events (emod.events.TrackEvents): start, seen, change, end
OPTIONAL_STAGES = ("mqtt",)  # started only when their config section enables them
# The core: capture -> infer -> display. Only these count for the supervisor's give-up rule and the watchdog;
# every other part (the power and mqtt stages, Prometheus, the history, the saved model choice, the web page) is
# optional: its failure is reported (healthy, problems, STATUS=, the log) and retried, never fatal.
CORE_STAGES = ("capture", "infer", "display")

# Set to "1" by the launcher in its stages' environment when it runs under systemd (NOTIFY_SOCKET),
# which it strips from them: a stage then knows it is part of a service (no demo-clip fallback).
SERVICE_ENV = "EMOD_UNDER_SERVICE"
#: One emod per camera: the instance NAME (``emod run -i NAME``, ``emod@NAME.service``), set for the launcher and its
#: stages (emod.mqtt's default device id HOSTNAME-NAME); emod.bus maps the name itself to the directories.
INSTANCE_ENV = "EMOD_INSTANCE"

# Exit statuses of every emod command: the one table (docs/usage.md "Exit codes" is generated from it).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_UNHEALTHY = 5
EXIT_ALREADY_RUNNING = 6
EXIT_CONFIG = 78  # EX_CONFIG: the unit's RestartPreventExitStatus
EXIT_TABLE: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success; `emod-ctl status`: emod is healthy: its source delivers frames and every enabled part works"),
    (EXIT_FAILURE, "an unexpected failure; `emod run` gave up after too many restarts of one core stage (capture, infer, "
                   "display; systemd restarts it)"),
    (EXIT_USAGE, "a bad request or usage: unknown command or option, an unknown or broken model asked for "
                 "(`emod run --model`, `emod-ctl set-model`), an input `emod analyze` could not read"),
    (EXIT_UNREACHABLE, "emod is not reachable: no daemon on the runtime directory (or no such directory), or it does not answer"),
    (EXIT_TIMEOUT, "emod answered too late (e.g. `set-model` did not finish in time)"),
    (EXIT_UNHEALTHY, "`emod-ctl status`: emod answers but is not healthy: a stage is down, the source is failing, or an "
                     "optional part fails (MQTT disconnected, Prometheus port taken, history off, model choice not saved); "
                     "each is named on a `problem:` line"),
    (EXIT_ALREADY_RUNNING, "`emod run`: another emod already runs on this runtime directory or this state directory "
                           "(its pid is named)"),
    (EXIT_CONFIG, "a bad configuration: a config or `EMOD_*` error (a config's unknown model included), a `--source` "
                  "file or folder that does not exist, a runtime directory no emod can serve on (socket paths over 107 "
                  "characters, a symlink, owned by someone else: every command); `emod validate` also: an unusable MQTT "
                  "password or CA file, a Prometheus address that cannot be bound; systemd does not restart it"),
)


def exit_table_markdown() -> str:
    """The exit-code table of docs/usage.md, from :data:`EXIT_TABLE`."""
    return "\n".join(["| exit | meaning |", "|---|---|", *(f"| {code} | {text} |" for code, text in EXIT_TABLE)])


# Error codes of the control envelope; CLIs exit with EXIT_CODES[code].
E_UNKNOWN_COMMAND = "unknown_command"
E_BAD_REQUEST = "bad_request"
E_UNKNOWN_MODEL = "unknown_model"
E_MODEL_FAILED = "model_failed"
E_BUSY = "busy"
E_TIMEOUT = "timeout"
E_INTERNAL = "internal"
EXIT_CODES = {E_UNKNOWN_COMMAND: EXIT_USAGE, E_BAD_REQUEST: EXIT_USAGE, E_UNKNOWN_MODEL: EXIT_USAGE, E_MODEL_FAILED: EXIT_USAGE,
              E_BUSY: EXIT_USAGE, E_TIMEOUT: EXIT_TIMEOUT, E_INTERNAL: EXIT_FAILURE}


class ProtocolError(ValueError):
    """A message that does not follow this module's schema."""


# Header schemas: field -> allowed types. Extra fields are allowed (forward compatible).
_NUM = (int, float)
SCHEMAS: dict[bytes, dict[str, tuple[type, ...]]] = {
    b"frame": {"seq": (int,), "t_mono": _NUM, "t_wall": _NUM, "shape": (list,), "dtype": (str,), "source": (str,)},
    # a finite source ended after frame ``seq`` (repeated while it stays ended: frames lost at the end are counted)
    b"end": {"seq": (int,), "source": (str,)},
    b"result": {"seq": (int,), "t_capture": _NUM, "t_done": _NUM, "model": (str,), "detect_ms": _NUM,
                "classify_ms": _NUM, "faces": (list,), "frame_shape": (list,)},
    b"preview": {"seq": (int,), "t_capture": _NUM, "shape": (list,), "format": (str,)},
    b"power": {"t_mono": _NUM, "watts": (int, float, type(None)), "backend": (str,)},
    b"telemetry": {"stage": (str,), "pid": (int,), "t_mono": _NUM, "stats": (dict,)},
    b"request": {"id": (str,), "cmd": (str,), "args": (dict,)},
    b"reply": {"id": (str,), "ok": (bool,)},
    b"emotions": {"seq": (int,), "time": (str,), "t_wall": _NUM, "model": (str,), "faces": (list,), "ended": (list,)},
}
PAYLOAD_TOPICS = {b"frame", b"preview"}
PREVIEW_TOPIC = b"preview"  # what viewers subscribe to on the preview socket
FACE_FIELDS = {"box": (list,), "score": _NUM, "probs": (list,), "label": (str,)}
EMOTION_FACE_FIELDS = {"track": (int,), "box": (list,), "label": (str,), "confidence": _NUM, "raw_label": (str,),
                       "probs": (dict,), "age_s": _NUM, "changed": (bool,), "started": (bool,)}
ENDED_FIELDS = {"track": (int,), "label": (str,), "frames": (int,), "start": _NUM, "end": _NUM, "duration_s": _NUM,
                "shares": (dict,)}
PROBS_TOLERANCE = 1e-3


def encode(topic: bytes, header: dict[str, Any], payload: bytes | memoryview | None = None) -> list:
    """Build the parts of one message (validated, so a bug fails at the sender)."""
    h = dict(header)
    h["v"] = VERSION
    _check(topic, h)
    if topic == b"emotions":
        _check_emotions(h)
    try:
        parts: list = [topic, json.dumps(h, separators=(",", ":"), allow_nan=False).encode()]
    except ValueError as e:
        raise ProtocolError(f"{topic.decode()} header is not strict JSON: {e}") from None
    if topic in PAYLOAD_TOPICS:
        if payload is None:
            raise ProtocolError(f"{topic.decode()} needs a payload")
        parts.append(payload)
    return parts


def decode(parts: list, expect: bytes | None = None) -> tuple[bytes, dict[str, Any], Any]:
    """Parse and validate one received message. Returns ``(topic, header, payload or None)``."""
    if not isinstance(parts, list) or len(parts) not in (2, 3):
        raise ProtocolError(f"expected 2 or 3 parts, got {len(parts) if isinstance(parts, list) else type(parts).__name__}")
    topic = bytes(parts[0])
    if topic not in SCHEMAS:
        raise ProtocolError(f"unknown topic {topic[:32]!r}")
    if expect is not None and topic != expect:
        raise ProtocolError(f"expected topic {expect!r}, got {topic!r}")
    raw = bytes(parts[1])
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"header is not JSON: {str(e)[:80]}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    if header.get("v") != VERSION:
        raise ProtocolError(f"unsupported schema version {header.get('v')!r}")
    _check(topic, header)
    payload = None
    if topic in PAYLOAD_TOPICS:
        if len(parts) != 3:
            raise ProtocolError(f"{topic.decode()} needs a payload part")
        payload = parts[2]
        n = len(payload.buffer) if hasattr(payload, "buffer") else len(payload)
        if n > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"payload of {n} bytes exceeds {MAX_PAYLOAD_BYTES}")
    elif len(parts) != 2:
        raise ProtocolError(f"{topic.decode()} takes no payload")
    if topic == b"frame":
        _check_frame(header, payload)
    elif topic == b"result":
        _check_faces(header["faces"])
    elif topic == b"emotions":
        _check_emotions(header)
    return topic, header, payload


def _check(topic: bytes, header: dict) -> None:
    schema = SCHEMAS.get(topic)
    if schema is None:
        raise ProtocolError(f"unknown topic {topic!r}")
    for field, types in schema.items():
        if field not in header:
            raise ProtocolError(f"{topic.decode()} header lacks {field!r}")
        value = header[field]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ProtocolError(f"{topic.decode()} header field {field!r} has type {type(value).__name__}")


def _check_frame(header: dict, payload: Any) -> None:
    shape = header["shape"]
    if header["dtype"] != "uint8" or len(shape) not in (2, 3) or not all(isinstance(d, int) and 0 < d <= 8192 for d in shape):
        raise ProtocolError(f"bad frame shape/dtype {shape!r} {header['dtype']!r}")
    if len(shape) == 3 and shape[2] not in (1, 3):
        raise ProtocolError(f"bad channel count {shape[2]}")
    want = 1
    for d in shape:
        want *= d
    n = len(payload.buffer) if hasattr(payload, "buffer") else len(payload)
    if n != want:
        raise ProtocolError(f"frame payload has {n} bytes, shape {shape} needs {want}")


def _check_faces(faces: list) -> None:
    for f in faces:
        if not isinstance(f, dict):
            raise ProtocolError("face is not an object")
        for field, types in FACE_FIELDS.items():
            if not isinstance(f.get(field), types):
                raise ProtocolError(f"face field {field!r} missing or mistyped")
        if len(f["box"]) != 4 or len(f["probs"]) != len(LABELS) or f["label"] not in LABELS:
            raise ProtocolError("face box/probs/label malformed")
        if not all(_finite(v) for v in (*f["box"], *f["probs"])):
            raise ProtocolError("face box/probs must be finite numbers")


def _check_fields(what: str, obj: Any, fields: dict) -> None:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} is not an object")
    for field, types in fields.items():
        value = obj.get(field)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ProtocolError(f"{what} field {field!r} missing or mistyped")
        if types is _NUM and not math.isfinite(value):
            raise ProtocolError(f"{what} field {field!r} is not finite")


def _check_distribution(what: str, d: dict) -> None:
    if set(d) != set(LABELS) or not all(_finite(v) and 0.0 <= v <= 1.0 for v in d.values()):
        raise ProtocolError(f"{what} must map each of the {len(LABELS)} labels to a number in 0..1")
    if abs(sum(d.values()) - 1.0) > PROBS_TOLERANCE:
        raise ProtocolError(f"{what} sum to {sum(d.values()):.4f}, not 1")


def _check_emotions(h: dict) -> None:
    if not h["time"] or not _finite(h["t_wall"]):
        raise ProtocolError("emotions time/t_wall malformed")
    for f in h["faces"]:
        _check_fields("emotions face", f, EMOTION_FACE_FIELDS)
        if len(f["box"]) != 4 or not all(_finite(v) for v in f["box"]):
            raise ProtocolError("emotions face box must be 4 finite numbers")
        if f["label"] not in LABELS or f["raw_label"] not in LABELS:
            raise ProtocolError("emotions face label is not one of the labels")
        if not 0.0 <= f["confidence"] <= 1.0 or f["age_s"] < 0:
            raise ProtocolError("emotions face confidence/age_s out of range")
        _check_distribution("emotions face probs", f["probs"])
    for e in h["ended"]:
        _check_fields("emotions ended track", e, ENDED_FIELDS)
        if e["label"] not in LABELS or e["duration_s"] < 0 or e["frames"] < 1:
            raise ProtocolError("emotions ended track label/duration_s/frames malformed")
        _check_distribution("emotions ended track shares", e["shares"])


def encode_emotions(header: dict[str, Any]) -> list:
    """The parts of one ``emotions`` message (see the module docstring for the fields)."""
    return encode(b"emotions", header)


def decode_emotions(parts: list) -> dict[str, Any]:
    """One validated ``emotions`` header, or :class:`ProtocolError`."""
    return decode(parts, expect=b"emotions")[1]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def request(id: str, cmd: str, args: dict | None = None) -> dict:
    return {"id": id, "cmd": cmd, "args": args or {}}


def reply_ok(id: str, result: Any) -> dict:
    return {"id": id, "ok": True, "result": result}


def reply_error(id: str, code: str, message: str) -> dict:
    return {"id": id, "ok": False, "error": {"code": code, "message": message}}


if __name__ == "__main__":  # python -m emod.protocol: the exit-code table of docs/usage.md
    try:
        print(exit_table_markdown(), flush=True)
    except BrokenPipeError:
        from emod.cli.pipe import reader_gone

        reader_gone()
