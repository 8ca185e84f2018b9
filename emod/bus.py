"""ZeroMQ sockets under one runtime directory.

Publishers bind, subscribers connect. "Latest only" is done with small high-water
marks plus :func:`recv_latest`, which drains a socket and keeps the newest message
(``ZMQ_CONFLATE`` would break multipart). Frames are sent zero-copy.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import zmq

from emod import dirs, protocol

DEFAULT_RUNTIME_DIR = "/run/emod"
_INSTANCE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_MAX_IPC_PATH = 107  # sockaddr_un's sun_path holds 108 bytes, one of them the terminating NUL


class RuntimeDirError(OSError):
    """A runtime directory no emod can serve on: its socket paths are too long, or it is a symlink or not ours.

    Every CLI prints it as one line and exits :data:`emod.protocol.EXIT_CONFIG` (78): retrying cannot fix it.
    """

    exit_code = protocol.EXIT_CONFIG


def check_path_length(rundir: str | os.PathLike) -> None:
    """RuntimeDirError when the longest socket path under ``rundir`` exceeds sockaddr_un's 107 characters."""
    longest = max(protocol.ENDPOINTS, key=len)
    path = str(Path(rundir).resolve() / f"{longest}.sock")
    if len(path) > _MAX_IPC_PATH:
        raise RuntimeDirError(f"runtime directory {rundir}: socket path {path} is {len(path)} characters, longer than the "
                              f"{_MAX_IPC_PATH} a unix socket allows; use a shorter --runtime-dir (or EMOD_RUNTIME_DIR)")


def check_client_dir(rundir: str | os.PathLike) -> None:
    """For clients, before connecting: RuntimeDirError (78) for too long a path or a symlink (emod run refuses
    both, so no emod serves there); FileNotFoundError when the directory does not exist."""
    check_path_length(rundir)
    p = Path(rundir)
    if p.is_symlink():
        raise RuntimeDirError(f"runtime directory {p} is a symlink (to {os.readlink(p)}): emod run refuses it, so no emod "
                              "serves there; use the real directory")
    if not p.is_dir():
        raise FileNotFoundError(f"no runtime directory {p}")


def instance_name(name: str) -> str:
    """NAME if it can name an instance (1-32 letters, digits, _ and -: a directory and an MQTT id), else ValueError."""
    if not _INSTANCE_RE.fullmatch(name or ""):
        raise ValueError(f"instance name {name!r}: use 1 to 32 letters, digits, '_' or '-'")
    return name


def runtime_dir(value: str | os.PathLike | None = None, instance: str | None = None) -> Path:
    """The runtime directory: BASE, or BASE/INSTANCE for an instance (``-i NAME``; emod@NAME.service).

    BASE is the given value, else ``$EMOD_RUNTIME_DIR``, else /run/emod for root or where a daemon
    already serves there (the systemd units), else ``$XDG_RUNTIME_DIR/emod`` or ``/tmp/emod-UID`` so a
    user can run emod too. This and :func:`state_dir` are the one place that maps an instance to its
    directories: /run/emod/NAME for the unit, whose ``EMOD_RUNTIME_DIR`` is /run/emod.
    """
    if instance is not None:
        instance_name(instance)
    if value or os.environ.get("EMOD_RUNTIME_DIR"):
        base = Path(value or os.environ["EMOD_RUNTIME_DIR"])
    elif os.geteuid() == 0 or Path(DEFAULT_RUNTIME_DIR, instance or "", "control.sock").exists():
        base = Path(DEFAULT_RUNTIME_DIR)
    else:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = Path(xdg) / "emod" if xdg else Path(f"/tmp/emod-{os.getuid()}")
    return base / instance if instance else base


def state_dir(value: str | os.PathLike | None = None, instance: str | None = None) -> Path:
    """The state directory: ``$STATE_DIRECTORY`` as is (systemd's ``StateDirectory=``, already per instance in
    emod@.service) when no value is given; else BASE, or BASE/INSTANCE for an instance. BASE is the given value,
    else /var/lib/emod for root, else ``~/.local/state/emod``."""
    if instance is not None:
        instance_name(instance)
    if not value and os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"])
    if value:
        base = Path(value)
    elif os.geteuid() == 0:
        base = Path("/var/lib/emod")
    else:
        base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "emod"
    return base / instance if instance else base


def endpoint(rundir: Path, name: str) -> str:
    if name not in protocol.ENDPOINTS:
        raise ValueError(f"unknown endpoint {name!r}")
    path = str(Path(rundir).resolve() / f"{name}.sock")
    if len(path) > _MAX_IPC_PATH:
        check_path_length(rundir)  # raises RuntimeDirError naming the path and the limit
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
