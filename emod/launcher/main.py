"""The launcher (``emod run``): starts and supervises the stages, serves the control socket,
aggregates telemetry, writes the history, and speaks sd_notify.

SIGTERM/SIGINT go through the same path as the ``quit`` command, SIGHUP as ``reload``.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import time
from pathlib import Path

import zmq

from emod import bus, config, dirs, protocol, remote
from emod.launcher import control
from emod.launcher.notify import Notifier
from emod.launcher.statefiles import DirInUse, lock_dir, write_atomic
from emod.launcher.supervisor import GiveUp, Supervisor, stage_argv
from emod.launcher.telemetry import History, Telemetry, status_line

SET_MODEL_TIMEOUT = 60.0


class AlreadyRunning(RuntimeError):
    pass


class Launcher:
    def __init__(self, cfg: config.Config, log, config_path: str | None = None, cli_overrides: dict | None = None,
                 duration: float | None = None, explicit_model: bool = False):
        self.cfg, self.log = cfg, log
        self.config_path, self.cli_overrides = config_path, cli_overrides or {}
        self.duration = duration
        self.rundir = bus.runtime_dir(cfg.daemon.runtime_dir or None)
        self.state_dir = bus.state_dir(cfg.daemon.state_dir or None)
        cfg.daemon.runtime_dir, cfg.daemon.state_dir = str(self.rundir), str(self.state_dir)
        self.explicit_model = explicit_model
        self.running = True
        self.ready_sent = False
        self.first_result_seen = False
        self.t_start = time.monotonic()
        self.notifier = Notifier()
        self.ids = itertools.count(1)
        self.pending: dict[str, tuple[bytes, str, str, float]] = {}
        self.expired: dict[str, tuple[bytes, str, str, float]] = {}  # infer request id -> (client identity, client id, model, deadline)
        self.telemetry = Telemetry()
        self.active_model = cfg.infer.model
        self.history: History | None = None
        self.parts: dict[str, str] = {}  # optional part -> what fails right now (listed in problems)
        self.metrics_server = None
        self.metrics_retry_at, self.metrics_backoff = 0.0, 1.0
        self.state_lock: int | None = None  # fd of the state directory, flocked while this instance runs

    # --- set-up ---------------------------------------------------------------------------------------------
    def _lock(self) -> None:
        bus.check_path_length(self.rundir)
        try:
            dirs.ensure_dir(self.rundir, "runtime directory")
        except dirs.UnsafePath as e:
            raise bus.RuntimeDirError(str(e)) from None
        fd = os.open(self.rundir / "emod.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self.lock_file = os.fdopen(fd, "r+")
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock_file.seek(0)
            pid = self.lock_file.read().strip()
            self.lock_file.close()
            raise AlreadyRunning(f"another emod is running with runtime directory {self.rundir}"
                                 + (f" (pid {pid})" if pid.isdigit() else "")) from None
        self.lock_file.truncate(0)  # only the holder writes its pid
        self.lock_file.write(f"{os.getpid()}\n")
        self.lock_file.flush()

    def _initial_model(self) -> str:
        from emod.models import registry

        saved = self.state_dir / "model"
        candidates = [self.cfg.infer.model]
        if not self.explicit_model and os.path.lexists(saved):
            candidates.insert(0, dirs.check_file(saved, "persisted model choice").read_text().strip())
        errors = []
        for name in candidates:
            try:
                registry.verify(registry.find(name, self.state_dir))
                if name != self.cfg.infer.model:
                    self.log.info("saved model choice overrides the config", model=name, config_model=self.cfg.infer.model,
                                  saved_in=str(saved), hint="emod run --model NAME uses NAME instead")
                return name
            except registry.ModelError as e:
                errors.append(str(e))
                self.log.warning("model unusable", model=name, error=str(e))
        raise registry.ModelError("; ".join(errors))

    def _stage_argvs(self) -> dict[str, list[str]]:
        js = self.cfg.to_json()
        names = [*protocol.STAGES, *(["mqtt"] if self.cfg.mqtt.enabled else [])]  # optional stages: when enabled
        return {name: stage_argv(name, js) for name in names}

    def _lock_state_dir(self) -> None:
        """One emod per state directory (its history and model choice): DirInUse names the other's pid."""
        try:
            self.state_lock = lock_dir(self.state_dir, "state directory")
        except DirInUse as e:
            raise AlreadyRunning(str(e)) from None

    def _metrics(self, now: float) -> None:
        """Serve Prometheus metrics (optional): a port that cannot be bound is a problem, retried with backoff."""
        if not self.cfg.telemetry.prometheus or self.metrics_server is not None or now < self.metrics_retry_at:
            return
        from emod.launcher.prometheus import MetricsServer

        try:
            self.metrics_server = MetricsServer(self.cfg.telemetry.prometheus, self.snapshot)
        except OSError as e:
            if "prometheus" not in self.parts:
                self.log.warning("Prometheus endpoint unavailable; the sensor keeps running, retrying with backoff", error=str(e))
            self.parts["prometheus"] = f"{e}; retrying"
            self.metrics_retry_at, self.metrics_backoff = now + self.metrics_backoff, min(self.metrics_backoff * 2, 60.0)
            return
        if self.parts.pop("prometheus", None) is not None:
            self.log.info("Prometheus endpoint serving again", url=self.metrics_server.url)
        self.metrics_backoff = 1.0

    def setup(self) -> None:
        self._lock()
        dirs.ensure_dir(self.state_dir, "state directory")
        self._lock_state_dir()
        self._metrics(time.monotonic())
        self.active_model = self.cfg.infer.model = self._initial_model()
        ctx = self.ctx = zmq.Context.instance()
        self.tel_sock = bus.bind(ctx, zmq.PULL, self.rundir, protocol.TELEMETRY, hwm=1000)
        self.ctl_sock = bus.bind(ctx, zmq.ROUTER, self.rundir, protocol.CONTROL, hwm=1000)
        self.res_sock, _ = remote.subscribe(ctx, self.cfg, self.rundir, protocol.RESULTS, hwm=100, topic=b"result")
        self.pow_sock = bus.connect(ctx, zmq.SUB, self.rundir, protocol.POWER, hwm=10, topic=b"power")
        self.infer_ctl = ctx.socket(zmq.DEALER)
        self.infer_ctl.setsockopt(zmq.LINGER, 0)
        self.infer_ctl.setsockopt(zmq.IMMEDIATE, 1)  # never queue requests for an infer stage that is not there
        self.infer_ctl.connect(bus.endpoint(self.rundir, protocol.INFER_CONTROL))
        self.poller = zmq.Poller()
        for s in (self.tel_sock, self.ctl_sock, self.res_sock, self.pow_sock, self.infer_ctl):
            self.poller.register(s, zmq.POLLIN)
        sv = self.cfg.supervisor
        self.supervisor = Supervisor(self._stage_argvs(), self.log, sv.heartbeat_timeout, sv.max_restarts, sv.restart_window,
                                     healthy_age=max(2.5, 2.5 * self.cfg.telemetry.interval))
        self.history = None
        if self.cfg.telemetry.history:
            self.history = History(self.state_dir / "telemetry.jsonl", int(self.cfg.telemetry.history_max_mb * 2**20), self.log)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        self._hup = False
        self.supervisor.start_all()
        self.log.info("emod started", runtime_dir=str(self.rundir), state_dir=str(self.state_dir), model=self.active_model,
                      source=self.cfg.capture.source)

    def _on_stop_signal(self, signum, frame) -> None:
        self.running = False

    def _on_hup(self, signum, frame) -> None:
        self._hup = True

    # --- the loop -------------------------------------------------------------------------------------------
    def run(self) -> int:
        self.setup()
        t_end = time.monotonic() + self.duration if self.duration else None
        next_report = time.monotonic()
        next_watchdog = time.monotonic()
        code = 0
        try:
            while self.running:
                for sock, _ in self.poller.poll(100):
                    self._dispatch(sock)
                if self._hup:
                    self._hup = False
                    try:
                        self.reload()
                    except control.CommandError:
                        pass  # logged; the running configuration stays
                self.supervisor.check()
                now = time.monotonic()
                self._expire_pending(now)
                self._metrics(now)
                if not self.ready_sent and self.supervisor.core_up():
                    self._ready()
                if now >= next_report:
                    next_report = now + self.cfg.telemetry.interval
                    try:
                        self._report()
                    except Exception as e:  # telemetry must never take the daemon down
                        self.log.error("telemetry report failed", error=f"{type(e).__name__}: {e}")
                wd = self.notifier.watchdog_interval
                if wd and self.cfg.supervisor.watchdog and now >= next_watchdog and self.supervisor.core_healthy():
                    self.notifier.watchdog()
                    next_watchdog = now + min(wd, 1.0)
                if t_end and now >= t_end:
                    self.log.info("duration reached", seconds=self.duration)
                    break
        except GiveUp as e:
            self.log.error("giving up", reason=str(e))
            code = 1
        finally:
            self.shutdown()
        return code

    def _dispatch(self, sock) -> None:
        for _ in range(1000):  # bounded, so a flood cannot starve the rest of the loop
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if sock is self.ctl_sock:
                self._on_control(parts)
            elif sock is self.infer_ctl:
                self._on_infer_reply(parts)
            else:
                name = {id(self.tel_sock): "telemetry", id(self.res_sock): "results", id(self.pow_sock): "power"}[id(sock)]
                try:
                    topic, h, _ = protocol.decode(parts)
                except protocol.ProtocolError:
                    self.telemetry.reject(name)
                    continue
                if topic == b"telemetry" and name == "telemetry":
                    st = self.supervisor.stages.get(h["stage"])
                    if st is not None and st.pid is None and st.last_pid == h["pid"] and "error" in h["stats"]:
                        self.telemetry.on_stage(h)  # a stage's last word, after the supervisor saw it exit
                    elif st is not None and st.pid == h["pid"]:
                        self.telemetry.on_stage(h)
                        self.supervisor.heartbeat(h["stage"], h["pid"])
                elif topic == b"result" and name == "results":
                    self.telemetry.on_result(h)
                    if not self.first_result_seen:  # the operator's sign that frames flow end to end
                        self.first_result_seen = True
                        self.log.info("first result", model=h.get("model"), seq=h.get("seq"), faces=len(h.get("faces") or []),
                                      seconds_since_start=round(time.monotonic() - self.t_start, 2))
                elif topic == b"power" and name == "power":
                    self.telemetry.on_power(h)
                else:
                    self.telemetry.reject(name)

    def _ready(self) -> None:
        """READY=1: the core stages are up and the control socket (served by this loop) answers; frames or not."""
        self.ready_sent = True
        snap = self.snapshot()
        self.notifier.ready(self._status_line(snap))
        self.log.info("ready", model=self.active_model, source=snap["source"]["name"], source_state=snap["source"]["state"],
                      source_error=snap["source"]["error"], problems=snap["problems"])

    def _on_control(self, parts: list) -> None:
        identity, rest = parts[0], parts[1:]
        if rest and rest[0] == b"":
            rest = rest[1:]  # a REQ client's envelope: replies carry it back
            identity = [identity, b""]
        try:
            _, req, _ = protocol.decode(rest, expect=b"request")
        except protocol.ProtocolError as e:
            self.telemetry.reject("control")
            self._reply(identity, protocol.reply_error("", protocol.E_BAD_REQUEST, str(e)))
            return
        reply = control.execute(self, req, identity)
        if reply is not None:
            self._reply(identity, reply)

    def _reply(self, identity: bytes, body: dict) -> None:
        if not identity:
            return  # the caller already got its timeout
        try:
            head = identity if isinstance(identity, list) else [identity]
            self.ctl_sock.send_multipart([*head, *protocol.encode(b"reply", body)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the client went away

    # --- set-model ------------------------------------------------------------------------------------------
    def forward_set_model(self, name: str, client_id: str, identity: bytes) -> None:
        if self.pending:
            raise control.CommandError(protocol.E_BUSY, "a model change is already in progress")
        rid = f"l{next(self.ids)}"
        try:
            self.infer_ctl.send_multipart(protocol.encode(b"request", protocol.request(rid, "set-model", {"name": name})), zmq.NOBLOCK)
        except zmq.Again:
            raise control.CommandError(protocol.E_BUSY, "the infer stage is not running right now; try again") from None
        self.pending[rid] = (identity, client_id, name, time.monotonic() + SET_MODEL_TIMEOUT)

    def _on_infer_reply(self, parts: list) -> None:
        try:
            _, rep, _ = protocol.decode(parts, expect=b"reply")
        except protocol.ProtocolError:
            self.telemetry.reject("infer-control")
            return
        entry = self.pending.pop(rep["id"], None) or self.expired.pop(rep["id"], None)
        if entry is None:
            return
        identity, client_id, name, _ = entry
        if rep["ok"]:
            self.active_model = name
            self.cfg.infer.model = name
            self.supervisor.stages["infer"].argv = stage_argv("infer", self.cfg.to_json())  # a restart keeps the model
            result = dict(rep.get("result") or {})
            try:
                write_atomic(self.state_dir / "model", name + "\n")
                self.parts.pop("saved model choice", None)
                result["saved"] = True
            except OSError as e:  # a full or read-only SD card: the switch stands, only its persistence is lost
                why = e.strerror or str(e)
                self.parts["saved model choice"] = f"{name} is active but not saved in {self.state_dir / 'model'}: {why}"
                self.log.warning("model choice not saved; the model is switched", model=name, error=str(e))
                result["saved"], result["not_saved"] = False, why
            self.log.info("model changed", model=name, saved=result["saved"])
            self._reply(identity, protocol.reply_ok(client_id, result))
        else:
            err = rep.get("error") or {}
            self.log.warning("model change refused", model=name, error=err.get("message"))
            self._reply(identity, protocol.reply_error(client_id, err.get("code", protocol.E_MODEL_FAILED), err.get("message", "failed")))

    def _expire_pending(self, now: float) -> None:
        for rid, (identity, client_id, name, deadline) in list(self.pending.items()):
            if now > deadline:
                del self.pending[rid]
                self.expired[rid] = (b"", client_id, name, deadline)  # a late success still updates the state
                self._reply(identity, protocol.reply_error(client_id, protocol.E_TIMEOUT, f"infer stage did not load {name!r} in {SET_MODEL_TIMEOUT:.0f} s"))

    # --- telemetry, reload, shutdown ---------------------------------------------------------------------------
    def snapshot(self) -> dict:
        parts = dict(self.parts)
        if self.history is not None and self.history.error:
            parts["history"] = self.history.error
        snap = self.telemetry.snapshot(self.supervisor, self.active_model, parts)
        disp = self.telemetry.stage_stats.get("display", {})
        # enabled false (display.preview): viewers say "preview disabled" at once instead of waiting
        snap["preview"] = {"enabled": self.cfg.display.preview, "viewers": disp.get("viewers", 0), "encoded": disp.get("encoded", 0)}
        return snap

    def _report(self) -> None:
        self.telemetry.emotions.close_interval()  # one interval of emotions per history line
        snap = self.snapshot()
        if self.metrics_server is not None:
            self.metrics_server.update(snap)  # scrapes serve this snapshot; no second thread touches Telemetry
        if self.history is not None:
            self.history.append(snap)
        self.notifier.status(self._status_line(snap))

    def _status_line(self, snap: dict) -> str:
        return status_line(snap, self.active_model, self.cfg.capture.source)

    def reload(self) -> dict:
        """Re-read the config file; restart the stages whose sections changed. A bad file changes nothing."""
        self.notifier.reloading()
        try:
            new = config.load(self.config_path, overrides=self.cli_overrides)
        except config.ConfigError as e:
            self.log.error("reload refused, config unchanged", error=str(e))
            self.notifier.ready()
            raise control.CommandError(protocol.E_BAD_REQUEST, str(e)) from None
        new.daemon.runtime_dir, new.daemon.state_dir = self.cfg.daemon.runtime_dir, self.cfg.daemon.state_dir
        new.infer.model = self.active_model
        old = self.cfg
        self.cfg = new
        section_of = {"capture": "capture", "infer": "infer", "display": "display", "power": "power", "mqtt": "mqtt"}
        restarted = []
        for stage, section in section_of.items():
            if stage not in self.supervisor.stages:
                continue  # an optional stage that is off (switching it on or off takes a restart)
            changed = getattr(old, section) != getattr(new, section) or old.telemetry != new.telemetry
            if stage == "display" and old.remote != new.remote:
                changed = True
            if changed:
                st = self.supervisor.stages[stage]
                st.argv = stage_argv(stage, new.to_json())
                if st.alive:
                    st.proc.terminate()
                    st.restarts -= 1  # a requested restart is not a crash
                restarted.append(stage)
        sv = new.supervisor
        self.supervisor.heartbeat_timeout, self.supervisor.max_restarts, self.supervisor.restart_window = (
            sv.heartbeat_timeout, sv.max_restarts, sv.restart_window)
        self.supervisor.healthy_age = max(2.5, 2.5 * new.telemetry.interval)
        self.log.info("config reloaded", restarted=restarted)
        self.notifier.ready()
        return {"restarted": restarted}

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.log.info("stopping")
        self.supervisor.stop_all()
        if self.metrics_server is not None:
            self.metrics_server.close()
        for s in (self.tel_sock, self.ctl_sock, self.res_sock, self.pow_sock, self.infer_ctl):
            s.close()
        if self.history is not None:
            self.history.close()
        if self.state_lock is not None:
            os.close(self.state_lock)
        for name in protocol.ENDPOINTS:
            try:
                bus.socket_path(self.rundir, name).unlink()
            except FileNotFoundError:
                pass
        try:
            (self.rundir / "emod.lock").unlink()
        except FileNotFoundError:
            pass
        self.lock_file.close()
        self.log.info("stopped")
