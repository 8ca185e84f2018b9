"""What getting emotions out costs the pipeline; writes docs/reports/outputs-bench.json.

    python tools/bench_outputs.py --json docs/reports/outputs-bench.json
    python tools/bench_outputs.py --pairs 2 --seconds 6 --source demo

One ``emod run --source SRC --loop`` serves throughout; the tool alternates windows of
``--seconds`` in two configurations, side by side in one run (off, on, then on, off, ...), so
both see the same load on a shared machine:

- ``off``: no ``emotions`` subscriber and no mqtt stage (the emotions stream is still
  published: to nobody);
- ``on``: one ``emod events --json`` subscriber (its lines counted, then discarded) and the mqtt
  stage publishing to a real mosquitto that this tool starts on 127.0.0.1. The mqtt stage is the
  process the launcher runs with ``[mqtt] enabled`` (``emod stage mqtt``), started here beside
  the daemon so that it can come and go between windows. Each ``on`` window opens once the
  subscriber prints and the stage has published (not timed).

In each window the tool takes every result from the ``results`` endpoint itself: ``processed_fps``
(results per second) and the capture-to-result latency ``p50``/``p95`` of exactly that window's
results. The report gives, per configuration, the median over its windows, the ``on / off``
ratios of those medians (``within_5_percent``), and each pair's own ratios.

It also times, in this process, what the display stage adds per frame when nobody subscribes
(``publish_cost``, one face per frame, medians): the tracker alone, as the display stage ran it
before the stream, against :class:`emod.vision.emotions.EmotionStream` update + encode + a PUB
send with no subscriber; ``added_us`` is the difference, also as a share of a 30 fps frame.

Exit status: 0, or 1 when the daemon or mosquitto fails (the report says what under ``errors``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from emod.cli.argtypes import plain  # noqa: E402
from measure import BIN, DEFAULT_SOURCE, _stats, _wait, machine, stop_daemon  # noqa: E402

import zmq  # noqa: E402

from emod import bus, protocol  # noqa: E402
from emod.client import Client  # noqa: E402
from emod.launcher.telemetry import percentile  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(root: Path) -> tuple[subprocess.Popen, int]:
    """Debian's mosquitto on a free 127.0.0.1 port, anonymous, no persistence."""
    exe = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not exe:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    port = _free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("mosquitto did not listen within 10 s")


def _cpu_s(proc: subprocess.Popen) -> float:
    """CPU seconds (user + system) PROC has used so far."""
    import psutil

    t = psutil.Process(proc.pid).cpu_times()
    return t.user + t.system


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def window(results: zmq.Socket, seconds: float) -> dict:
    """Every result published during SECONDS: processed fps and capture-to-result latency percentiles."""
    while True:  # drop what queued before the window
        try:
            results.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            break
    latency, t0 = [], time.monotonic()
    while (left := t0 + seconds - time.monotonic()) > 0:
        if not results.poll(int(left * 1000) + 1):
            continue
        try:
            _, r, _ = protocol.decode(results.recv_multipart(), expect=b"result")
        except protocol.ProtocolError:
            continue
        latency.append((r["t_done"] - r["t_capture"]) * 1e3)
    took = time.monotonic() - t0
    return {"processed_fps": round(len(latency) / took, 2), "results": len(latency),
            "latency_ms": {"p50": percentile(latency, 50), "p95": percentile(latency, 95)}, "window_s": round(took, 1)}


