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


def problems(supervisor, cap: dict) -> list[str]:
    """One line per reason emod is not healthy (empty when healthy)."""
    out = []
    now = time.monotonic()
    for name, st in supervisor.stages.items():
        if not st.alive:
            out.append(f"stage {name} is down (restarts {st.restarts})")
        elif now - st.last_heartbeat > supervisor.healthy_age:
            out.append(f"stage {name} sent no heartbeat for {now - st.last_heartbeat:.1f} s")
    if not source_ok(cap):
        state = cap.get("state")
        what = "frozen: the same picture for seconds" if state == "frozen" else (cap.get("error") or state)
        out.append(f"source {cap.get('source')}: {what}")
    return out


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

    def snapshot(self, supervisor, active_model: str) -> dict:
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
            "healthy": supervisor.healthy() and source_ok(cap),
            "problems": problems(supervisor, cap) + mqtt_problems(self.stage_stats.get("mqtt"), supervisor),
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
    return {k: s.get(k) for k in ("connected", "connects", "published", "dropped", "client_id", "clash")}


class History:
    """Appends one JSON line per interval; rotates by size; each line flushed so a crash loses at most one."""

    def __init__(self, path: Path, max_bytes: int):
        self.path, self.max_bytes = Path(path), max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(self.path):
            from emod import dirs

            dirs.check_file(self.path, "telemetry history")
        self.f = open(self.path, "a", buffering=1)
        if self.f.tell() > 0:
            with open(self.path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self.f.write("\n")  # end the line a crash cut short, so the next record stands alone

    def append(self, snapshot: dict) -> None:
        line = json.dumps(snapshot, separators=(",", ":")) + "\n"
        if self.f.tell() + len(line) > self.max_bytes:
            self.f.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self.f = open(self.path, "a", buffering=1)
        self.f.write(line)
        self.f.flush()

    def close(self) -> None:
        self.f.close()
