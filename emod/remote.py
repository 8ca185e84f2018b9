"""emod over TCP with CURVE: remote viewers, and stages split across hosts.

Preview: the display stage publishes each preview message on the local ipc XPUB and, when
``[remote].enabled``, also on a TCP XPUB bound at ``preview_bind``.

Stage links: ``frames_bind`` (capture) and ``results_bind`` (infer) publish the same
messages on a TCP XPUB too; ``frames_connect`` / ``results_connect`` make a stage on
another host (infer, display, the launcher) subscribe there instead of to the local ipc
socket. So capture runs on the camera host and inference on another, each under its own
``emod-stage@`` unit.

Every TCP publisher is a CURVE server (``server_secret_key``); a ZAP authenticator admits
only clients whose public key file lies in the ``authorized_keys`` directory (``emod
keygen`` writes both). A subscribing stage is a CURVE client with ``client_secret_key``
and the publisher's ``server_public_key``. Refused handshakes are logged (rate-limited)
from a socket monitor thread, which also re-reads ``authorized_keys`` when its files
change (new connections only).

Sending is NOBLOCK and the high-water mark is tiny: a slow or stalled remote peer loses
messages at its own pipe, never slows the pipeline. Like the local XPUB, a publisher
knows whether anyone is subscribed, so nothing is sent to nobody.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from pathlib import Path

import structlog
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from emod import protocol
from emod.config import ConfigError

HWM = 2
_REFUSALS = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "not authorised (ZAP refused the client key)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake protocol error (not a CURVE client?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
}
RELOAD_KEYS_S = 5.0  # authorized_keys is re-read when its files change
_LOG_EVERY_S = 30.0  # a refused client reconnects every few hundred ms: log the first, then a count
_ids = itertools.count()


LINKS = ("frames", "results")  # streams a stage can publish to, or take from, another host


def _key_file(key: str, value: str, secret: bool) -> None:
    if not Path(value).is_file():
        raise ConfigError(f"remote.{key}: no such file {value!r}")
    try:
        public, private = zmq.auth.load_certificate(value)
    except (OSError, ValueError) as e:
        raise ConfigError(f"remote.{key}: cannot read {value!r}: {e}") from None
    if secret and not private:
        raise ConfigError(f"remote.{key}: {value!r} holds no secret key (use the .key_secret file)")
    if not public:
        raise ConfigError(f"remote.{key}: {value!r} holds no public key")


def _tcp(key: str, value: str) -> None:
    if not value.startswith("tcp://"):
        raise ConfigError(f"remote.{key}: {value!r} is not a tcp:// endpoint")


def check(remote) -> None:
    """Raise :class:`ConfigError` when a TCP publisher or link is configured without usable keys."""
    binds = [f"{n}_bind" for n in LINKS if getattr(remote, f"{n}_bind")]
    if remote.enabled:
        binds.insert(0, "preview_bind")
    if binds:
        why = "remote.enabled" if remote.enabled else f"remote.{binds[0]}"
        if not remote.server_secret_key:
            raise ConfigError(f"{why} needs remote.server_secret_key (create one with: emod keygen DIR --name server)")
        _key_file("server_secret_key", remote.server_secret_key, secret=True)
        if not remote.authorized_keys:
            raise ConfigError(f"{why} needs remote.authorized_keys, a directory of client public keys (*.key)")
        if not Path(remote.authorized_keys).is_dir():
            raise ConfigError(f"remote.authorized_keys: no such directory {remote.authorized_keys!r}")
        for k in binds:
            _tcp(k, getattr(remote, k))
    connects = [f"{n}_connect" for n in LINKS if getattr(remote, f"{n}_connect")]
    if connects:
        for k in connects:
            _tcp(k, getattr(remote, k))
        for k, secret in (("server_public_key", False), ("client_secret_key", True)):
            if not getattr(remote, k):
                raise ConfigError(f"remote.{connects[0]} needs remote.{k}")
            _key_file(k, getattr(remote, k), secret)


class _AuthLog:
    """Routes the authenticator's logging into structlog and remembers refused client keys."""

    def __init__(self, log):
        self.log = log
        self.denied: deque[str] = deque(maxlen=8)

    @staticmethod
    def _text(msg, args) -> str:
        try:
            return str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            return f"{msg} {args!r}"

    def debug(self, msg, *args):
        if args and "client_key" in str(msg) and self._text(msg, args).startswith("DENIED"):
            key = args[-1]
            self.denied.append((key.decode(errors="replace") if isinstance(key, bytes) else str(key))[:60])

    info = debug

    def warning(self, msg, *args):
        self.log.warning("remote authenticator", detail=self._text(msg, args))

    def error(self, msg, *args):
        self.log.error("remote authenticator", detail=self._text(msg, args))

    exception = error


