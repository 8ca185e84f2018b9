"""Measure the running daemon the way docs/measurements.md ("The daemon, measured here") describes it; write docs/reports/daemon.json.

    python tools/measure.py --json docs/reports/daemon.json    # quant and full, 40 s each, the clip of docs/measurements.md
    python tools/measure.py --models quant --seconds 20 --source demo

For each model: a fresh ``emod run --source SRC --loop --model NAME`` in its own runtime and
state directories (the machine's other emod, if any, is left alone), a warm-up until results
flow plus ``--warmup`` seconds, then a window of ``--seconds`` during which ``emod-stats --json``
is read once a second. Then ``emod-ctl set-model`` to each other model and back is timed (the
command as a user runs it, reply included), and the daemon is stopped with SIGTERM.

Report (JSON, one object): ``scenario`` (source, loop, detector, seconds, warm-up), ``machine``
(platform, CPU model, cores, load average before and after, versions), and per model under
``models.NAME``:

- ``processed_fps``: frames classified per second over the window (counter delta / time);
- ``latency_ms`` / ``inference_ms``: ``p50``, ``p95`` from the last snapshot (capture-to-result,
  and detect + classify of the active model; each over the last 300 results);
- ``faces_per_s``, ``frames`` (captured, processed, dropped over the window);
- ``total_rss_mb`` (median over the window's snapshots) and ``stages.NAME``: ``rss_mb`` and
  ``cpu_percent`` medians per stage;
- ``set_model.OTHER``: ``reply_s`` (wall seconds of ``emod-ctl set-model OTHER``), ``exit``,
  ``first_inference`` (``frame`` or ``warm-up``, from the reply), and ``back_s`` for the switch back.

Exit status: 0, or 1 when a daemon fails to start or a switch fails (the report is still written
with what was measured, and says what failed under ``errors``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emod.cli.argtypes import plain  # noqa: E402

from emod.client import Client, ClientError  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_SOURCE = REPO.parent / "shared" / "media" / "video" / "short_hamilton_clip.mp4"


def machine() -> dict:
    """Where the figures come from: platform, CPU model and cores, load average, package versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else platform.processor()
    versions = {}
    for pkg in ("onnxruntime", "torch", "opencv-python-headless", "pyzmq", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)), "python": platform.python_version(), "versions": versions,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def _median(xs: list) -> float | None:
    xs = [x for x in xs if isinstance(x, (int, float))]
    return round(statistics.median(xs), 1) if xs else None


def _stats(client: Client) -> dict | None:
    try:
        return client.call("stats")
    except ClientError:
        return None


