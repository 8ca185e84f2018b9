"""ZeroMQ sockets under one runtime directory.

Publishers bind, subscribers connect. "Latest only" is done with small high-water
marks plus :func:`recv_latest`, which drains a socket and keeps the newest message
(``ZMQ_CONFLATE`` would break multipart). Frames are sent zero-copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq

from emod import dirs, protocol

DEFAULT_RUNTIME_DIR = "/run/emod"
_MAX_IPC_PATH = 107


def runtime_dir(value: str | os.PathLike | None = None) -> Path:
    """The runtime directory: the given value, else ``$EMOD_RUNTIME_DIR``, else the default.

    The default is /run/emod for root or where a daemon already serves there (the systemd
    unit); otherwise ``$XDG_RUNTIME_DIR/emod`` or ``/tmp/emod-UID`` so a user can run emod too.
    """
    if value or os.environ.get("EMOD_RUNTIME_DIR"):
        return Path(value or os.environ["EMOD_RUNTIME_DIR"])
    if os.geteuid() == 0 or Path(DEFAULT_RUNTIME_DIR, "control.sock").exists():
        return Path(DEFAULT_RUNTIME_DIR)
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "emod" if base else Path(f"/tmp/emod-{os.getuid()}")


def state_dir(value: str | os.PathLike | None = None) -> Path:
    """The state directory: the given value, else /var/lib/emod for root, else ``~/.local/state/emod``."""
    if value:
        return Path(value)
    if os.environ.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"])
    if os.geteuid() == 0:
        return Path("/var/lib/emod")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "emod"


def endpoint(rundir: Path, name: str) -> str:
    if name not in protocol.ENDPOINTS:
        raise ValueError(f"unknown endpoint {name!r}")
    path = str(Path(rundir).resolve() / f"{name}.sock")
    if len(path) > _MAX_IPC_PATH:
        raise ValueError(f"socket path {path!r} is longer than {_MAX_IPC_PATH} characters; use a shorter --runtime-dir")
    return "ipc://" + path


def socket_path(rundir: Path, name: str) -> Path:
    return Path(endpoint(rundir, name)[len("ipc://"):])


def bind(ctx: zmq.Context, kind: int, rundir: Path, name: str, hwm: int | None = None) -> zmq.Socket:
    """Bind endpoint ``name`` under ``rundir`` (mode 0660) after :func:`emod.dirs.check_dir`; UnsafePath if refused."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if hwm is not None:
        s.setsockopt(zmq.SNDHWM, hwm)
        s.setsockopt(zmq.RCVHWM, hwm)
    if kind in (zmq.PULL, zmq.ROUTER, zmq.SUB):
        s.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_PAYLOAD_BYTES + protocol.MAX_HEADER_BYTES)
    path = socket_path(rundir, name)
    try:
        dirs.check_dir(path.parent, "runtime directory")  # nobody else may own the place our sockets live
    except OSError:
        s.close()
        raise
    if path.exists():
        path.unlink()  # a stale socket left by a killed process
    s.bind(endpoint(rundir, name))
    try:
        os.chmod(path, 0o660)
    except OSError:
        pass
    return s


def connect(ctx: zmq.Context, kind: int, rundir: Path, name: str, hwm: int | None = None, topic: bytes = b"") -> zmq.Socket:
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if hwm is not None:
        if kind != zmq.SUB:  # a SUB sends only its subscriptions: a small queue would drop all but the first few
            s.setsockopt(zmq.SNDHWM, hwm)
        s.setsockopt(zmq.RCVHWM, hwm)
    if kind == zmq.SUB:
        s.setsockopt(zmq.SUBSCRIBE, topic)
        s.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_PAYLOAD_BYTES + protocol.MAX_HEADER_BYTES)
    s.connect(endpoint(rundir, name))
    return s


def recv_latest(sock: zmq.Socket, timeout_ms: int, copy: bool = False) -> tuple[list | None, int]:
    """Wait up to ``timeout_ms`` for a message, then drain the queue.

    Returns ``(newest message parts or None, number of older messages skipped)``.
    """
    if not sock.poll(timeout_ms, zmq.POLLIN):
        return None, 0
    msg = sock.recv_multipart(copy=copy)
    skipped = 0
    while True:
        try:
            newer = sock.recv_multipart(zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            return msg, skipped
        msg = newer
        skipped += 1


def read_subscriptions(sock: zmq.Socket, topics: set[bytes]) -> int:
    """Apply every pending (un)subscription message of the XPUB ``sock`` to ``topics``, the set of subscribed topics.

    An XPUB passes a topic's first subscription and its last unsubscription, so a set (idempotent)
    tracks what is subscribed; a count of messages would drift whenever one is repeated. Returns
    how many other messages (garbage sent upstream by a peer) were read and dropped.
    """
    other = 0
    while True:
        try:
            msg = sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return other
        if msg[:1] == b"\x01":
            topics.add(msg[1:])
        elif msg[:1] == b"\x00":
            topics.discard(msg[1:])
        else:
            other += 1