class Outputs:
    """The ``on`` extras: an ``emod events --json`` subscriber and the mqtt stage, started and stopped per window."""

    def __init__(self, root: Path, rundir: Path, config_path: Path, env: dict):
        self.root, self.rundir, self.config_path, self.env = root, rundir, config_path, env
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        out = open(self.root / "events.jsonl", "wb")
        self.events = subprocess.Popen([str(BIN / "emod"), "events", "--json", "--runtime-dir", str(self.rundir)],
                                       stdout=out, stderr=subprocess.DEVNULL)
        self.mqtt = subprocess.Popen([str(BIN / "emod"), "stage", "mqtt", "--config", str(self.config_path),
                                      "--runtime-dir", str(self.rundir)], env=self.env, stdout=open(self.root / "mqtt.log", "ab"),
                                     stderr=subprocess.STDOUT)
        self.procs = [self.events, self.mqtt]
        lines0 = _lines(self.root / "events.jsonl")
        _wait("the subscriber and the mqtt stage", lambda: _lines(self.root / "events.jsonl") > lines0 + 5
              and b"mqtt connected" in (self.root / "mqtt.log").read_bytes(), 60, self.mqtt)
        self.cpu0 = {"events": _cpu_s(self.events), "mqtt": _cpu_s(self.mqtt)}
        self.lines0, self.t0 = _lines(self.root / "events.jsonl"), time.monotonic()

    def usage(self) -> dict:
        took = time.monotonic() - self.t0
        return {"events_lines_per_s": round((_lines(self.root / "events.jsonl") - self.lines0) / took, 1),
                "events_cpu_percent": round(100 * (_cpu_s(self.events) - self.cpu0["events"]) / took, 1),
                "mqtt_cpu_percent": round(100 * (_cpu_s(self.mqtt) - self.cpu0["mqtt"]) / took, 1)}

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs = []


def publish_cost(n: int = 3000) -> dict:
    """Median microseconds per frame, one face: the tracker alone (what the display stage did before the
    stream) and EmotionStream.update + encode + a PUB send with no subscriber; ``added_us`` is the difference."""
    import numpy as np

    from emod import config
    from emod.vision.emotions import from_config

    root = Path(tempfile.mkdtemp(prefix="embp"))
    sock = bus.bind(zmq.Context.instance(), zmq.PUB, root, protocol.EMOTIONS, hwm=100)
    rng = np.random.default_rng(0)
    frames = [((100 + (i % 5), 80, 120, 120), rng.dirichlet(np.ones(7)).astype(np.float32)) for i in range(n)]
    tracker_only, stream = from_config(config.Config().display).tracker, from_config(config.Config().display)
    t_track, t_stream = [], []
    try:
        for i, face in enumerate(frames):
            t0 = time.perf_counter()
            tracker_only.update([face], i / 30.0)
            t1 = time.perf_counter()
            msg = stream.update([face], i / 30.0, 1.8e9 + i / 30.0, i, "quant")
            sock.send_multipart(protocol.encode_emotions(msg), zmq.NOBLOCK)
            t2 = time.perf_counter()
            t_track.append(t1 - t0)
            t_stream.append(t2 - t1)
    finally:
        sock.close()
        shutil.rmtree(root, ignore_errors=True)
    track_us, stream_us = statistics.median(t_track) * 1e6, statistics.median(t_stream) * 1e6
    added = stream_us - track_us
    return {"frames": n, "faces_per_frame": 1, "tracker_us": round(track_us, 1), "stream_and_send_us": round(stream_us, 1),
            "added_us": round(added, 1), "added_share_of_30fps_frame": round(added / (1e6 / 30), 5)}


