"""Child processes of the launcher: start, heartbeat, restart with backoff, give up.

A stage is restarted when its process exits, or when it has sent no telemetry
(its heartbeat) for ``heartbeat_timeout`` seconds (then it is killed first).

Core stages (:data:`emod.protocol.CORE_STAGES`: capture, infer, display) and optional ones
(power, mqtt) differ in one rule. More than ``max_restarts`` restarts of one *core* stage
within ``restart_window`` seconds means something is persistently wrong: the supervisor
gives up and the launcher exits non-zero so that systemd restarts the whole unit. An
optional stage is restarted with backoff (0.5 s doubling to ``OPTIONAL_MAX_BACKOFF``)
forever and never makes the launcher give up. A stage that exits with
:data:`emod.stages.base.EXIT_MISSING_MODULE` (an ImportError: a package is not installed)
is not counted as a crash either: it is retried every ``MISSING_MODULE_RETRY_S``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from emod.launcher.notify import child_env
from emod.protocol import CORE_STAGES
from emod.stages.base import EXIT_MISSING_MODULE
from emod.stages.lifeline import PARENT_ENV

OPTIONAL_MAX_BACKOFF = 60.0  # seconds between restarts of an optional stage that keeps failing
MISSING_MODULE_RETRY_S = 60.0  # a stage that cannot import a package: retry this often (a pip install may fix it)


class GiveUp(RuntimeError):
    pass


@dataclass
class StageProcess:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    last_heartbeat: float = 0.0
    restarts: int = 0
    restart_times: deque = field(default_factory=deque)
    next_start: float = 0.0
    backoff: float = 0.5
    last_exit: int | None = None
    seen_heartbeat: bool = False  # until the first one, a stage may take startup_grace to set up (model loading)
    core: bool = True  # capture, infer, display: counted by the give-up rule and the watchdog
    last_pid: int | None = None  # the pid of the process that exited last (its final error report may come late)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, stages: dict[str, list[str]], log, heartbeat_timeout: float = 5.0, max_restarts: int = 5,
                 restart_window: float = 60.0, healthy_age: float = 2.5):
        self.stages = {name: StageProcess(name, argv, core=name in CORE_STAGES) for name, argv in stages.items()}
        self.log = log
        self.heartbeat_timeout, self.max_restarts, self.restart_window = heartbeat_timeout, max_restarts, restart_window
        self.healthy_age = healthy_age
        self.startup_grace = 60.0

    def start_all(self) -> None:
        for st in self.stages.values():
            self._start(st)

    def _start(self, st: StageProcess) -> None:
        env = child_env()
        env.setdefault("MALLOC_ARENA_MAX", "2")
        env[PARENT_ENV] = str(os.getpid())  # the stage dies with this process (emod.stages.lifeline)  # fewer glibc arenas: less RSS in the threaded runtimes
        st.proc = subprocess.Popen(st.argv, stdin=subprocess.DEVNULL, env=env)  # stages never talk to systemd's notify socket
        st.started = st.last_heartbeat = time.monotonic()
        st.seen_heartbeat = False
        self.log.info("stage spawned", child=st.name, pid=st.proc.pid)

    def heartbeat(self, name: str, pid: int) -> None:
        st = self.stages.get(name)
        if st is not None and st.pid == pid:
            st.last_heartbeat = time.monotonic()
            st.seen_heartbeat = True

    def check(self) -> None:
        """Restart what died or hangs; raise :class:`GiveUp` after too many restarts."""
        now = time.monotonic()
        for st in self.stages.values():
            if st.proc is None:
                if now >= st.next_start:
                    self._start(st)
                continue
            code = st.proc.poll()
            limit = self.heartbeat_timeout if st.seen_heartbeat else max(self.heartbeat_timeout, self.startup_grace)
            if code is None and now - st.last_heartbeat > limit:
                self.log.warning("stage stuck, killing it", child=st.name, pid=st.pid, silent_s=round(now - st.last_heartbeat, 1))
                self._kill(st.proc)
                code = st.proc.poll()
            if code is None:
                if now - st.started > 30:
                    st.backoff = 0.5  # stable again
                continue
            st.last_exit = code
            st.last_pid = st.proc.pid
            st.proc = None
            st.restarts += 1
            if code == EXIT_MISSING_MODULE:  # not a crash: retrying at once would only loop; a pip install may fix it
                st.next_start = now + MISSING_MODULE_RETRY_S
                self.log.error("stage cannot start, a package is missing; retrying", child=st.name, exit=code,
                               restart_in=MISSING_MODULE_RETRY_S, core=st.core)
                continue
            st.restart_times.append(now)
            while st.restart_times and now - st.restart_times[0] > self.restart_window:
                st.restart_times.popleft()
            if st.core and len(st.restart_times) > self.max_restarts:
                raise GiveUp(f"stage {st.name} restarted {len(st.restart_times)} times in {self.restart_window:.0f} s (last exit {code})")
            st.next_start = now + st.backoff
            self.log.warning("stage exited, restarting", child=st.name, exit=code, restart_in=st.backoff, restarts=st.restarts,
                             core=st.core)
            st.backoff = min(st.backoff * 2, 10.0 if st.core else OPTIONAL_MAX_BACKOFF)

    def stage_healthy(self, st: StageProcess, now: float | None = None) -> bool:
        """Alive, with a heartbeat within ``healthy_age`` seconds."""
        now = time.monotonic() if now is None else now
        return st.alive and now - st.last_heartbeat <= self.healthy_age

    def healthy(self) -> bool:
        """Every stage, core and optional, is alive and heartbeating."""
        return all(self.stage_healthy(st) for st in self.stages.values())

    def core_healthy(self) -> bool:
        """Every core stage is alive and heartbeating (what the systemd watchdog means)."""
        return all(self.stage_healthy(st) for st in self.stages.values() if st.core)

    def core_up(self) -> bool:
        """Every core stage has started and sent its first heartbeat (readiness)."""
        return all(st.alive and st.seen_heartbeat for st in self.stages.values() if st.core)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            proc.kill()
            proc.wait(2)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass

    def stop_all(self, timeout: float = 3.0) -> None:
        procs = [st.proc for st in self.stages.values() if st.proc is not None and st.proc.poll() is None]
        for p in procs:
            try:
                p.send_signal(signal.SIGCONT)  # a frozen stage must be able to handle SIGTERM
                p.terminate()
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill(p)


def stage_argv(name: str, config_json: str) -> list[str]:
    return [sys.executable, "-m", "emod.cli.main", "stage", name, "--config-json", config_json]
