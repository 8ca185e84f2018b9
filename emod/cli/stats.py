"""``emod-stats``: live telemetry from a running emod, or a summary of its history.

    emod-stats                 human-readable snapshot
    emod-stats --json          the snapshot as JSON (shape documented in docs/usage.md; stable)
    emod-stats --watch         refresh every second
    emod-stats --history 10    summarise the last 10 minutes of the running daemon's history

--history asks the daemon on the runtime directory where its history is (its state directory);
with --state-dir, that directory's telemetry.jsonl; with no daemon answering, the default state
directory's, saying so. The summary names the file, and a file no daemon writes now is labelled
with its age, never "last N min".
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from emod.cli.argtypes import add_instance_arg, plain
from emod import bus
from emod.cli.pipe import reader_gone, safe_stdio
from emod.client import Client, ClientError
from emod.launcher.emotion_tally import format_shares


def _v(value, fmt: str = "{}", none: str = "-") -> str:
    """A value for people: ``none`` instead of None, so no output ever says None."""
    return none if value is None else fmt.format(value)


def render(s: dict) -> str:
    lat, inf = s["latency_ms"], s["inference_ms"]
    em = s.get("emotions") or {"faces": 0, "last_minute": {"face_s": {}, "tracks": 0}}
    p = s.get("power") or {}
    w = p.get("watts")
    src = s.get("source") or {}
    lines = [
        f"emod  model {s['model']}  up {s['uptime_s']:.0f} s  source {_v(src.get('name'))} ({_v(src.get('state'))})"
        + ("" if s.get("healthy", True) else "  NOT HEALTHY"),
    ]
    if src.get("error") or src.get("state") in ("error", "no signal", "frozen"):
        lines.append(f"SOURCE {str(src.get('state')).upper()}: {src.get('error') or 'the same picture for seconds'}")
    lines += [
        f"frames captured {s['frames']['captured']}  processed {s['frames']['processed']}  dropped {s['frames']['dropped']}"
        f"  ({s['processed_fps'] or 0:.1f} fps)  faces/s {s['faces_per_s'] or 0:.1f}  faces dropped {s.get('faces_dropped', 0)}",
        f"latency capture->result p50 {_v(lat['p50'], '{} ms')}  p95 {_v(lat['p95'], '{} ms')}   "
        f"detect+classify per frame ({_v(inf['model'])}) p50 {_v(inf['p50'], '{} ms')}  p95 {_v(inf['p95'], '{} ms')}",
        f"power {f'{w:.2f} W' if w is not None else 'n/a'} ({p.get('backend', 'none')})   energy/inference "
        + (", ".join(f"{m} {j:.3f} J" if j is not None else f"{m} n/a" for m, j in s["energy_per_inference_j"].items()) or "n/a"),
        f"rejected messages {s['rejected']['total']}   total RSS {s['total_rss_mb']} MB",
        f"emotions, last minute: {format_shares(em['last_minute']['face_s'], em['last_minute']['tracks'])}   faces now {em['faces']}",
        f"{'stage':<9} {'pid':>7} {'alive':>5} {'restarts':>8} {'fps':>6} {'RSS MB':>7} {'CPU %':>6}",
    ]
    for name, st in s["stages"].items():
        lines.append(f"{name:<9} {_v(st['pid']):>7} {'yes' if st['alive'] else 'NO':>5} {st['restarts']:>8} "
                     f"{_v(st['fps']):>6} {_v(st['rss_mb']):>7} {_v(st['cpu_percent']):>6}")
    mq = s.get("mqtt")
    if mq is not None:  # the optional mqtt stage: its process may be alive while the broker is gone
        state = mq.get("state") or ("connected" if mq.get("connected") else "disconnected")
        lines.append(f"mqtt {state if state == 'connected' else state.upper()}" + (f": {mq['error']}" if mq.get("error") else "")
                     + f"  published {_v(mq.get('published'))}  dropped {_v(mq.get('dropped'))}")
    for problem in s.get("problems") or []:
        lines.append(f"problem: {problem}")
    return "\n".join(lines)


def _history_path(args) -> tuple:
    """(history file or None, how it was chosen / why there is none): --state-dir, else the running daemon's, else the default."""
    if args.state_dir:
        return bus.state_dir(args.state_dir, args.instance) / "telemetry.jsonl", f"--state-dir {args.state_dir}"
    client = Client(bus.runtime_dir(args.runtime_dir, args.instance), timeout=2.0)
    try:
        st = client.call("status")
    except ClientError as e:
        default = bus.state_dir(None, args.instance) / "telemetry.jsonl"
        return default, f"no daemon answers on {client.rundir} ({e}); reading the default state directory's file"
    if "state_dir" not in st:  # a daemon older than this client
        return bus.state_dir(None, args.instance) / "telemetry.jsonl", f"the daemon on {client.rundir} does not say where its history is; reading the default"
    if st.get("history") is None:
        return None, f"the daemon on {client.rundir} writes no history (telemetry.history = false; state directory {st['state_dir']})"
    return st["history"], f"the history of the daemon on {client.rundir} (state directory {st['state_dir']})"


def main(argv: list[str] | None = None) -> int:
    safe_stdio()
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (| head): not an error
        return reader_gone()


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(prog="emod-stats", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--watch", action="store_true", help="refresh every second until Ctrl-C")
    p.add_argument("--history", type=float, metavar="MINUTES", help="summarise the telemetry history of the last MINUTES")
    p.add_argument("--state-dir", help="state directory holding telemetry.jsonl (default /var/lib/emod for root)")
    p.add_argument("--runtime-dir", help="runtime directory of the daemon (env EMOD_RUNTIME_DIR)")
    add_instance_arg(p)
    args = p.parse_args(argv)
    if args.history is not None:
        from emod.launcher.history import summarize

        try:
            path, source = _history_path(args)
            if path is None:
                print(f"emod-stats: {source}", file=sys.stderr)
                return 1  # emod.protocol.EXIT_FAILURE
            summary = summarize(path, args.history, source=source)
        except FileNotFoundError as e:
            print(f"emod-stats: no telemetry history: {e} ({source})", file=sys.stderr)
            return 1  # emod.protocol.EXIT_FAILURE
        except ValueError as e:
            print(f"emod-stats: {e}", file=sys.stderr)
            return 2
        print(json.dumps(summary, indent=2) if args.json else summary["text"])
        return 0
    client = Client(bus.runtime_dir(args.runtime_dir, args.instance))
    try:
        while True:
            snap = client.call("stats")
            if args.json:
                print(json.dumps(snap, indent=None if args.watch else 2), flush=True)
            else:
                if args.watch:
                    print("\033[2J\033[H", end="")
                print(render(snap), flush=True)
            if not args.watch:
                return 0
            time.sleep(1.0)
    except ClientError as e:
        print(f"emod-stats: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