class RemotePublisher:
    """A CURVE-secured TCP XPUB (see the module docstring); ``what`` names its stream in logs and errors."""

    def __init__(self, ctx: zmq.Context, remote, log, bind: str | None = None, what: str = "preview", hwm: int = HWM):
        check(remote)
        bind = bind or remote.preview_bind
        self.what = what
        log = log.bind(**structlog.contextvars.get_contextvars())  # context vars do not follow into threads
        self.log = log
        self.auth_log = _AuthLog(log)
        self.auth = ThreadAuthenticator(ctx, log=self.auth_log)
        self.auth.start()
        self.keys_dir = Path(remote.authorized_keys)
        self.keys_stamp = self._stamp()
        self.auth.configure_curve(domain="*", location=str(self.keys_dir))
        public, secret = zmq.auth.load_certificate(remote.server_secret_key)
        s = self.sock = ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, hwm)
        s.setsockopt(zmq.RCVHWM, 100)
        s.setsockopt(zmq.MAXMSGSIZE, 1024)  # subscribers only send (un)subscriptions
        s.curve_secretkey, s.curve_publickey, s.curve_server = secret, public, True
        self.monitor_addr = f"inproc://emod-remote-monitor-{next(_ids)}"
        events = zmq.EVENT_HANDSHAKE_SUCCEEDED
        for e in _REFUSALS:
            events |= e
        s.monitor(self.monitor_addr, events)
        self.running = True
        self.monitor_thread = threading.Thread(target=self._watch, args=(ctx,), name="remote-monitor", daemon=True)
        self.monitor_thread.start()
        try:
            s.bind(bind)
        except zmq.ZMQError as e:
            self.close()
            raise ConfigError(f"remote.{what}_bind: cannot bind {bind!r}: {e}") from None
        self.topics: Counter[bytes] = Counter()  # subscribed topic prefix -> subscribers
        self.sent = self.dropped = 0
        log.info(f"remote {what} listening", bind=bind, authorized_keys=str(remote.authorized_keys))

    def active(self, topic: bytes | None = None) -> bool:
        """Whether any authorised remote subscriber is there (for ``topic``: wants it); drains pending subscription messages."""
        while True:
            try:
                msg = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return any(n > 0 and (topic is None or topic.startswith(prefix)) for prefix, n in self.topics.items())
            if msg[:1] == b"\x01":
                self.topics[msg[1:]] += 1
            elif msg[:1] == b"\x00":
                self.topics[msg[1:]] = max(0, self.topics[msg[1:]] - 1)

    @property
    def subscribed(self) -> int:
        return sum(self.topics.values())

    def send(self, parts: list, copy: bool = True) -> None:
        """Publish one message; never blocks (a full pipe drops it)."""
        try:
            self.sock.send_multipart(parts, zmq.NOBLOCK, copy=copy)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1

    def _watch(self, ctx: zmq.Context) -> None:
        mon = ctx.socket(zmq.PAIR)
        mon.setsockopt(zmq.LINGER, 0)
        mon.connect(self.monitor_addr)
        last: dict[int, float] = {}
        counts: dict[int, int] = {}
        try:
            next_keys_check = time.monotonic() + RELOAD_KEYS_S
            while self.running:
                if time.monotonic() >= next_keys_check:
                    next_keys_check = time.monotonic() + RELOAD_KEYS_S
                    self._reload_keys()
                if not mon.poll(500):
                    continue
                try:
                    ev = recv_monitor_message(mon)
                except zmq.ZMQError:
                    break
                event = ev["event"]
                if event == zmq.EVENT_MONITOR_STOPPED:
                    break
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.log.info("remote subscriber attached", stream=self.what)
                    continue
                counts[event] = counts.get(event, 0) + 1
                now = time.monotonic()
                if now - last.get(event, -1e9) >= _LOG_EVERY_S:
                    key = self.auth_log.denied[-1] if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and self.auth_log.denied else None
                    self.log.warning("remote subscriber refused", stream=self.what, reason=_REFUSALS.get(event, str(event)), client_key=key,
                                     status=ev.get("value"), refusals=counts[event])
                    last[event] = now
        finally:
            mon.close()

    def _stamp(self) -> tuple:
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.keys_dir.glob("*.key")))
        except OSError:
            return ()

    def _reload_keys(self) -> None:
        """Pick up keys added to or removed from authorized_keys (new connections only)."""
        stamp = self._stamp()
        if stamp != self.keys_stamp:
            self.keys_stamp = stamp
            self.auth.configure_curve(domain="*", location=str(self.keys_dir))
            self.log.info("remote authorized_keys reloaded", keys=len(stamp))

    def close(self) -> None:
        self.running = False
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor_thread.join(timeout=2)
        self.sock.close()
        self.auth.stop()


