#!/usr/bin/env python3
"""Run several tools/train.py configurations side by side, each fitted to the same wall-time budget.

Made for a borrowed GPU machine with a fixed lease: one call runs every candidate at once
(small models leave most of a GPU idle, so several share it), each with
``train.py --time-budget`` so its one-cycle schedule ends in time, and what comes back is
each run's selected weights and one archive of logs, metrics and curves.

    python tools/fer_bundle.py unpack fer-bundle.npz /tmp/fer      # the data, carried there
    python tools/sweep.py --out runs/sweep --minutes 7 --common "--data /tmp/fer --labels ferplus --device cuda" \\
        --run s0 "--ema 0.999 --ema-warmup --mixup 0.2 --epochs 300 --seed 0" --run s1 "--ema 0.999 --ema-warmup --epochs 300 --seed 1" \\
        --collect "$OUT"

Prints every run's epoch and best PublicTest every 30 s, then a table; writes OUT/sweep.json.
A run still going at the budget plus a grace period is stopped (its selected weights
stay). Exit 1 when any run failed (each named, with the end of its log), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def epochs_seen(log: Path) -> tuple[list[dict], int | None]:
    """The epoch records train.py printed so far, and the fitted epoch count if it printed one."""
    hist, fitted = [], None
    for line in log.read_text(errors="replace").splitlines() if log.is_file() else []:
        if line.startswith("{"):
            try:
                hist.append(json.loads(line.split("  *best*")[0]))
            except ValueError:
                pass
        m = re.search(r"--time-budget \S+ min: (\d+) epochs fit", line)
        if m:
            fitted = int(m.group(1))
    return hist, fitted


def summary(name: str, log: Path, rc: int | None) -> dict:
    hist, fitted = epochs_seen(log)
    return {"run": name, "rc": rc, "epochs_done": len(hist), "epochs_fitted": fitted,
            "best_public_acc": max((h["public_acc"] for h in hist), default=None),
            "seconds": round(sum(h["seconds"] for h in hist), 1)}


def halve(src: Path, dst: Path) -> None:
    """SRC's safetensors with every floating-point tensor as float16 (half the bytes); a model loads them back as float32."""
    from safetensors.torch import load_file, save_file

    save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(src).items()}, dst, metadata={"format": "pt"})


def collect(out: Path, names: list[str], dest: Path, max_mb: float = 16.0) -> list[str]:
    """Each run's selected ``model.safetensors`` as DEST/NAME.safetensors, and DEST/logs.tgz.

    Weights larger than ``max_mb`` MiB (a lease's per-file limit on what comes back: 16 MiB on the
    device machines) are written as float16, which halves them; the name then says so.
    """
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for n in names:
        st = out / n / "model" / "model.safetensors"
        if not st.is_file():
            continue
        if st.stat().st_size > max_mb * 2**20:
            halve(st, dest / f"{n}.safetensors")
            written.append(f"{n}.safetensors (float16: {st.stat().st_size / 2**20:.1f} MiB > {max_mb:g})")
        else:
            (dest / f"{n}.safetensors").write_bytes(st.read_bytes())
            written.append(f"{n}.safetensors")
    with tarfile.open(dest / "logs.tgz", "w:gz") as t:
        for f in [out / "sweep.json", *(out / f"{n}.log" for n in names)]:
            if f.is_file():
                t.add(f, arcname=f.name)
        for n in names:
            for f in ("metrics.json", "curves.png", "model/config.json", "model/preprocessor_config.json"):
                if (out / n / f).is_file():
                    t.add(out / n / f, arcname=f"{n}/{f}")
    return written + ["logs.tgz"]


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from emod.cli.argtypes import plain

    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="each run trains into OUT/NAME and logs to OUT/NAME.log")
    p.add_argument("--minutes", type=float, required=True, help="wall-time budget of every run, start-up included")
    p.add_argument("--run", nargs=2, action="append", required=True, metavar=("NAME", "ARGS"), help="one run's train.py arguments")
    p.add_argument("--common", default="", help="train.py arguments every run gets (data, labels, device)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per run (default 2)")
    p.add_argument("--grace", type=float, default=0.15, help="stop runs still going at (1 + GRACE) x the budget (default 0.15)")
    p.add_argument("--collect", type=Path, default=None, help="copy each run's selected weights and logs.tgz here")
    p.add_argument("--max-file-mb", type=float, default=16.0,
                   help="collect weights larger than this (MiB) as float16 (default 16: the device's limit per file)")
    a = p.parse_args(argv)
    names = [n for n, _ in a.run]
    if len(set(names)) != len(names) or not all(re.fullmatch(r"[A-Za-z0-9_.-]+", n) for n in names):
        p.error(f"run names must be distinct and made of letters, digits, '.', '_', '-': {names}")
    if a.minutes <= 0:
        p.error("--minutes must be > 0")
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    procs: dict[str, subprocess.Popen] = {}
    try:
        return _sweep(a, names, procs, t0)
    finally:  # Ctrl-C or a failure of the sweep itself: no training run is left running on the machine
        for pr in procs.values():
            if pr.poll() is None:
                os.killpg(pr.pid, signal.SIGTERM)
                try:
                    pr.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(pr.pid, signal.SIGKILL)
                    pr.wait()


