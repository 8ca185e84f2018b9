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


class Client:
    def __init__(self, rundir: str | Path | None = None, timeout: float = 5.0):
        self.rundir = bus.runtime_dir(rundir)
        self.timeout = timeout
        self.ctx = zmq.Context.instance()

    def call(self, cmd: str, timeout: float | None = None, **args):
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