def open_publisher(ctx: zmq.Context, cfg, log) -> RemotePublisher | None:
    """The display stage's remote preview publisher, or None when ``[remote]`` is disabled."""
    return RemotePublisher(ctx, cfg.remote, log) if cfg.remote.enabled else None


def open_link_publisher(ctx: zmq.Context, cfg, name: str, log) -> RemotePublisher | None:
    """The TCP publisher of stream NAME (frames, results) when ``remote.NAME_bind`` is set, else None."""
    bind = getattr(cfg.remote, f"{name}_bind")
    return RemotePublisher(ctx, cfg.remote, log, bind=bind, what=name, hwm=2 if name == "frames" else 50) if bind else None


def subscribe(ctx: zmq.Context, cfg, rundir, name: str, hwm: int, topic: bytes = b"") -> tuple[zmq.Socket, bool]:
    """A SUB for stream NAME: from another host when ``remote.NAME_connect`` is set, else the local ipc socket.

    Returns ``(socket, is_remote)``.
    """
    from emod import bus

    endpoint = getattr(cfg.remote, f"{name}_connect", "")
    if not endpoint:
        return bus.connect(ctx, zmq.SUB, rundir, name, hwm=hwm, topic=topic), False
    # the keys were checked with the rest of the config when it was loaded (emod.config.check)
    return connect_subscriber(ctx, endpoint, cfg.remote.server_public_key, cfg.remote.client_secret_key, hwm, topic), True


def local_mono(header: dict, max_age_s: float = 10.0) -> float:
    """A remote frame's capture time on this host's monotonic clock, through the wall clocks (NTP-synced hosts).

    Monotonic clocks of two hosts share no origin. When the wall clocks disagree (the age comes
    out negative or over ``max_age_s``), the frame counts as captured now: latency then
    misses the network time instead of being made up.
    """
    age = time.time() - float(header["t_wall"])
    return time.monotonic() - (age if 0.0 <= age <= max_age_s else 0.0)


def connect_subscriber(ctx: zmq.Context, endpoint: str, server_key: str, client_key: str, hwm: int = HWM,
                       topic: bytes = b"preview") -> zmq.Socket:
    """A SUB to a remote emod publisher: CURVE client with its own keypair and the server's public key."""
    if not endpoint.startswith("tcp://"):
        raise ValueError(f"--connect needs a tcp://HOST:PORT endpoint, got {endpoint!r}")
    try:
        server_public, _ = zmq.auth.load_certificate(server_key)
        client_public, client_secret = zmq.auth.load_certificate(client_key)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read CURVE key: {e}") from None
    if not client_secret:
        raise ValueError(f"{client_key} holds no secret key: pass the client's .key_secret file")
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, hwm)
    s.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_PAYLOAD_BYTES + protocol.MAX_HEADER_BYTES)
    s.curve_secretkey, s.curve_publickey, s.curve_serverkey = client_secret, client_public, server_public
    s.setsockopt(zmq.SUBSCRIBE, topic)
    s.connect(endpoint)
    return s
