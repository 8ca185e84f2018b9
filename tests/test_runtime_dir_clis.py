"""Issue 28 kind 5 (field case 07): every CLI against every kind of bad runtime directory prints one line and exits by the table.

No daemon starts: each command fails before it binds or connects, so the whole grid runs in parallel in a few seconds.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _fixtures import BIN, EMOD, base_env, short_tmp, tiny_models  # noqa: F401
from emod import protocol

NOBODY = 65534
CLIS = {
    "emod run": lambda d, t: [EMOD, "run", "--source", "demo", "--model", "tiny", "--duration", "1", "--runtime-dir", d,
                              "--state-dir", t / "state"],
    "emod-ctl status": lambda d, t: [BIN / "emod-ctl", "status", "--runtime-dir", d],
    "emod-stats": lambda d, t: [BIN / "emod-stats", "--runtime-dir", d],
    "emod events": lambda d, t: [EMOD, "events", "--runtime-dir", d, "--timeout", "1"],
    "emod-view --snapshot": lambda d, t: [BIN / "emod-view", "--snapshot", t / "shot.jpg", "--runtime-dir", d, "--timeout", "1"],
}


def _bad_dirs(t: Path) -> dict[str, tuple[Path, dict[str, int]]]:
    """kind -> (runtime directory, expected exit per CLI); a CLI absent from the map is not tried on that kind."""
    long_dir = t / ("r" * 120)
    long_dir.mkdir(mode=0o700)
    real = t / "real"
    real.mkdir(mode=0o700)
    link = t / "link"
    link.symlink_to(real)
    clients = [c for c in CLIS if c != "emod run"]
    out = {
        # emod run creates a missing runtime directory: not an error for it
        "missing": (t / "missing", {c: protocol.EXIT_UNREACHABLE for c in clients}),
        "120 characters": (long_dir, {c: protocol.EXIT_CONFIG for c in CLIS}),
        "symlink": (link, {c: protocol.EXIT_CONFIG for c in CLIS}),
    }
    if os.geteuid() == 0:
        foreign = t / "foreign"
        foreign.mkdir(mode=0o755)
        os.chown(foreign, NOBODY, NOBODY)
        # a client cannot refuse a directory owned by another user (the service's user owns /run/emod): nothing serves there
        out["foreign-owned"] = (foreign, {"emod run": protocol.EXIT_CONFIG, **{c: protocol.EXIT_UNREACHABLE for c in clients}})
    return out


def test_every_cli_on_every_bad_runtime_dir_prints_one_line_and_exits_by_the_table(short_tmp, tiny_models) -> None:
    env = base_env(tiny_models)
    grid = [(kind, d, cli, code) for kind, (d, codes) in _bad_dirs(short_tmp).items() for cli, code in codes.items()]

    def one(item):
        kind, d, cli, code = item
        r = subprocess.run([str(a) for a in CLIS[cli](d, short_tmp)], capture_output=True, text=True, timeout=60, env=env)
        return kind, d, cli, code, r

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, grid))
    bad = []
    for kind, d, cli, code, r in results:
        lines = r.stderr.strip().splitlines()
        print(f"{kind:>15} | {cli:<21} | exit {r.returncode} | {lines[0][:110] if lines else ''}")
        if r.returncode != code or len(lines) != 1 or "Traceback" in r.stderr or "stage spawned" in r.stdout:
            bad.append((kind, cli, f"exit {r.returncode} (want {code})", r.stderr[-400:]))
    assert not bad, bad
    assert not list((short_tmp / "real").iterdir()), "emod wrote through a symlinked runtime directory"
