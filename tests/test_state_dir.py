"""Issue 28 kinds 3 and 6 (field cases 05 and 10): the state directory full, read-only, or shared by a second instance.

The camera keeps sensing: the history turns itself off (and back on), `set-model` still switches and says the choice
was not saved, nothing half-written or temporary is left, and a second emod on the same state directory exits 6 naming
the first's pid. Real filesystems: a small tmpfs (root only), filled with dd or remounted read-only.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from _fixtures import BIN, EMOD, Daemon, base_env, clip, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import protocol
from emod.launcher.statefiles import write_atomic
from emod.launcher.telemetry import History

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


def mount_tmpfs(path: Path, size: str = "64k") -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={path / 'filler'}", "bs=4k"], capture_output=True)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@as_root
def test_history_turns_off_on_a_full_disk_and_back_on_without_half_lines(short_tmp) -> None:
    fs = short_tmp / "fs"
    mount_tmpfs(fs)
    try:
        clock, log = Clock(), []

        class Log:
            def warning(self, event, **kw):
                log.append(event)

            info = warning

        h = History(fs / "telemetry.jsonl", 10 * 2**20, Log(), retry_s=30.0, clock=clock)
        rec = {"version": 1, "pad": "x" * 900}
        assert h.append(rec) and h.error is None
        fill(fs)
        results = [h.append(rec) for _ in range(12)]  # the filesystem's last page takes a few lines, then it fails
        off = results.index(False)
        assert results[off:] == [False] * (12 - off) and "No space left" in h.error and log == ["telemetry history off; the sensor keeps running"]
        lines = (fs / "telemetry.jsonl").read_bytes().split(b"\n")
        assert lines[-1] == b"" and all(json.loads(l) for l in lines[:-1])  # whole lines only
        (fs / "filler").unlink()
        assert not h.append(rec)  # the retry time has not come
        clock.t += 31
        assert h.append(rec) and h.error is None and log[-1] == "telemetry history back on"
        # write_atomic on a full disk: OSError, and neither a temporary nor a truncated file left behind
        write_atomic(fs / "model", "quant\n")
        fill(fs)
        with pytest.raises(OSError):
            write_atomic(fs / "model", "x" * 200_000)
        assert (fs / "model").read_text() == "quant\n" and sorted(p.name for p in fs.iterdir()) == ["filler", "model", "telemetry.jsonl"]
        h.close()
    finally:
        umount(fs)


def ctl(d: Daemon, models: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "emod-ctl"), *argv, "--runtime-dir", str(d.rundir)], capture_output=True, text=True,
                          timeout=120, env=base_env(models))


@as_root
def test_read_only_then_full_state_dir_and_a_second_instance(short_tmp, tiny_models, clip) -> None:
    """Read-only state dir (history and saved choice already there): emod starts, says history is off, serves, and switches
    models without saving; a second emod on the same state directory (two spellings of it) exits 6 naming the first's pid;
    then the directory is writable but full: set-model still switches, no temporary file is left, the daemon stays up."""
    state = short_tmp / "state"
    mount_tmpfs(state)
    (state / "telemetry.jsonl").write_text('{"version":1,"time":1.0}\n')
    (state / "model").write_text("tiny\n")
    subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
    d = Daemon(short_tmp, tiny_models, clip)
    try:
        first = d.wait_processing()["frames"]["processed"]
        s = wait_for(lambda: (s := d.stats()) and any(p.startswith("history (optional): off") for p in s["problems"]) and s,
                     20, 0.5, "problems saying the history is off")
        print("\n" + "\n".join(s["problems"]))
        r = ctl(d, tiny_models, "set-model", "quant")
        print(r.stdout.strip())
        assert r.returncode == 0 and "model quant active" in r.stdout and "NOT saved (Read-only file system)" in r.stdout, r
        # kind 6: the state directory is taken, however it is spelled
        for spelling in (str(state), os.path.relpath(state, short_tmp)):
            r2 = subprocess.run([str(EMOD), "run", "--source", str(clip), "--model", "tiny", "--runtime-dir", str(short_tmp / "r2"),
                                 "--state-dir", spelling, "--duration", "5"], capture_output=True, text=True, timeout=60,
                                cwd=short_tmp, env=base_env(tiny_models))
            print(r2.stderr.strip())
            assert r2.returncode == protocol.EXIT_ALREADY_RUNNING and f"pid {d.proc.pid}" in r2.stderr, r2.stderr
            assert "stage spawned" not in r2.stdout and len(r2.stderr.strip().splitlines()) == 1
        # full: writable again, but no space
        subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
        fill(state)
        r = ctl(d, tiny_models, "set-model", "tiny")
        print(r.stdout.strip())
        assert r.returncode == 0 and "model tiny active" in r.stdout and "NOT saved (No space left on device)" in r.stdout, r
        s = d.stats()
        assert d.proc.poll() is None and s["model"] == "tiny" and s["frames"]["processed"] > first
        assert any(p.startswith("saved model choice (optional): tiny is active but not saved") for p in s["problems"]), s["problems"]
        assert sorted(p.name for p in state.iterdir()) == ["filler", "model", "telemetry.jsonl"]  # no temporary file
        assert (state / "model").read_text() == "tiny\n"  # the old choice, whole
        assert d.stop() == 0
    finally:
        d.stop()
        umount(state)
