"""Telemetry aggregation in the launcher: the one place that builds the stats snapshot.

Stages report what happens where the work happens (telemetry messages); results
give end-to-end latency; power readings give watts. :meth:`Telemetry.snapshot`
returns the stable JSON shape that ``emod-stats --json`` prints and that each line
of the history file holds (documented in docs/usage.md).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

import psutil

from emod.launcher.emotion_tally import EmotionTally

SNAPSHOT_VERSION = 1


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return round(s[lo] + (s[hi] - s[lo]) * (k - lo), 3)


SOURCE_FAILING = ("error", "no signal", "frozen")  # source states that make emod unhealthy


def source_block(cap: dict) -> dict:
    """The snapshot's ``source``: ``name``, ``state`` (starting, ok, error, no signal, frozen, ended),
    ``error`` (the last error, null while it works), ``eos`` (a file source ended), ``frozen``, ``t_media``."""
    return {"name": cap.get("source"), "state": cap.get("state") or "starting", "error": cap.get("error"),
            "eos": bool(cap.get("eos")), "frozen": bool(cap.get("frozen")), "t_media": cap.get("t_media")}


def source_ok(cap: dict) -> bool:
    return (cap.get("state") or "starting") not in SOURCE_FAILING


def problems(supervisor, cap: dict, stage_stats: dict | None = None, parts: dict[str, str] | None = None) -> list[str]:
    """One line per reason emod is not healthy (empty when healthy): core stages, the source, and optional parts.

    ``stage_stats`` are the stages' latest telemetry (a stage that failed reports its ``error`` before it exits);
    ``parts`` are the launcher's own optional parts that fail right now (Prometheus, history, saved model choice).
    """
    stage_stats = stage_stats or {}
    out = []
    now = time.monotonic()
    for name, st in supervisor.stages.items():
        role = "" if st.core else " (optional)"
        if not st.alive:
            err = (stage_stats.get(name) or {}).get("error")
            out.append(f"stage {name}{role} is down (restarts {st.restarts})" + (f": {err}" if err else ""))
        elif not st.seen_heartbeat and now - st.last_heartbeat > supervisor.healthy_age:
            out.append(f"stage {name}{role} is starting ({now - st.started:.1f} s)")  # importing, loading its model
        elif now - st.last_heartbeat > supervisor.healthy_age:
            out.append(f"stage {name}{role} sent no heartbeat for {now - st.last_heartbeat:.1f} s")
    if not source_ok(cap):
        state = cap.get("state")
        what = "frozen: the same picture for seconds" if state == "frozen" else (cap.get("error") or state)
        out.append(f"source {cap.get('source')}: {what}")
    mq = stage_stats.get("mqtt")
    if "mqtt" in supervisor.stages and supervisor.stages["mqtt"].alive and mq and mq.get("state") not in (None, "connected", "connecting"):
        out.append(f"mqtt (optional): {mq['state']}" + (f": {mq['error']}" if mq.get("error") else ""))
    for part, what in (parts or {}).items():
        out.append(f"{part} (optional): {what}")
    return out


def status_line(snap: dict, model: str, source: str) -> str:
    """systemd's STATUS=: model, rates, power, the source's state and error, and what else fails (``; problems: ...``)."""
    w = (snap["power"] or {}).get("watts")
    src = snap["source"]
    line = (f"model {model}, {snap['processed_fps'] or 0:.1f} fps, inference {snap['inference_ms']['p50'] or 0:.1f} ms, "
            + (f"{w:.2f} W" if w is not None else "power n/a")
            + f"; source {src['name'] or source} {src['state']}" + (f": {src['error']}" if src["error"] else ""))
    others = [p for p in snap["problems"] if not p.startswith("source ")]
    return line + (f"; problems: {'; '.join(others)}" if others else "")


class Telemetry:
    def __init__(self, window: int = 300):
        self.started = time.monotonic()
        self.stage_stats: dict[str, dict] = {}
        self.latency = deque(maxlen=window)  # capture -> result, ms
        self.infer_ms = deque(maxlen=window)  # detect + classify, active model only
        self.model = ""
        self.power: dict | None = None
        self.results = 0
        self.first_result_t: float | None = None
        self.model_changed_t: float | None = None
        self.rejected_launcher: dict[str, int] = {}
        self._procs: dict[int, psutil.Process] = {}
        from emod.power.energy import EnergyAttributor

        self.energy = EnergyAttributor()
        self.emotions = EmotionTally()

    def on_stage(self, h: dict) -> None:
        self.stage_stats[h["stage"]] = {"pid": h["pid"], "t": time.monotonic(), **h["stats"]}
        if h["stage"] == "display":
            self.emotions.on_display(h["pid"], h["stats"].get("emotions"))

    def on_result(self, r: dict) -> None:
        now = time.monotonic()
        if r["model"] != self.model:
            self.model = r["model"]
            self.infer_ms.clear()
            self.model_changed_t = now
        self.results += 1
        if self.first_result_t is None:
            self.first_result_t = now
        self.latency.append((r["t_done"] - r["t_capture"]) * 1e3)
        self.infer_ms.append(r["detect_ms"] + r["classify_ms"])
        self.energy.add_inference(now, r["model"], 1)

    def on_power(self, h: dict) -> None:
        self.power = {"watts": h["watts"], "backend": h["backend"]}
        self.energy.add_power(time.monotonic(), h["watts"])

    def reject(self, socket_name: str) -> None:
        self.rejected_launcher[socket_name] = self.rejected_launcher.get(socket_name, 0) + 1

    def _proc_usage(self, pid: int | None) -> tuple[float | None, float | None]:
        if pid is None:
            return None, None
        try:
            p = self._procs.get(pid)
            if p is None:
                p = self._procs[pid] = psutil.Process(pid)
                p.cpu_percent(None)
            return round(p.memory_info().rss / 2**20, 1), round(p.cpu_percent(None), 1)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._procs.pop(pid, None)
            return None, None

    def snapshot(self, supervisor, active_model: str, parts: dict[str, str] | None = None) -> dict:
        """The snapshot; ``parts``: the launcher's optional parts failing now (part -> what), listed in ``problems``."""
        stages = {}
        rejected: dict[str, int] = {f"launcher.{k}": v for k, v in self.rejected_launcher.items()}
        total_rss = 0.0
        for name, st in supervisor.stages.items():
            s = self.stage_stats.get(name, {})
            rss, cpu = self._proc_usage(st.pid if st.alive else None)
            total_rss += rss or 0.0
            for sock, n in (s.get("rejected") or {}).items():
                rejected[f"{name}.{sock}"] = n
            stages[name] = {"pid": st.pid, "alive": st.alive, "restarts": st.restarts, "fps": s.get("fps"),
                            "rss_mb": rss, "cpu_percent": cpu}
        own_rss, own_cpu = self._proc_usage(os.getpid())
        stages["launcher"] = {"pid": os.getpid(), "alive": True, "restarts": 0, "fps": None, "rss_mb": own_rss, "cpu_percent": own_cpu}
        total_rss += own_rss or 0.0
        cap, inf = self.stage_stats.get("capture", {}), self.stage_stats.get("infer", {})
        probs = problems(supervisor, cap, self.stage_stats, parts) + mqtt_problems(self.stage_stats.get("mqtt"), supervisor)
        return {
            "version": SNAPSHOT_VERSION,
            "time": time.time(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model": active_model,
            "stages": stages,
            # capture reports its count once a second, infer the capture sequence number of every frame it took:
            # the larger is the count of frames captured so far (never fewer than were processed and dropped)
            "frames": {"captured": max(cap.get("frames", 0), inf.get("last_seq") or 0), "processed": inf.get("processed", 0),
                       "dropped": inf.get("dropped", 0)},
            "processed_fps": inf.get("fps"),
            "latency_ms": {"p50": percentile(self.latency, 50), "p95": percentile(self.latency, 95)},
            "inference_ms": {"model": self.model or None, "p50": percentile(self.infer_ms, 50), "p95": percentile(self.infer_ms, 95)},
            "faces_per_s": inf.get("faces_per_s"),
            "power": self.power,
            "energy_per_inference_j": self.energy.joules_per_inference(),
            "rejected": {"total": sum(rejected.values()), "by_socket": rejected},
            "total_rss_mb": round(total_rss, 1),
            "faces_dropped": inf.get("faces_dropped", 0),
            "source": source_block(cap),
            "healthy": not probs,  # every part works: core stages, the source and each enabled optional part
            "problems": probs,
            "emotions": self.emotions.snapshot(),
            "mqtt": _mqtt(self.stage_stats.get("mqtt")) if "mqtt" in supervisor.stages else None,
        }


def mqtt_problems(s: dict | None, supervisor) -> list[str]:
    """The mqtt stage's device id clash, while it lasts (another emod publishes under the same device id)."""
    if "mqtt" not in supervisor.stages or not supervisor.stages["mqtt"].alive or not (s or {}).get("clash"):
        return []
    return [f"mqtt (optional): {s['clash']}"]


def _mqtt(s: dict | None) -> dict:
    s = s or {}
    return {k: s.get(k) for k in ("connected", "state", "error", "connects", "published", "dropped", "client_id", "clash")}


class History:
    """Appends one JSON line per interval to ``path``; rotates by size (to ``path.1``).

    Optional and soft: a write that fails (ENOSPC, EROFS, EIO...) is undone (the file is cut back to
    its last whole line), logged once, and turns the history off; :attr:`error` says why (the
    launcher lists it in ``problems``). Every ``retry_s`` seconds it tries again, and when a line
    gets written it logs that the history is back on. Never raises.
    """

    def __init__(self, path: Path, max_bytes: int, log=None, retry_s: float = 30.0, clock=time.monotonic):
        self.path, self.max_bytes, self.log, self.retry_s, self.clock = Path(path), max_bytes, log, retry_s, clock
        self.fd: int | None = None
        self.error: str | None = None
        self.retry_at = 0.0

    def _open(self) -> None:
        from emod import dirs

        if os.path.lexists(self.path):
            dirs.check_file(self.path, "telemetry history")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size > 0:
                with open(self.path, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        self._write(fd, b"\n")  # end the line a crash cut short, so the next record stands alone
        except OSError:
            os.close(fd)
            raise
        self.fd = fd

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        before = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):
                raise OSError(28, "No space left on device (short write)")
        except OSError:
            try:
                os.ftruncate(fd, before)  # no half-written line left behind
            except OSError:
                pass
            raise

    def append(self, snapshot: dict) -> bool:
        """Write one line; False when the history is off (it failed, and the retry time has not come)."""
        now = self.clock()
        if self.fd is None and now < self.retry_at:
            return False
        line = (json.dumps(snapshot, separators=(",", ":")) + "\n").encode()
        try:
            if self.fd is None:
                self._open()
            if os.fstat(self.fd).st_size + len(line) > self.max_bytes:
                os.close(self.fd)
                self.fd = None
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                self._open()
            self._write(self.fd, line)
        except OSError as e:
            self._off(e, now)
            return False
        if self.error is not None:
            self.error = None
            if self.log is not None:
                self.log.info("telemetry history back on", path=str(self.path))
        return True

    def _off(self, e: OSError, now: float) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        self.retry_at = now + self.retry_s
        first = self.error is None
        self.error = f"off, cannot write {self.path}: {e.strerror or e}; retrying every {self.retry_s:.0f} s"
        if first and self.log is not None:
            self.log.warning("telemetry history off; the sensor keeps running", path=str(self.path), error=str(e),
                             retry_s=self.retry_s)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