def _wait(what: str, predicate, timeout: float, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emod exited with {proc.returncode} while waiting for {what}")
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_daemon(proc: subprocess.Popen) -> None:
    """SIGTERM an ``emod run`` started in its own session; SIGKILL its process group after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _set_model(rundir: Path, name: str) -> dict:
    t0 = time.monotonic()
    r = subprocess.run([str(BIN / "emod-ctl"), "set-model", name, "--json", "--runtime-dir", str(rundir)],
                       capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    out = {"reply_s": round(took, 2), "exit": r.returncode}
    if r.returncode == 0:
        out["first_inference"] = json.loads(r.stdout).get("first_inference")
    else:
        out["error"] = r.stderr.strip()
    return out


def measure_model(name: str, others: list[str], args, progress: bool) -> dict:
    """One fresh daemon serving NAME: the window's figures and the set-model reply times to each of OTHERS."""
    root = Path(tempfile.mkdtemp(prefix="emeas"))
    rundir, statedir = root / "run", root / "state"
    argv = [str(BIN / "emod"), "run", "--runtime-dir", str(rundir), "--state-dir", str(statedir),
            "--source", args.source, "--loop", "--model", name]
    if args.config:
        argv += ["--config", args.config]
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update({"EMOD_DAEMON_LOG_FORMAT": "json", "EMOD_DISPLAY_WINDOW": "off", "EMOD_TELEMETRY_HISTORY": "false"})
    log = open(root / "emod.log", "wb")
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    client = Client(rundir, timeout=5.0)
    try:
        _wait(f"{name} to process frames", lambda: (s := _stats(client)) and s["frames"]["processed"] > 0, 120, proc)
        time.sleep(args.warmup)  # a measurement warm-up, not synchronisation: the daemon is serving already
        snaps = []
        first = _stats(client)
        t0 = time.monotonic()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=int(args.seconds), desc=f"measure {name}", unit="s")
        while (elapsed := time.monotonic() - t0) < args.seconds:
            time.sleep(1.0)
            if (s := _stats(client)) is not None:
                snaps.append(s)
            if bar is not None:
                bar.update(min(int(time.monotonic() - t0), int(args.seconds)) - bar.n)
        if bar is not None:
            bar.close()
        last = snaps[-1]
        window = time.monotonic() - t0
        frames = {k: last["frames"][k] - first["frames"][k] for k in ("captured", "processed", "dropped")}
        result = {
            "model": last["model"], "window_s": round(window, 2), "snapshots": len(snaps),
            "processed_fps": round(frames["processed"] / window, 1), "frames": frames,
            "latency_ms": last["latency_ms"], "inference_ms": {k: last["inference_ms"][k] for k in ("p50", "p95")},
            "faces_per_s": _median([s["faces_per_s"] for s in snaps]),
            "total_rss_mb": _median([s["total_rss_mb"] for s in snaps]),
            "stages": {st: {"rss_mb": _median([s["stages"][st]["rss_mb"] for s in snaps]),
                            "cpu_percent": _median([s["stages"][st]["cpu_percent"] for s in snaps])}
                       for st in last["stages"]},
            "source": last["source"]["name"],
        }
        result["set_model"] = {}
        for other in others:
            to = _set_model(rundir, other)
            if to["exit"] == 0:
                back = _set_model(rundir, name)
                to["back_s"], to["back_exit"] = back["reply_s"], back["exit"]
            result["set_model"][other] = to
        return result
    finally:
        stop_daemon(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/measure.py", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["quant", "full"], help="models to serve, one fresh daemon each")
    p.add_argument("--source", default=str(DEFAULT_SOURCE), help="emod run --source (default: the clip of docs/measurements.md)")
    p.add_argument("--config", help="emod run --config FILE (default: none, the built-in defaults)")
    p.add_argument("--seconds", type=float, default=40.0, help="measurement window per model (default 40)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds served before the window opens (default 5)")
    p.add_argument("--json", type=Path, help="write the report here (e.g. docs/reports/daemon.json)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0:
        p.error("--seconds must be positive and --warmup not negative")
    if args.source not in ("auto", "demo", "picamera2") and "://" not in args.source and not Path(args.source).exists():
        p.error(f"--source {args.source}: no such file or folder")
    from emod import config

    try:
        cfg = config.load(args.config)
    except config.ConfigError as e:
        print(f"tools/measure.py: config error: {e}", file=sys.stderr)
        return config.EXIT_CONFIG
    report = {"scenario": {"command": "emod run --source SRC --loop --model NAME" + (" --config FILE" if args.config else ""),
                           "source": args.source, "config": args.config, "detector": cfg.infer.detector,
                           "detect_width": cfg.infer.detect_width, "seconds": args.seconds, "warmup_s": args.warmup},
              "machine": machine(), "models": {}, "errors": []}
    status = 0
    for name in args.models:
        try:
            report["models"][name] = m = measure_model(name, [o for o in args.models if o != name], args, not args.quiet)
        except (RuntimeError, ClientError, KeyError, IndexError) as e:
            report["errors"].append(f"{name}: {e}")
            print(f"tools/measure.py: {name}: {e}", file=sys.stderr)
            status = 1
            continue
        if any(s["exit"] != 0 or s.get("back_exit", 0) != 0 for s in m["set_model"].values()):
            report["errors"].append(f"{name}: a set-model switch failed: {m['set_model']}")
            status = 1
        lat, inf = m["latency_ms"], m["inference_ms"]
        swaps = "  ".join(f"set-model {o} {s['reply_s']} s" for o, s in m["set_model"].items())
        print(f"{name}: {m['processed_fps']} fps  latency p50/p95 {lat['p50']}/{lat['p95']} ms  "
              f"inference {inf['p50']}/{inf['p95']} ms  RSS {m['total_rss_mb']} MB  {swaps}")
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
