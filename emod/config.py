"""Typed configuration: defaults, one TOML file, ``EMOD_*`` environment, command line.

Precedence: command line > environment (``EMOD_<SECTION>_<KEY>``) > file > defaults.
Unknown sections or keys and wrongly typed values are rejected by name
(:class:`ConfigError`); ``emod validate FILE`` exits 78 on error.
Every option is documented here, in the ``help`` metadata, and nowhere else:
:func:`reference` renders it for docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HAAR_CASCADES = ("default", "alt", "alt2", "alt_tree")  # OpenCV's haarcascade_frontalface_NAME.xml

from emod.protocol import EXIT_CONFIG  # noqa: F401  (the one exit-code table)


class ConfigError(ValueError):
    """A bad configuration; the message holds one line per problem."""

    config: "Config | None" = None


def opt(default: Any, help: str, choices: tuple | None = None, signed: bool = False) -> Any:
    """A config key: default, help text, allowed values; numbers must be >= 0 unless ``signed``."""
    return field(default=default, metadata={"help": help, "choices": choices, "signed": signed})


@dataclass
class Daemon:
    runtime_dir: str = opt("", "Directory of the ipc sockets and the instance lock; empty: /run/emod for root, else $XDG_RUNTIME_DIR/emod.")
    state_dir: str = opt("", "Directory of persistent state (chosen model, telemetry history), one emod each (locked); empty: /var/lib/emod for root, else ~/.local/state/emod.")
    log_format: str = opt("auto", "auto (console on a TTY, JSON otherwise), json or console.", ("auto", "json", "console"))
    log_level: str = opt("info", "debug, info, warning or error.", ("debug", "info", "warning", "error"))


@dataclass
class Capture:
    source: str = opt("auto", "auto, picamera2 (camera 0) or picamera2:N (camera N; emod doctor lists them), demo, /dev/videoN, a video file or URL, or an image folder.")
    loop: bool = opt(False, "Restart a file source at its end.")
    realtime: bool = opt(True, "Pace file sources at their own frame rate, every frame analysed (off: as fast as inference goes).")
    width: int = opt(640, "Camera frame width (cameras only).")
    height: int = opt(480, "Camera frame height (cameras only).")
    fps: float = opt(30.0, "Camera frame rate (cameras only).")


@dataclass
class Infer:
    model: str = opt("quant", "Model name from the registry (emod-ctl models); a persisted set-model choice overrides it.")
    detector: str = opt("yunet", "Face detector: yunet (bundled with emod; colour, landmarks) or haar (OpenCV's frontal-face "
                        "cascade; see docs/detectors.md).", ("yunet", "haar"))
    yunet_model: str = opt("", "YuNet 2023mar ONNX file for the yunet detector; empty: the bundled, SHA-256-checked "
                           "face_detection_yunet_2023mar_anysize.onnx.")
    yunet_score: float = opt(0.6, "YuNet: smallest face score kept (0..1; lower finds more faces and more false ones, see docs/detectors.md).")
    detect_width: int = opt(320, "Face detection sees each frame shrunk by the largest whole factor that keeps it at least this wide (1280 -> 320, 1000 -> 333).")
    min_face: float = opt(0.08, "Smallest face to detect, as a fraction of the frame height.")
    haar_scale: float = opt(1.1, "Haar: scale step between detection window sizes (larger is faster, finds fewer faces).")
    haar_cascades: str = opt("default", "Haar: OpenCV frontal-face cascades to run, comma-separated (default, alt, alt2, alt_tree); "
                             "each adds the faces the previous ones missed, at the cost of another pass (see docs/detectors.md).")
    haar_neighbors: int = opt(1, "Haar: overlapping detections needed to accept a face (larger: fewer false faces, fewer faces).")
    haar_min_score: float = opt(0.0, "Haar: a face's cascade confidence (final-stage weight, may be negative) must exceed "
                                "this; with haar_neighbors = 1 it drops the weakest lone windows (-100: no floor; see "
                                "docs/detectors.md).", signed=True)
    max_faces: int = opt(8, "Classify at most this many faces per frame (largest first).")
    margin: float = opt(0.0, "Crop margin around a detected face box, as a fraction of its size (0 measured best on the FER clip); "
                        "for faces without landmarks (haar) or with align off.")
    align: bool = opt(False, "Crop faces with landmarks (yunet) upright, eyes level, framed as FER2013 frames its faces (see docs/detectors.md).")
    align_scale: float = opt(0.9, "Aligned crop side relative to FER2013's framing (larger: more of the head).")
    align_eye_y: float = opt(0.34, "Height of the eye line in the aligned crop, as a fraction of its side (FER2013's median: 0.382).")
    threads: int = opt(1, "Threads of the classifier runtime.")


@dataclass
class Display:
    preview: bool = opt(True, "Publish annotated images: the preview socket, the web stream, snapshots, the remote preview and "
                        "the local window; false: the display stage draws, encodes and publishes no image, only emotions and telemetry.")
    window: str = opt("auto", "Local window: auto (only when a display exists), on or off.", ("auto", "on", "off"))
    jpeg_quality: int = opt(80, "JPEG quality of the preview stream for viewers.")
    smoothing: str = opt("ema", "Per-face label smoothing: ema (with hysteresis), vote (majority of the last N) or none.", ("ema", "vote", "none"))
    ema_alpha: float = opt(0.3, "EMA weight of the newest probabilities.")
    hysteresis_frames: int = opt(4, "A new smoothed label must lead this many consecutive frames...")
    hysteresis_margin: float = opt(0.15, "...or lead the current label by this probability margin.")
    vote_window: int = opt(10, "Window of the majority vote smoother.")
    track_iou: float = opt(0.3, "Minimum IoU to continue a face track.")
    track_max_age: float = opt(1.0, "Seconds a face track survives without a match.")


@dataclass
class Power:
    backend: str = opt("auto", "auto, pi5-pmic, hwmon, rapl or none.", ("auto", "pi5-pmic", "hwmon", "rapl", "none"))
    period: float = opt(1.0, "Seconds between power samples.")


@dataclass
class Supervisor:
    heartbeat_timeout: float = opt(5.0, "A stage silent this long is considered stuck and restarted.")
    max_restarts: int = opt(5, "Give up (exit non-zero) after this many restarts of one core stage (capture, infer, display)...")
    restart_window: float = opt(60.0, "...within this many seconds.")
    watchdog: bool = opt(True, "Send sd_notify WATCHDOG=1 while every core stage is alive (when WATCHDOG_USEC is set); optional parts do not stop it.")


@dataclass
class Telemetry:
    interval: float = opt(1.0, "Seconds between telemetry reports and history lines.")
    history: bool = opt(True, "Append one JSON line per interval to STATE_DIR/telemetry.jsonl.")
    history_max_mb: float = opt(10.0, "Rotate the history file at this size.")
    prometheus: str = opt("", "HOST:PORT of a Prometheus /metrics endpoint; empty disables it.")


@dataclass
class Remote:
    enabled: bool = opt(False, "Also publish the preview over TCP for remote emod-view clients (CURVE-encrypted and authenticated).")
    preview_bind: str = opt("tcp://0.0.0.0:5560", "TCP endpoint of the remote preview publisher.")
    server_secret_key: str = opt("", "This host's CURVE secret key file as a publisher (NAME.key_secret from emod keygen); required by enabled and any *_bind.")
    authorized_keys: str = opt("", "Directory of authorised clients' public key files (NAME.key from emod keygen); required by any *_bind.")
    frames_bind: str = opt("", "Capture also publishes frames on this tcp:// endpoint (CURVE server) for stages on other hosts; empty: off.")
    results_bind: str = opt("", "Infer also publishes results on this tcp:// endpoint (CURVE server); empty: off.")
    frames_connect: str = opt("", "Infer and display take frames from a capture stage on another host at this tcp:// endpoint; empty: local.")
    results_connect: str = opt("", "Display and the launcher take results from an infer stage on another host at this tcp:// endpoint; empty: local.")
    server_public_key: str = opt("", "The remote publisher's public key file (its NAME.key), needed by *_connect.")
    client_secret_key: str = opt("", "This host's key pair (NAME.key_secret) for *_connect; the publisher lists NAME.key in authorized_keys.")


@dataclass
class Mqtt:
    enabled: bool = opt(False, "Publish emotions to an MQTT broker from an mqtt stage (availability, dominant emotion, face count, "
                        "track events, Home Assistant discovery; see docs/outputs.md).")
    host: str = opt("localhost", "MQTT broker host.")
    port: int = opt(1883, "MQTT broker port (8883 is usual with tls).")
    username: str = opt("", "Username at the broker; empty: anonymous.")
    password_file: str = opt("", "File holding the broker password (first line); needs username.")
    tls: bool = opt(False, "Connect with TLS, verifying the broker's certificate.")
    ca_file: str = opt("", "CA certificate file (PEM) that signed the broker's certificate, for tls; empty: the system's CAs.")
    topic_prefix: str = opt("emod", "Topics are PREFIX/DEVICE_ID/availability, .../dominant_emotion, .../faces, .../fps, .../watts, .../events.")
    device_id: str = opt("", "This sensor's id in topics and in Home Assistant (letters, digits, _ and -), one emod each on a broker; empty: the hostname.")
    discovery: bool = opt(True, "Publish retained Home Assistant discovery configs, so emod appears as one device with sensors.")
    discovery_prefix: str = opt("homeassistant", "Home Assistant's discovery prefix.")
    dominant_window: float = opt(5.0, "Seconds of face-time over which the dominant emotion is the label with the most.")
    keepalive: int = opt(30, "Seconds between MQTT keep-alive pings; the broker publishes the last will (offline) after 1.5 times this.")


@dataclass
class Config:
    daemon: Daemon = field(default_factory=Daemon)
    capture: Capture = field(default_factory=Capture)
    infer: Infer = field(default_factory=Infer)
    display: Display = field(default_factory=Display)
    power: Power = field(default_factory=Power)
    supervisor: Supervisor = field(default_factory=Supervisor)
    telemetry: Telemetry = field(default_factory=Telemetry)
    remote: Remote = field(default_factory=Remote)
    mqtt: Mqtt = field(default_factory=Mqtt)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def _section_cls(name: str):
    return {f.name: f.default_factory for f in dataclasses.fields(Config)}[name]


def _coerce(where: str, f: dataclasses.Field, value: Any, from_text: bool) -> Any:
    typ = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool}[f.type]
    if from_text:
        try:
            if typ is bool:
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                value = low in ("1", "true", "yes", "on")
            else:
                value = typ(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a valid {typ.__name__}") from None
    elif typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    if typ is float and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number")
    if typ in (int, float) and value < 0 and not f.metadata.get("signed"):
        raise ConfigError(f"{where}: must not be negative")
    return value


def _apply(cfg: Config, data: dict, origin: str, from_text: bool = False, errors: list[str] | None = None) -> None:
    """Set every key of DATA; each problem is appended to ERRORS (or raised at once when ERRORS is None)."""
    def fail(message: str) -> None:
        if errors is None:
            raise ConfigError(message)
        errors.append(message)

    if not isinstance(data, dict):
        return fail(f"{origin}: expected a table")
    for sname, values in data.items():
        if sname not in SECTIONS:
            fail(f"{origin}: unknown section [{sname}] (known: {', '.join(SECTIONS)})")
            continue
        if not isinstance(values, dict):
            fail(f"{origin}: [{sname}] must be a table")
            continue
        section = getattr(cfg, sname)
        fields = {f.name: f for f in dataclasses.fields(section)}
        for key, value in values.items():
            if key not in fields:
                fail(f"{origin}: unknown key {sname}.{key}{_did_you_mean(key, fields)} (known: {', '.join(fields)})")
                continue
            try:
                setattr(section, key, _coerce(f"{origin}: {sname}.{key}", fields[key], value, from_text))
            except ConfigError as e:
                fail(str(e))


def _did_you_mean(word: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


#: EMOD_* environment variables that are not config keys (every other EMOD_* must name one)
OTHER_ENV = {
    "EMOD_RUNTIME_DIR": "short form of EMOD_DAEMON_RUNTIME_DIR",
    "EMOD_MODELS_DIR": "an extra model registry directory",
    "EMOD_INSTANCE": "the instance name emod run -i NAME passes to its stages (the MQTT device id)",
    "EMOD_FER2013": "the FER2013 data set, for tools and tests",
    "EMOD_PARENT_PID": "set by the launcher for its stages",
    "EMOD_UNDER_SERVICE": "set by the launcher for its stages under systemd (emod.protocol.SERVICE_ENV)",
    "EMOD_VIEWER_SCREENSHOT": "where tests/test_web.py copies its screenshot (docs/reports/viewer.png)",
}


def env_vars() -> dict[str, tuple[str, str]]:
    """Every config variable: ``EMOD_<SECTION>_<KEY>`` -> (section, key)."""
    return {f"EMOD_{s}_{f.name}".upper(): (s, f.name) for s in SECTIONS for f in dataclasses.fields(_section_cls(s)())}


def load(path: str | os.PathLike | None = None, env: dict[str, str] | None = None, overrides: dict | None = None) -> Config:
    """Defaults, then the file, then ``EMOD_<SECTION>_<KEY>`` variables, then ``overrides`` (the command line).

    Every problem is found before anything is refused: the :class:`ConfigError` lists them all,
    one per line (unknown keys, wrong types, an ``EMOD_*`` variable that names no option, cross-key rules).
    """
    cfg = Config()
    errors: list[str] = []
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
        _apply(cfg, data, str(p), errors=errors)
    env = os.environ if env is None else env
    known = env_vars()
    from_env: dict[str, dict[str, str]] = {}
    for var in sorted(env):
        if not var.startswith("EMOD_") or var in OTHER_ENV:
            continue
        if var in known:
            sname, key = known[var]
            from_env.setdefault(sname, {})[key] = env[var]
        else:
            errors.append(f"environment: {var} is not an emod option{_did_you_mean(var, [*known, *OTHER_ENV])}")
    # the documented short form for the runtime directory
    if "EMOD_RUNTIME_DIR" in env:
        from_env.setdefault("daemon", {})["runtime_dir"] = env["EMOD_RUNTIME_DIR"]
    _apply(cfg, from_env, "environment", from_text=True, errors=errors)
    if overrides:
        _apply(cfg, overrides, "command line", errors=errors)
    check(cfg, str(path) if path is not None else "config", errors)
    if errors:
        err = ConfigError("\n".join(errors))
        err.config = cfg  # what could be read, so a caller can check more (emod validate: the model name)
        raise err
    return cfg


def load_or_exit(path: str | os.PathLike | None, prog: str) -> Config:
    """:func:`load` for a command-line tool: on a ConfigError print ``PROG: config error: ...`` and exit 78."""
    try:
        return load(path)
    except ConfigError as e:
        import sys

        print(f"{prog}: config error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def check(cfg: Config, origin: str, errors: list[str] | None = None) -> None:
    """Checks across keys, after all sources are merged (a ConfigError names the origin).

    With ERRORS, every failed rule is appended to it; without, the first one is raised.
    """
    out: list[str] = []
    rules = [
        (cfg.infer.detect_width >= 64, "infer.detect_width must be at least 64"),
        (cfg.infer.haar_scale > 1.0, "infer.haar_scale must be greater than 1"),
        (bool(cfg.infer.haar_cascades.strip(",").strip()) and all(n.strip() in HAAR_CASCADES for n in cfg.infer.haar_cascades.split(",")),
         f"infer.haar_cascades: {cfg.infer.haar_cascades!r} is not a comma-separated list of {', '.join(HAAR_CASCADES)}"),
        (cfg.infer.threads >= 1, "infer.threads must be at least 1"),
        (0.5 <= cfg.infer.align_scale <= 2.0, "infer.align_scale must be 0.5..2"),
        (0.0 < cfg.infer.yunet_score <= 1.0, "infer.yunet_score must be in (0, 1]"),
        (0.1 <= cfg.infer.align_eye_y <= 0.9, "infer.align_eye_y must be 0.1..0.9"),
        (cfg.infer.max_faces >= 1, "infer.max_faces must be at least 1"),
        (1 <= cfg.display.jpeg_quality <= 100, "display.jpeg_quality must be 1..100"),
        (0 < cfg.display.ema_alpha <= 1, "display.ema_alpha must be in (0, 1]"),
        (cfg.power.period >= 0.05, "power.period must be at least 0.05 s"),
        (cfg.telemetry.interval >= 0.1, "telemetry.interval must be at least 0.1 s"),
        (cfg.supervisor.heartbeat_timeout > 2 * cfg.telemetry.interval,
         "supervisor.heartbeat_timeout must exceed twice telemetry.interval (stages report once per interval)"),
        (cfg.infer.detector != "yunet" or not cfg.infer.yunet_model or Path(cfg.infer.yunet_model).is_file(),
         f"infer.yunet_model must be empty (the bundled model) or name an existing file (got {cfg.infer.yunet_model!r})"),
    ]
    out += [f"{origin}: {message}" for ok, message in rules if not ok]
    if cfg.telemetry.prometheus:
        from emod.launcher.prometheus import MetricsError, parse_address

        try:
            parse_address(cfg.telemetry.prometheus)
        except MetricsError as e:
            out.append(f"{origin}: telemetry.{e}")
    if cfg.mqtt.enabled:
        try:
            check_mqtt(cfg.mqtt, origin)
        except ConfigError as e:
            out.append(str(e))
    r = cfg.remote
    if r.enabled or r.frames_bind or r.results_bind or r.frames_connect or r.results_connect:
        from emod import remote

        try:
            remote.check(cfg.remote)
        except ConfigError as e:
            out.append(f"{origin}: {e}")
    if errors is not None:
        errors.extend(out)
    elif out:
        raise ConfigError(out[0])


_MQTT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def check_mqtt(m: Mqtt, origin: str) -> None:
    """The [mqtt] section: names that make valid topics, keys that need each other (a ConfigError names the key).

    The files it names (password, CA) are checked by :mod:`emod.preflight` (``emod validate``, ``emod doctor``):
    MQTT is optional, so ``emod run`` starts without them and the mqtt stage reports them in ``problems``.
    """
    rules = [
        (bool(m.host.strip()), "mqtt.host must not be empty"),
        (1 <= m.port <= 65535, "mqtt.port must be 1..65535"),
        (not m.password_file or bool(m.username), "mqtt.password_file needs mqtt.username"),
        (not m.ca_file or m.tls, "mqtt.ca_file needs mqtt.tls = true"),
        (all(_MQTT_NAME.fullmatch(part) for part in m.topic_prefix.split("/")),
         f"mqtt.topic_prefix: {m.topic_prefix!r} must be /-separated parts of letters, digits, _ and -"),
        (not m.device_id or bool(_MQTT_NAME.fullmatch(m.device_id)), f"mqtt.device_id: {m.device_id!r} may hold only letters, digits, _ and -"),
        (bool(_MQTT_NAME.fullmatch(m.discovery_prefix)), f"mqtt.discovery_prefix: {m.discovery_prefix!r} may hold only letters, digits, _ and -"),
        (m.dominant_window > 0, "mqtt.dominant_window must be positive"),
        (m.keepalive >= 5, "mqtt.keepalive must be at least 5 s"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"{origin}: {message}")


def from_json(text: str) -> Config:
    cfg = Config()
    _apply(cfg, json.loads(text), "config json")
    return cfg


def reference() -> str:
    """Every option, its default and its help, as Markdown (the table of docs/configuration.md)."""
    lines = ["| option | default | meaning |", "|---|---|---|"]
    cfg = Config()
    for sname in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, sname)):
            lines.append(f"| `{sname}.{f.name}` | `{json.dumps(f.default)}` | {f.metadata['help']} |")
    return "\n".join(lines)


def default_toml() -> str:
    """A commented default config file (what the installer writes to /etc/emod/emod.toml)."""
    out = ["# emod configuration. Every key is optional; these are the defaults.", ""]
    cfg = Config()
    for sname in SECTIONS:
        out.append(f"[{sname}]")
        for f in dataclasses.fields(getattr(cfg, sname)):
            out.append(f"# {f.metadata['help']}")
            out.append(f"{f.name} = {json.dumps(f.default)}")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":  # python -m emod.config: the option table of docs/configuration.md
    print(reference())