def _sweep(a, names: list[str], procs: dict, t0: float) -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name, args in a.run:
        cmd = [sys.executable, str(REPO / "tools" / "train.py"), "--out", str(a.out / name), "--time-budget", f"{a.minutes:g}",
               "--threads", str(a.threads), "--no-progress", *shlex.split(a.common), *shlex.split(args)]
        with open(a.out / f"{name}.log", "w") as log:
            procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    print(f"{len(procs)} runs, {a.minutes:g} min each, logs in {a.out}/NAME.log", flush=True)
    last, stopped = 0.0, set()
    while any(pr.poll() is None for pr in procs.values()):
        now = time.time() - t0
        if now > a.minutes * 60 * (1 + a.grace) + 30:
            for name, pr in procs.items():
                if pr.poll() is None:
                    print(f"{name}: still going past the budget, stopped (its weights may be cut short)", flush=True)
                    os.killpg(pr.pid, signal.SIGTERM)
                    stopped.add(name)
            break
        if now - last >= 30:
            last = now
            parts = []
            for name in procs:
                hist, fitted = epochs_seen(a.out / f"{name}.log")
                best = max((h["public_acc"] for h in hist), default=0.0)
                parts.append(f"{name} {len(hist)}/{fitted or '?'} {best:.4f}")
            print(f"[{now:5.0f} s] epochs done/fitted, best PublicTest: " + ", ".join(parts), flush=True)
        time.sleep(2)
    for pr in procs.values():
        try:
            pr.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pr.pid, signal.SIGKILL)
            pr.wait()
    rows = [summary(n, a.out / f"{n}.log", procs[n].returncode) for n in names]
    (a.out / "sweep.json").write_text(json.dumps({"minutes": a.minutes, "common": a.common, "runs": rows,
                                                  "args": dict(a.run), "wall_s": round(time.time() - t0, 1)}, indent=2) + "\n")
    print(f"wrote {a.out / 'sweep.json'}")
    print(f"{'run':<10} {'rc':>3} {'epochs':>9} {'best PublicTest':>16} {'train s':>8}")
    for r in rows:
        best = f"{r['best_public_acc']:.4f}" if r["best_public_acc"] is not None else "-"
        print(f"{r['run']:<10} {r['rc']!s:>3} {r['epochs_done']:>4}/{r['epochs_fitted'] or '-':<4} {best:>16} {r['seconds']:>8}")
    if a.collect is not None:
        print(f"collected in {a.collect}: {', '.join(collect(a.out, names, a.collect, a.max_file_mb))}")
    failed = [r["run"] for r in rows if r["rc"] != 0]
    for name in failed:
        tail = (a.out / f"{name}.log").read_text(errors="replace").strip().splitlines()[-5:]
        how = "stopped past the budget" if name in stopped else "failed"
        print(f"run {name} {how} (rc {procs[name].returncode}):\n  " + "\n  ".join(tail), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
