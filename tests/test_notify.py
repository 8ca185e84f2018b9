"""The sd_notify client against real AF_UNIX datagram listeners, as systemd would receive it."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from emod.launcher.notify import NOTIFY_ENV_VARS, Notifier, child_env


def _listener(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A NOTIFY_SOCKET value naming a file-system socket, and the bound listener."""
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        yield path, sock


@pytest.fixture
def abstract_listener() -> Iterator[tuple[str, socket.socket]]:
    """A NOTIFY_SOCKET value of the form @name (abstract namespace), and the bound listener."""
    name = f"emod-test-{uuid.uuid4().hex}"
    with _listener(b"\0" + name.encode()) as sock:
        yield f"@{name}", sock


def recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages_arrive_as_systemd_expects(path_listener) -> None:
    """ready/watchdog/status/stopping send exactly READY=1, WATCHDOG=1, STATUS=..., STOPPING=1 datagrams."""
    addr, sock = path_listener
    n = Notifier(env={"NOTIFY_SOCKET": addr})
    assert n.enabled
    assert n.ready() and recv(sock) == "READY=1"
    assert n.watchdog() and recv(sock) == "WATCHDOG=1"
    assert n.status("4 stages up, 12.5 fps") and recv(sock) == "STATUS=4 stages up, 12.5 fps"
    assert n.stopping() and recv(sock) == "STOPPING=1"
    assert n.ready(status="running") and recv(sock) == "READY=1\nSTATUS=running"


def test_abstract_namespace_socket(abstract_listener) -> None:
    """An @name NOTIFY_SOCKET is reached in the abstract namespace."""
    addr, sock = abstract_listener
    n = Notifier(env={"NOTIFY_SOCKET": addr})
    assert n.enabled and n.ready()
    assert recv(sock) == "READY=1"


def test_reads_os_environ(path_listener, monkeypatch) -> None:
    """Without arguments the Notifier reads NOTIFY_SOCKET from os.environ."""
    addr, sock = path_listener
    monkeypatch.setenv("NOTIFY_SOCKET", addr)
    assert Notifier().watchdog()
    assert recv(sock) == "WATCHDOG=1"


def test_explicit_socket_overrides_environment(path_listener) -> None:
    """An explicit socket_path wins over NOTIFY_SOCKET in the environment."""
    addr, sock = path_listener
    n = Notifier(socket_path=addr, env={"NOTIFY_SOCKET": "/nonexistent/notify"})
    assert n.ready() and recv(sock) == "READY=1"


def test_reloading_carries_monotonic_usec(path_listener) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC, the CLOCK_MONOTONIC time in microseconds."""
    addr, sock = path_listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(env={"NOTIFY_SOCKET": addr}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = recv(sock).split("\n")
    assert first == "RELOADING=1"
    key, usec = second.split("=")
    assert key == "MONOTONIC_USEC" and before <= int(usec) <= after


def test_send_fields(path_listener) -> None:
    """send(**fields) upper-cases keys, writes True as 1 and keeps each value on one line."""
    addr, sock = path_listener
    n = Notifier(env={"NOTIFY_SOCKET": addr})
    assert n.send(status="a\nb", extend_timeout_usec=5_000_000, ready=True)
    assert recv(sock) == "STATUS=a b\nEXTEND_TIMEOUT_USEC=5000000\nREADY=1"
    assert n.send() is False  # nothing to say, nothing sent


def test_noop_without_notify_socket() -> None:
    """Without NOTIFY_SOCKET the Notifier is disabled and every call returns False without raising."""
    n = Notifier(env={})
    assert not n.enabled
    assert n.watchdog_interval is None
    assert not any([n.ready(), n.watchdog(), n.status("x"), n.stopping(), n.reloading(), n.send(READY=1)])


def test_unsupported_address_is_disabled() -> None:
    """A NOTIFY_SOCKET that is neither a path nor @name (e.g. vsock) disables notifications."""
    n = Notifier(env={"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled and n.ready() is False


def test_watchdog_interval() -> None:
    """watchdog_interval is half of WATCHDOG_USEC in seconds, None when unset, invalid or meant for another PID."""
    assert Notifier(env={"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    assert Notifier(env={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 15.0
    assert Notifier(env={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval is None
    assert Notifier(env={"WATCHDOG_USEC": "junk"}).watchdog_interval is None
    assert Notifier(env={"WATCHDOG_USEC": "0"}).watchdog_interval is None
    assert Notifier(env={}).watchdog_interval is None
    assert Notifier(watchdog_usec=2_000_000, env={}).watchdog_interval == 1.0


def test_listener_gone_returns_false(tmp_path: Path) -> None:
    """When the listener has gone away sends return False and never raise."""
    path = str(tmp_path / "notify")
    _listener(path).close()  # the socket file remains, nobody listens
    n = Notifier(env={"NOTIFY_SOCKET": path})
    assert n.enabled and n.ready() is False
    os.unlink(path)  # now the path does not exist at all
    assert n.watchdog() is False and n.stopping() is False
    # an impossible address (longer than sun_path) is also just False
    assert Notifier(env={"NOTIFY_SOCKET": "/" + "x" * 200}).ready() is False


def test_child_env_strips_notify_variables() -> None:
    """child_env() drops NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, keeps everything else and marks a service's stages."""
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1", "PATH": "/bin"}
    assert child_env(env) == {"PATH": "/bin", "EMOD_UNDER_SERVICE": "1"}
    assert not set(NOTIFY_ENV_VARS) & set(child_env(env))
    assert child_env({"PATH": "/bin"}) == {"PATH": "/bin"}  # by hand: not a service
