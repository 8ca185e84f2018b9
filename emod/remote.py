"""Remote viewers over TCP with CURVE: the daemon-side publisher and the viewer-side subscriber.

The display stage publishes each preview message on the local ipc XPUB and, when
``[remote].enabled``, also on a TCP XPUB bound at ``preview_bind``. That socket is a
CURVE server (``server_secret_key``); a ZAP authenticator admits only clients whose
public key file lies in the ``authorized_keys`` directory (``emod keygen`` writes both).
Refused handshakes are logged (rate-limited) from a socket monitor thread, which also
re-reads ``authorized_keys`` when its files change (new connections only).

Sending is NOBLOCK and the high-water mark is tiny: a slow or stalled remote viewer
loses frames at its own pipe, never slows the pipeline. Like the local XPUB, the
publisher knows whether anyone is subscribed, so nothing is encoded for nobody.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
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


def check(remote) -> None:
    """Raise :class:`ConfigError` when ``[remote]`` is enabled without usable keys."""
    if not remote.enabled:
        return
    if not remote.server_secret_key:
        raise ConfigError("remote.enabled needs remote.server_secret_key (create one with: emod keygen DIR --name server)")
    if not Path(remote.server_secret_key).is_file():
        raise ConfigError(f"remote.server_secret_key: no such file {remote.server_secret_key!r}")
    try:
        _, secret = zmq.auth.load_certificate(remote.server_secret_key)
    except (OSError, ValueError) as e:
        raise ConfigError(f"remote.server_secret_key: cannot read {remote.server_secret_key!r}: {e}") from None
    if not secret:
        raise ConfigError(f"remote.server_secret_key: {remote.server_secret_key!r} holds no secret key (use the .key_secret file)")
    if not remote.authorized_keys:
        raise ConfigError("remote.enabled needs remote.authorized_keys, a directory of client public keys (*.key)")
    if not Path(remote.authorized_keys).is_dir():
        raise ConfigError(f"remote.authorized_keys: no such directory {remote.authorized_keys!r}")
    if not remote.preview_bind.startswith("tcp://"):
        raise ConfigError(f"remote.preview_bind: {remote.preview_bind!r} is not a tcp:// endpoint")


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
    """The CURVE-secured TCP XPUB of the display stage (see the module docstring)."""

    def __init__(self, ctx: zmq.Context, remote, log):
        check(remote)
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
        s.setsockopt(zmq.SNDHWM, HWM)
        s.setsockopt(zmq.RCVHWM, 100)
        s.setsockopt(zmq.MAXMSGSIZE, 1024)  # viewers only send (un)subscriptions
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
            s.bind(remote.preview_bind)
        except zmq.ZMQError as e:
            self.close()
            raise ConfigError(f"remote.preview_bind: cannot bind {remote.preview_bind!r}: {e}") from None
        self.subscribed = 0
        self.sent = self.dropped = 0
        log.info("remote preview listening", bind=remote.preview_bind, authorized_keys=str(remote.authorized_keys))

    def active(self) -> bool:
        """Whether any authorised remote viewer is subscribed (drains pending subscription messages)."""
        while True:
            try:
                msg = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return self.subscribed > 0
            if msg[:1] == b"\x01":
                self.subscribed += 1
            elif msg[:1] == b"\x00":
                self.subscribed = max(0, self.subscribed - 1)

    def send(self, parts: list) -> None:
        """Publish one preview message; never blocks (a full pipe drops it)."""
        try:
            self.sock.send_multipart(parts, zmq.NOBLOCK)
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
                    self.log.info("remote viewer attached")
                    continue
                counts[event] = counts.get(event, 0) + 1
                now = time.monotonic()
                if now - last.get(event, -1e9) >= _LOG_EVERY_S:
                    key = self.auth_log.denied[-1] if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and self.auth_log.denied else None
                    self.log.warning("remote viewer refused", reason=_REFUSALS.get(event, str(event)), client_key=key,
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
    """The display stage's remote publisher, or None when ``[remote]`` is disabled."""
    return RemotePublisher(ctx, cfg.remote, log) if cfg.remote.enabled else None


def connect_subscriber(ctx: zmq.Context, endpoint: str, server_key: str, client_key: str, hwm: int = HWM) -> zmq.Socket:
    """A viewer's SUB to a remote daemon: CURVE client with its own keypair and the server's public key."""
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
    s.setsockopt(zmq.SUBSCRIBE, b"preview")
    s.connect(endpoint)
    return s