def summarize(windows: list[dict]) -> dict:
    summary = {}
    for kind in ("off", "on"):
        runs = [w for w in windows if w["config"] == kind]
        if runs:
            summary[kind] = {"windows": len(runs),
                             "processed_fps": round(statistics.median(w["processed_fps"] for w in runs), 2),
                             "latency_p50_ms": round(statistics.median(w["latency_ms"]["p50"] for w in runs), 2),
                             "latency_p95_ms": round(statistics.median(w["latency_ms"]["p95"] for w in runs), 2)}
    if "off" in summary and "on" in summary:
        fps = summary["on"]["processed_fps"] / summary["off"]["processed_fps"]
        p95 = summary["on"]["latency_p95_ms"] / summary["off"]["latency_p95_ms"]
        summary["ratio_on_off"] = {"processed_fps": round(fps, 3), "latency_p95": round(p95, 3)}
        summary["within_5_percent"] = {"processed_fps": abs(fps - 1) <= 0.05, "latency_p95": abs(p95 - 1) <= 0.05}
        pairs: dict[int, dict] = {}
        for w in windows:
            pairs.setdefault(w["pair"], {})[w["config"]] = w
        summary["per_pair_ratio_on_off"] = [
            {"processed_fps": round(p["on"]["processed_fps"] / p["off"]["processed_fps"], 3),
             "latency_p95": round(p["on"]["latency_ms"]["p95"] / p["off"]["latency_ms"]["p95"], 3)}
            for _, p in sorted(pairs.items()) if "on" in p and "off" in p]
        per = summary["per_pair_ratio_on_off"]
        summary["per_pair_range"] = {k: [min(r[k] for r in per), max(r[k] for r in per)] for k in ("processed_fps", "latency_p95")}
    on = [w for w in windows if w["config"] == "on" and "mqtt_cpu_percent" in w]
    if on:
        summary["on_cpu_percent"] = {k: {"median": statistics.median(w[f"{k}_cpu_percent"] for w in on),
                                         "max": max(w[f"{k}_cpu_percent"] for w in on)} for k in ("events", "mqtt")}
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/bench_outputs.py", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(DEFAULT_SOURCE), help="emod run --source (default: the clip of docs/measurements.md)")
    p.add_argument("--model", default="quant", help="model to serve (default quant)")
    p.add_argument("--pairs", type=int, default=8, help="pairs of off + on windows (default 8)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of one window (default 10)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds served before the first window (default 5)")
    p.add_argument("--json", type=Path, help="write the report here (e.g. docs/reports/outputs-bench.json)")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.seconds <= 0 or args.warmup < 0:
        p.error("--pairs must be at least 1, --seconds positive, --warmup not negative")
    if args.source not in ("auto", "demo") and not Path(args.source).exists():
        p.error(f"--source {args.source}: no such file")
    report = {"scenario": {"command": f"emod run --source SRC --loop --model {args.model}", "source": args.source,
                           "pairs": args.pairs, "seconds": args.seconds, "warmup_s": args.warmup,
                           "off": "no emotions subscriber, no mqtt stage",
                           "on": "one `emod events --json` subscriber + the mqtt stage publishing to a local mosquitto"},
              "machine": machine(), "publish_cost": publish_cost(), "windows": [], "errors": []}
    root = Path(tempfile.mkdtemp(prefix="embo"))
    rundir = root / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID") and not k.startswith("EMOD_")}
    env.update({"EMOD_DAEMON_LOG_FORMAT": "json", "EMOD_DISPLAY_WINDOW": "off", "EMOD_TELEMETRY_HISTORY": "false"})
    broker = daemon = results = None
    extras = None
    status = 0
    try:
        broker, port = start_broker(root)
        toml = root / "mqtt.toml"
        toml.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "bench"\n')
        log = open(root / "emod.log", "wb")
        daemon = subprocess.Popen([str(BIN / "emod"), "run", "--runtime-dir", str(rundir), "--state-dir", str(root / "state"),
                                   "--source", args.source, "--loop", "--model", args.model], env=env, stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = Client(rundir, timeout=5.0)
        _wait("the daemon to process frames", lambda: (s := _stats(client)) and s["frames"]["processed"] > 0, 120, daemon)
        results = bus.connect(zmq.Context.instance(), zmq.SUB, rundir, protocol.RESULTS, hwm=1000, topic=b"result")
        time.sleep(args.warmup)  # a measurement warm-up, not synchronisation
        extras = Outputs(root, rundir, toml, env)
        for pair in range(args.pairs):
            for kind in (("off", "on") if pair % 2 == 0 else ("on", "off")):
                if kind == "on":
                    extras.start()
                w = {"pair": pair, "config": kind, **window(results, args.seconds), "loadavg": round(os.getloadavg()[0], 2)}
                if kind == "on":
                    w.update(extras.usage())
                    extras.stop()
                if daemon.poll() is not None:
                    raise RuntimeError(f"emod exited with {daemon.returncode}")
                report["windows"].append(w)
                print(f"pair {pair} {kind}: {w['processed_fps']} fps, p95 {w['latency_ms']['p95']} ms", file=sys.stderr)
    except RuntimeError as e:
        report["errors"].append(str(e))
        status = 1
    finally:
        if extras is not None:
            extras.stop()
        if results is not None:
            results.close()
        if daemon is not None:
            stop_daemon(daemon)
        if broker is not None:
            broker.terminate()
            broker.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    report["summary"] = summarize(report["windows"])
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
        print(f"wrote {args.json}", file=sys.stderr)  # stdout stays the report
    return status


if __name__ == "__main__":
    sys.exit(main())
