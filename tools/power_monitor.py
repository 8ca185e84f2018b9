#!/usr/bin/env python3
"""Average power over a time window, through emod's power backends.

Reproduces the prototype's report (SoC power from ``vcgencmd pmic_read_adc`` averaged over
10 s, one sample a second) with any backend: prints each sample, then the average, minimum
and maximum watts and the backend used.

    python tools/power_monitor.py                        # auto backend, 10 s, 1 sample/s
    python tools/power_monitor.py --duration 60 -q --json power.json
    python tools/power_monitor.py --backend pi5-pmic --vcgencmd /path/to/fake-vcgencmd

JSON: backend, samples ([{"t": s since start, "watts": W or null}]), valid_samples, mean_w,
min_w, max_w (null without a reading), duration_s, period_s, and error when there was one.
Exit status: 0 with at least one reading; 1 when no sample gave a reading; 2 when the
requested backend cannot be opened.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emod.cli.argtypes import plain  # noqa: E402

from emod.power import BACKENDS, BackendUnavailable, PowerBackend, open_backend  # noqa: E402

EXIT_NO_READING = 1
EXIT_UNAVAILABLE = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=plain(__doc__.split("\n\n")[0]))
    p.add_argument("--period", type=float, default=1.0, help="seconds between samples (default 1)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to sample for (default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary, not each sample")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), help="power backend (default auto)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("--vcgencmd", default="vcgencmd", metavar="PATH", help="vcgencmd command of pi5-pmic")
    p.add_argument("--hwmon-root", default="/sys/class/hwmon", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--rapl-root", default="/sys/class/powercap", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.period <= 0 or args.duration <= 0:
        p.error("--period and --duration must be positive")
    return args


def sample(backend: PowerBackend, period: float, duration: float, quiet: bool) -> tuple[list[dict], float]:
    """Read BACKEND every PERIOD seconds for DURATION; return the samples and the seconds it took."""
    n = max(1, round(duration / period))
    backend.prime()
    start = time.monotonic()
    samples = []
    for k in range(n):
        delay = start + k * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = time.monotonic() - start
        watts = backend.read()
        samples.append({"t": round(t, 3), "watts": watts})
        if not quiet:
            reason = f" ({backend.last_error})" if backend.name != "none" else ""
            shown = f"{watts:7.3f} W" if watts is not None else f"   no reading{reason}"
            print(f"[{k + 1:>{len(str(n))}}/{n}] t={t:6.2f} s {shown}", flush=True)
    delay = start + n * period - time.monotonic()  # the last sample stands for one period
    if delay > 0:
        time.sleep(delay)
    return samples, time.monotonic() - start


def summarize(backend_name: str, samples: list[dict], duration_s: float, period: float) -> dict:
    values = [s["watts"] for s in samples if s["watts"] is not None]
    return {"backend": backend_name, "samples": samples, "valid_samples": len(values),
            "mean_w": sum(values) / len(values) if values else None, "min_w": min(values, default=None),
            "max_w": max(values, default=None), "duration_s": round(duration_s, 3), "period_s": period}


def write_json(path: Path | None, report: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        backend = open_backend(args.backend, vcgencmd=args.vcgencmd, hwmon_root=args.hwmon_root,
                               rapl_root=args.rapl_root)
    except BackendUnavailable as e:
        print(f"power_monitor: backend unavailable: {e}", file=sys.stderr)
        report = summarize(args.backend, [], 0.0, args.period)
        report["error"] = str(e)
        write_json(args.json, report)
        return EXIT_UNAVAILABLE
    with backend:
        n = max(1, round(args.duration / args.period))
        print(f"Sampling power via {backend.name}: {n} samples, every {args.period:g} s for {args.duration:g} s",
              flush=True)
        samples, duration_s = sample(backend, args.period, args.duration, args.quiet)
        report = summarize(backend.name, samples, duration_s, args.period)
        if report["mean_w"] is None:
            report["error"] = backend.last_error or "no reading"
    write_json(args.json, report)
    print(f"backend: {report['backend']}")
    print(f"samples: {report['valid_samples']}/{len(samples)} with a reading over {duration_s:.1f} s")
    if report["mean_w"] is None:
        print(f"power_monitor: no usable power reading from backend {backend.name} ({report['error']})",
              file=sys.stderr)
        return EXIT_NO_READING
    print(f"average: {report['mean_w']:.3f} W  min: {report['min_w']:.3f} W  max: {report['max_w']:.3f} W")
    return 0


if __name__ == "__main__":
    sys.exit(main())
