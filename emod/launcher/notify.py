"""A dependency-free ``sd_notify(3)`` client for the ``Type=notify`` launcher.

systemd passes the address of its notification socket in ``NOTIFY_SOCKET``: a file
system path (``/run/systemd/notify``) or an abstract-namespace name written ``@name``.
Each message is one datagram of newline-separated ``KEY=VALUE`` assignments, e.g.
``READY=1`` or ``STATUS=3 stages up``. ``WatchdogSec=`` sets ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``, the process meant to ping); the service must send ``WATCHDOG=1``
more often than that, conventionally every half of it (:attr:`Notifier.watchdog_interval`).

Without ``NOTIFY_SOCKET`` (run by hand, in tests) every method is a no-op returning
False. A failed send never raises and logs nothing: it returns False.

    n = Notifier()
    n.ready()
    while running:
        ...
        n.watchdog()
    n.stopping()
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

#: Variables systemd sets for the main process only; strip them from children's environments.
NOTIFY_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) without the notify variables, for stage processes.

    Under systemd (``NOTIFY_SOCKET`` set) it adds ``EMOD_UNDER_SERVICE=1`` (:data:`emod.protocol.SERVICE_ENV`).
    """
    from emod.protocol import SERVICE_ENV

    env = os.environ if env is None else env
    out = {k: v for k, v in env.items() if k not in NOTIFY_ENV_VARS}
    if env.get("NOTIFY_SOCKET"):
        out[SERVICE_ENV] = "1"
    return out


def _address(value: str | None) -> str | bytes | None:
    """The ``sendto`` address of a ``NOTIFY_SOCKET`` value; None when unset or unsupported."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()  # abstract namespace: leading NUL byte
    return None  # e.g. vsock:CID:PORT, not supported here


def _int(value: str | int | None) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


class Notifier:
    """Sends state changes and watchdog pings to systemd; a no-op when not run by systemd.

    ``socket_path``, ``watchdog_usec`` and ``watchdog_pid`` default to ``NOTIFY_SOCKET``,
    ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` read from ``env`` (default ``os.environ``) at
    construction time.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        watchdog_usec: int | str | None = None,
        watchdog_pid: int | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.socket_path = socket_path if socket_path is not None else env.get("NOTIFY_SOCKET")
        self._address = _address(self.socket_path)
        self._watchdog_usec = _int(watchdog_usec if watchdog_usec is not None else env.get("WATCHDOG_USEC"))
        self._watchdog_pid = _int(watchdog_pid if watchdog_pid is not None else env.get("WATCHDOG_PID"))

    @property
    def enabled(self) -> bool:
        """True when a usable notification socket address is known."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``).

        None when no watchdog is configured, or when ``WATCHDOG_PID`` names another process.
        """
        if not self._watchdog_usec or self._watchdog_usec <= 0:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def send(self, **fields: object) -> bool:
        """Send one message of ``KEY=VALUE`` lines (keys upper-cased, True -> 1); True if it was sent."""
        if self._address is None or not fields:
            return False
        lines = []
        for key, value in fields.items():
            if value is True:
                value = 1
            elif value is False:
                value = 0
            # a value cannot span lines: the protocol is newline separated
            text = str(value).replace("\r", " ").replace("\n", " ")
            lines.append(f"{key.upper()}={text}")
        data = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                return sock.sendto(data, self._address) == len(data)
        except (OSError, ValueError):
            return False

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (startup finished, or a reload finished), with an optional status line."""
        return self.send(READY=1) if status is None else self.send(READY=1, STATUS=status)

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the keep-alive ping; send every :attr:`watchdog_interval` seconds."""
        return self.send(WATCHDOG=1)

    def status(self, text: str) -> bool:
        """``STATUS=text``: a free-form one-line status shown by ``systemctl status``."""
        return self.send(STATUS=text)

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.send(STOPPING=1)

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (required by systemd >= 253); send ``READY=1`` when done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING=1, MONOTONIC_USEC=usec)
