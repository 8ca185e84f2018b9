"""Checks of the world a config meets, before start: one place, used by ``emod validate`` and ``emod doctor``.

:func:`config.load <emod.config.load>` checks the config itself (keys, types, rules across keys). These
check what it points at, which can change after start:

* ``mqtt.password_file`` exists, is readable by the user running this, and its first line is not empty;
* ``mqtt.ca_file`` exists and is readable (with ``mqtt.tls = true``);
* ``telemetry.prometheus`` can be bound: the port is free (or served by emod itself), the address is on this host;
* ``daemon.runtime_dir``: every socket path fits a unix socket address (107 characters).

``emod validate`` exits 78 listing them (one line each). ``emod run`` does not refuse for the optional
parts (MQTT, Prometheus): they are optional, so at run time the same failures are reported in
``problems`` and retried while the sensor runs.
"""

from __future__ import annotations

import errno
import socket


def prometheus_problem(addr: str) -> str | None:
    """Why ``telemetry.prometheus`` = ADDR cannot be served here, or None (free, or already served by an emod)."""
    from emod.launcher.prometheus import MetricsError, parse_address

    try:
        host, port = parse_address(addr)
    except MetricsError:
        return None  # malformed: a config error, reported by config.check
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"telemetry.prometheus: {addr!r}: host {host!r} is unknown ({e.strerror})"
    family, _, _, _, sockaddr = infos[0]
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no conflict
        s.bind(sockaddr)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            if _serves_emod_metrics(sockaddr, family):
                return None  # this emod (or another one) already serves it: not a config error
            return (f"telemetry.prometheus: {addr!r}: port {port} is already in use by another program "
                    f"(ss -ltnp 'sport = :{port}' names it; node_exporter uses 9100)")
        if e.errno == errno.EADDRNOTAVAIL:
            return f"telemetry.prometheus: {addr!r}: {host} is not an address of this host"
        if e.errno == errno.EACCES:
            return f"telemetry.prometheus: {addr!r}: port {port} needs root (use a port above 1023)"
        return f"telemetry.prometheus: {addr!r}: cannot bind: {e.strerror or e}"
    finally:
        s.close()
    return None


def _serves_emod_metrics(sockaddr, family) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as c:
            c.settimeout(1.0)
            c.connect(sockaddr)
            c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = b""
            while len(data) < 1 << 20 and (chunk := c.recv(65536)):  # HTTP/1.0: the server closes after the body
                data += chunk
                if b"emod_" in data:
                    return True
            return False
    except OSError:
        return False


def runtime_dir_problem(value: str | None) -> str | None:
    """Why the runtime directory cannot hold emod's sockets (too long a path), or None."""
    from emod import bus

    try:
        bus.check_path_length(bus.runtime_dir(value or None))
    except bus.RuntimeDirError as e:
        return f"daemon.runtime_dir: {e}"
    return None


def problems(cfg) -> list[str]:
    """Every problem of this kind for CFG (an :class:`emod.config.Config`), one line each; empty when none."""
    from emod.mqtt import CredentialError, check_ca_file, read_password

    out: list[str] = []
    m = cfg.mqtt
    if m.enabled:
        if m.password_file:
            try:
                read_password(m.password_file)
            except CredentialError as e:
                out.append(str(e))
        if m.tls and m.ca_file:
            try:
                check_ca_file(m.ca_file)
            except CredentialError as e:
                out.append(str(e))
    if cfg.telemetry.prometheus and (p := prometheus_problem(cfg.telemetry.prometheus)):
        out.append(p)
    if p := runtime_dir_problem(cfg.daemon.runtime_dir):
        out.append(p)
    return out
