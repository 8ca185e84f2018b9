"""Control-socket client used by emod-ctl, emod-stats and emod-view.

Every call carries a request id and a poll timeout; a timeout raises
:class:`DaemonUnavailable` whose message says what to check.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import zmq

from emod import bus, protocol


class ClientError(Exception):
    exit_code = 1


class DaemonUnavailable(ClientError):
    exit_code = 3


class CommandFailed(ClientError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.exit_code = protocol.EXIT_CODES.get(code, 1)


class BadRuntimeDir(ClientError):
    """The runtime directory cannot hold emod's sockets (too long a path, a symlink): exit 78."""

    exit_code = protocol.EXIT_CONFIG


def check_runtime_dir(rundir: str | Path | None) -> Path:
    """The runtime directory a client should use, checked before it connects.

    Raises :class:`BadRuntimeDir` (78) for too long a path or a symlink, :class:`DaemonUnavailable` (3)
    when the directory does not exist. Every client CLI (emod-ctl, emod-stats, emod-view, emod events) uses it.
    """
    path = bus.runtime_dir(rundir)
    try:
        bus.check_client_dir(path)
    except bus.RuntimeDirError as e:
        raise BadRuntimeDir(str(e)) from None
    except FileNotFoundError:
        raise DaemonUnavailable(f"is emod running? no runtime directory {path} (use --runtime-dir or EMOD_RUNTIME_DIR)") from None
    return path


class Client:
    def __init__(self, rundir: str | Path | None = None, timeout: float = 5.0):
        self.rundir = bus.runtime_dir(rundir)
        self.timeout = timeout
        self.ctx = zmq.Context.instance()

    def call(self, cmd: str, timeout: float | None = None, **args):
        check_runtime_dir(self.rundir)
        path = bus.socket_path(self.rundir, protocol.CONTROL)
        if not path.exists():
            raise DaemonUnavailable(f"is emod running? no control socket at {path} (use --runtime-dir or EMOD_RUNTIME_DIR)")
        s = bus.connect(self.ctx, zmq.DEALER, self.rundir, protocol.CONTROL)
        try:
            rid = uuid.uuid4().hex[:12]
            s.send_multipart(protocol.encode(b"request", protocol.request(rid, cmd, args)))
            wait_ms = int((self.timeout if timeout is None else timeout) * 1000)
            while True:
                if not s.poll(wait_ms):
                    raise DaemonUnavailable(f"is emod running? no answer on {path} within {wait_ms / 1000:.0f} s")
                try:
                    _, rep, _ = protocol.decode(s.recv_multipart(), expect=b"reply")
                except protocol.ProtocolError as e:
                    raise ClientError(f"malformed reply from emod: {e}") from None
                if rep["id"] == rid:
                    break
            if not rep["ok"]:
                err = rep.get("error") or {}
                raise CommandFailed(err.get("code", protocol.E_INTERNAL), err.get("message", "unknown error"))
            return rep.get("result")
        finally:
            s.close()
