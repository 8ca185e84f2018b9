"""Summaries of the telemetry history (``STATE_DIR/telemetry.jsonl``) for ``emod-stats --history``.

The launcher appends one snapshot (:meth:`emod.launcher.telemetry.Telemetry.snapshot`) per
interval and rotates the file to ``telemetry.jsonl.1`` by size. :func:`summarize` reads the
last MINUTES of it, reaching into the rotated file when the window starts before the current
file does. A line that is not valid JSON (the last one, when the daemon died mid-write) is
skipped and counted, never fatal; a record the next run appended right behind such a partial
line (no newline in between) is recovered.

The window ends at the newest record (so a stopped daemon's last run can still be
summarised; ``age_s`` says how old that record is) unless ``until`` is given. The text says
"last N min" only while the file is live (its newest record is younger than ``LIVE_S`` or five
record intervals); otherwise it names the file's age ("N min up to its newest record, 27 min
ago: not live"), so an old or another daemon's file is never read as now.

What the summary holds, over the records in the window:

* per-stage fps mean/min, and restarts (delta);
* processed fps mean/min;
* capture->result latency and inference time: the snapshot holds rolling p50/p95 values,
  so ``p50`` is the median of the per-interval p50 values and ``p95`` the 95th percentile
  of the per-interval p95 values;
* frames captured/processed/dropped and rejected messages: deltas of the counters, from
  the last record before the window (or the first in it). A counter that goes down (a
  stage or the launcher restarted) counts from zero again;
* power mean/min/max watts and backend; energy per inference (the daemon's cumulative
  value from the newest record, per model) and the window's joules per processed frame
  (mean watts x span / processed frames, whole-system power);
* emotions: face-seconds per smoothed label and tracks seen, summed over the records'
  intervals, and each label's share of the face-time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from emod.launcher.emotion_tally import format_shares, sum_intervals
from emod.launcher.telemetry import percentile

#: A history whose newest record is older than this (s), or than five record intervals, is not live.
LIVE_S = 60.0

#: Counter paths (in a snapshot) whose window deltas the summary reports.
FRAME_KINDS = ("captured", "processed", "dropped")


def _parse(path: Path) -> tuple[list[dict], int]:
    """Every valid record of one history file, and how many lines were not valid JSON objects."""
    records, bad = [], 0
    with open(path, "rb") as f:
        data = f.read()
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except ValueError:  # a truncated line (crash mid-write) or garbage
            bad += 1
            # after a crash mid-write the next run appends right behind the partial line: keep its record
            start = raw.rfind(b'{"version"', 1)
            try:
                rec = json.loads(raw[start:]) if start > 0 else None
            except ValueError:
                rec = None
            if rec is None:
                continue
        if isinstance(rec, dict) and isinstance(rec.get("time"), (int, float)):
            records.append(rec)
        else:
            bad += 1
    return records, bad


def load(path: str | Path, minutes: float, until: float | None = None) -> tuple[list[dict], int, list[str], float]:
    """The records needed for a window of MINUTES ending at UNTIL (default: the newest record), oldest first.

    Reads PATH, and ``PATH.1`` too when the window starts before PATH's first record (or PATH
    holds none). Returns (records, unreadable lines, files read, window end). Raises
    FileNotFoundError when neither file exists.
    """
    path = Path(path)
    rotated = path.with_name(path.name + ".1")
    if not path.exists() and not rotated.exists():
        raise FileNotFoundError(str(path))
    records, bad, files = [], 0, []
    if path.exists():
        records, bad = _parse(path)
        files.append(str(path))
    end = until if until is not None else (max(r["time"] for r in records) if records else None)
    if rotated.exists() and (end is None or not records or min(r["time"] for r in records) > end - minutes * 60):
        older, bad_old = _parse(rotated)
        records, bad = older + records, bad + bad_old
        files.insert(0, str(rotated))
    if end is None:
        end = max((r["time"] for r in records), default=time.time())
    records.sort(key=lambda r: r["time"])
    return records, bad, files, end


def counter_delta(values: list) -> int | float | None:
    """Increase of a counter over VALUES (oldest first); a decrease is a reset to zero, then counted up."""
    vals = [v for v in values if isinstance(v, (int, float))]
    if not vals:
        return None
    total = 0
    for prev, cur in zip(vals, vals[1:]):
        total += cur - prev if cur >= prev else cur
    return total


def _stats(values: list) -> dict:
    vals = [v for v in values if isinstance(v, (int, float))]
    if not vals:
        return {"mean": None, "min": None, "max": None}
    return {"mean": round(sum(vals) / len(vals), 3), "min": round(min(vals), 3), "max": round(max(vals), 3)}


def _get(rec: dict, *keys):
    for k in keys:
        if not isinstance(rec, dict):
            return None
        rec = rec.get(k)
    return rec


def summarize(path: str | Path, minutes: float, until: float | None = None, source: str | None = None) -> dict:
    """Summary of the last MINUTES of the history at PATH (see the module docstring), with a ``text`` rendering.

    ``source`` says how PATH was chosen (e.g. "asked the daemon on /run/emod"); it is kept and printed.
    ``live`` is whether the newest record is recent (see ``LIVE_S``).
    """
    if minutes <= 0:
        raise ValueError("minutes must be positive")
    path = Path(path)
    records, bad, files, end = load(path, minutes, until)
    start = end - minutes * 60
    window = [r for r in records if start <= r["time"] <= end]
    before = [r for r in records if r["time"] < start]
    base = ([before[-1]] if before else []) + window  # the counters' baseline + the window
    summary: dict = {
        "path": str(path),
        "files": files,
        "minutes": minutes,
        "records": len(window),
        "bad_lines": bad,
        "start": window[0]["time"] if window else None,
        "end": window[-1]["time"] if window else None,
        "span_s": round(window[-1]["time"] - window[0]["time"], 1) if window else 0.0,
        "age_s": round(time.time() - window[-1]["time"], 1) if window else None,
        "source": source,
    }
    gaps = sorted(b["time"] - a["time"] for a, b in zip(window, window[1:]))
    interval = gaps[len(gaps) // 2] if gaps else 0.0
    summary["live"] = summary["age_s"] is not None and summary["age_s"] <= max(LIVE_S, 5 * interval)
    if not window:
        summary.update({"models": [], "stages": {}, "processed_fps": {"mean": None, "min": None}, "latency_ms": {"p50": None, "p95": None},
                        "inference_ms": {"models": [], "p50": None, "p95": None},
                        "frames": {k: None for k in FRAME_KINDS}, "rejected_messages": None,
                        "power": {"watts": _stats([]), "backend": None, "samples": 0},
                        "energy_per_inference_j": {}, "window_j_per_frame": None, "emotions": sum_intervals([])})
        summary["text"] = render(summary)
        return summary
    models = []
    for r in window:
        if r.get("model") and r["model"] not in models:
            models.append(r["model"])
    stage_names: list[str] = []
    for r in window:
        for name in (r.get("stages") or {}):
            if name not in stage_names:
                stage_names.append(name)
    stages = {}
    for name in stage_names:
        fps = [_get(r, "stages", name, "fps") for r in window]
        st = _stats(fps)
        stages[name] = {"fps_mean": st["mean"], "fps_min": st["min"],
                        "restarts": counter_delta([_get(r, "stages", name, "restarts") for r in base]) or 0}
    inf_models = []
    for r in window:
        m = _get(r, "inference_ms", "model")
        if m and m not in inf_models:
            inf_models.append(m)
    watts = [_get(r, "power", "watts") for r in window]
    backends = [_get(r, "power", "backend") for r in window if _get(r, "power", "backend")]
    power = {"watts": _stats(watts), "backend": backends[-1] if backends else None,
             "samples": sum(isinstance(w, (int, float)) for w in watts)}
    frames = {k: counter_delta([_get(r, "frames", k) for r in base]) for k in FRAME_KINDS}
    span = summary["span_s"]
    jpf = None
    if power["watts"]["mean"] is not None and frames["processed"] and span > 0:
        jpf = round(power["watts"]["mean"] * span / frames["processed"], 4)
    summary.update({
        "models": models,
        "stages": stages,
        "processed_fps": {k: v for k, v in _stats([r.get("processed_fps") for r in window]).items() if k != "max"},
        "latency_ms": {"p50": percentile([v for r in window if (v := _get(r, "latency_ms", "p50")) is not None], 50),
                       "p95": percentile([v for r in window if (v := _get(r, "latency_ms", "p95")) is not None], 95)},
        "inference_ms": {"models": inf_models,
                         "p50": percentile([v for r in window if (v := _get(r, "inference_ms", "p50")) is not None], 50),
                         "p95": percentile([v for r in window if (v := _get(r, "inference_ms", "p95")) is not None], 95)},
        "frames": frames,
        "rejected_messages": counter_delta([_get(r, "rejected", "total") for r in base]),
        "power": power,
        "energy_per_inference_j": dict(window[-1].get("energy_per_inference_j") or {}),
        "window_j_per_frame": jpf,
        "emotions": sum_intervals(window),
    })
    summary["text"] = render(summary)
    return summary


def _num(v, fmt: str = "{:.1f}", none: str = "n/a") -> str:
    return none if v is None else fmt.format(v)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.1f} days"


def render(s: dict) -> str:
    """The human-readable form of a :func:`summarize` result."""
    if s.get("live", True) or s["age_s"] is None:
        head = f"emod history: last {s['minutes']:g} min of {s['path']}"
    else:
        head = (f"emod history: {s['minutes']:g} min up to the newest record of {s['path']}, "
                f"written {_ago(s['age_s'])} ago: not live (no daemon is writing it now)")
    if s.get("source"):
        head += f"\n({s['source']})"
    if not s["records"]:
        return f"{head}\nno records in the window ({s['bad_lines']} unreadable lines)"
    t0 = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["start"]))
    t1 = time.strftime("%H:%M:%S", time.localtime(s["end"]))
    lat, inf, fr, p = s["latency_ms"], s["inference_ms"], s["frames"], s["power"]
    lines = [
        head,
        f"{s['records']} records, {t0} .. {t1} ({s['span_s']:.0f} s; newest {s['age_s']:.0f} s ago)"
        + (f", {s['bad_lines']} unreadable lines skipped" if s["bad_lines"] else ""),
        f"models {', '.join(s['models']) or 'n/a'}",
        f"frames captured {_num(fr['captured'], '{}')}  processed {_num(fr['processed'], '{}')}  dropped {_num(fr['dropped'], '{}')}"
        f"  processed fps mean {_num(s['processed_fps']['mean'])} min {_num(s['processed_fps']['min'])}",
        f"latency capture->result p50 {_num(lat['p50'])} ms  p95 {_num(lat['p95'])} ms",
        f"inference ({', '.join(inf['models']) or 'n/a'}) p50 {_num(inf['p50'])} ms  p95 {_num(inf['p95'])} ms",
        (f"power mean {p['watts']['mean']:.2f} W  min {p['watts']['min']:.2f} W  max {p['watts']['max']:.2f} W"
         if p["watts"]["mean"] is not None else "power mean n/a") + f"  ({p['backend'] or 'none'})",
        "energy/inference " + (", ".join(f"{m} {_num(j, '{:.3f} J')}" for m, j in s["energy_per_inference_j"].items()) or "n/a")
        + f"   window J/frame {_num(s['window_j_per_frame'], '{:.3f}')}",
        f"rejected messages {_num(s['rejected_messages'], '{}')}",
        f"emotions {format_shares(s['emotions']['face_s'], s['emotions']['tracks'])}",
        f"{'stage':<9} {'fps mean':>8} {'fps min':>8} {'restarts':>8}",
    ]
    for name, st in s["stages"].items():
        lines.append(f"{name:<9} {_num(st['fps_mean'], '{:.1f}', '-'):>8} {_num(st['fps_min'], '{:.1f}', '-'):>8} {st['restarts']:>8}")
    return "\n".join(lines)
