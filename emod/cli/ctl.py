"""``emod-ctl``: control a running emod.

    emod-ctl set-model quant      switch the classifier live (answers once it has served a frame, or after 2 s without one)
    emod-ctl models               list the registry
    emod-ctl status [--json]      one-screen summary
    emod-ctl reload | quit | ping

Errors print one line on stderr and exit non-zero, by the table in :mod:`emod.protocol`
(2: bad request, unknown or broken model; 3: emod not reachable; 4: timeout; ``status``:
5 when emod answers but is not healthy: a stage down, the source failing, or an optional part failing
(mqtt disconnected, Prometheus port taken, history off, model choice not saved), each named on a ``problem:`` line;
78: a runtime directory no emod can serve on).
"""

from __future__ import annotations

import argparse
import json
import sys

from emod import bus, protocol
from emod.cli.argtypes import add_instance_arg
from emod.client import Client, ClientError
from emod.launcher.control import COMMANDS
from emod.cli.pipe import safe_stdio


def _pct(x) -> str:
    return f"{x * 100:.1f}%" if isinstance(x, (int, float)) else "-"


def _print_models(models: list[dict]) -> None:
    """One line per model: PrivateTest accuracy / balanced accuracy (mean per-class recall) against the FER+ votes
    and the FER2013 labels."""
    for m in models:
        mark = "*" if m["active"] else " "
        print(f"{mark} {m['name']:<12} {m['format']:<15} {m['input_size']:>4}px  "
              f"FER+ {_pct(m.get('accuracy_ferplus'))} / {_pct(m.get('balanced_accuracy_ferplus'))} bal  "
              f"FER2013 {_pct(m.get('accuracy'))} / {_pct(m.get('balanced_accuracy'))} bal  {m['description']}")


def _print_status(s: dict) -> None:
    fps = s.get("processed_fps") or 0.0
    ms = s.get("inference_ms_p50")
    w = s.get("watts")
    print(f"model {s['model']}  {'healthy' if s['healthy'] else 'DEGRADED'}  up {s['uptime_s']:.0f}s  "
          f"{fps:.1f} fps  detect+classify {ms if ms is not None else '-'} ms/frame  power {f'{w:.2f} W' if w is not None else 'n/a'}")
    src = s.get("source") or {}
    print(f"  source    {src.get('name') or '-'}  {src.get('state') or '-'}" + (f": {src['error']}" if src.get("error") else ""))
    for name, st in s["stages"].items():
        print(f"  {name:<9} pid {st['pid'] or '-':<8} {'up' if st['alive'] else 'DOWN':<5} restarts {st['restarts']}")
    for p in s.get("problems") or []:
        print(f"problem: {p}")


def main(argv: list[str] | None = None) -> int:
    safe_stdio()
    helps = "\n".join(f"  {c.name:<10} {c.help}" for c in COMMANDS.values())
    p = argparse.ArgumentParser(prog="emod-ctl", description="Control a running emod.", epilog="commands:\n" + helps,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=list(COMMANDS))
    p.add_argument("name", nargs="?", help="model name for set-model")
    p.add_argument("--json", action="store_true", help="print the raw JSON reply")
    p.add_argument("--runtime-dir", help="runtime directory of the daemon (env EMOD_RUNTIME_DIR)")
    add_instance_arg(p)
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for the reply")
    args = p.parse_args(argv)
    args_out = {}
    if args.command == "set-model":
        if not args.name:
            p.error("set-model needs a model name (emod-ctl models lists them)")
        args_out["name"] = args.name
    timeout = args.timeout or (90.0 if args.command == "set-model" else 5.0)
    client = Client(bus.runtime_dir(args.runtime_dir, args.instance), timeout)
    try:
        result = client.call(args.command, **args_out)
    except ClientError as e:
        msg = str(e)
        if getattr(e, "code", "") in ("unknown_model", "model_failed") and "available" not in msg:
            try:
                msg += " (available: " + ", ".join(m["name"] for m in client.call("models")) + ")"
            except ClientError:
                pass
        print(f"emod-ctl: {args.command}: {msg}", file=sys.stderr)
        return e.exit_code
    if args.json:
        print(json.dumps(result, indent=2))
        if args.command == "status" and not result["healthy"]:
            return protocol.EXIT_UNHEALTHY
    elif args.command == "models":
        _print_models(result)
    elif args.command == "status":
        _print_status(result)
        if not result["healthy"]:
            return protocol.EXIT_UNHEALTHY  # the daemon answers, but a stage is down or the source fails
    elif args.command == "set-model":
        print(f"model {result['model']} active" + ("" if result.get("saved", True) else
              f"; the choice was NOT saved ({result.get('not_saved')}): emod starts on its previous choice next time"))
    elif args.command == "reload":
        restarted = result.get("restarted") or []
        print("config reloaded; " + (f"restarted: {', '.join(restarted)}" if restarted else "no stage needed a restart"))
    elif args.command == "quit":
        print("emod stopping")
    elif args.command == "ping":
        print("pong")
    else:  # stats: the whole snapshot, readable (emod-stats formats it)
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
