"""Stages die with their launcher, whatever kills it (issue 14, kind 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from _fixtures import EMOD, Daemon, base_env, hamilton, short_tmp, tiny_models, wait_for  # noqa: F401


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kill_9_of_the_launcher_ends_every_stage(short_tmp, tiny_models, hamilton) -> None:
    """After kill -9 of `emod run`, all four stage processes exit within a few seconds (no orphan holds the source)."""
    d = Daemon(short_tmp, tiny_models, hamilton)
    try:
        snap = d.wait_processing()
        pids = [st["pid"] for name, st in snap["stages"].items() if name != "launcher"]
        assert len(pids) == 4 and all(pids)
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait(10)
        wait_for(lambda: all(_gone(p) for p in pids), 8, 0.1, "the orphaned stages to exit")
    finally:
        d.kill()


def test_a_stage_exits_when_its_parent_exits_normally(short_tmp, tiny_models) -> None:
    """A stage whose parent simply exits (no signal, no clean-up of children) exits too."""
    env = base_env(tiny_models)
    code = ("import os, subprocess, sys\n"
            "env = dict(os.environ, EMOD_PARENT_PID=str(os.getpid()))\n"
            f"p = subprocess.Popen([{str(EMOD)!r}, 'stage', 'power', '--runtime-dir', {str(short_tmp)!r}], env=env,"
            " stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(p.pid, flush=True)\n"
            "import time; time.sleep(3)\n"
            "os._exit(0)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    pid = int(r.stdout.split()[0])
    wait_for(lambda: _gone(pid), 8, 0.1, "the stage to exit after its parent")


def test_a_stage_started_after_its_launcher_died_exits_at_once(short_tmp, tiny_models) -> None:
    """A stage that finds its launcher already gone (the race before prctl) exits instead of running on."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    env = base_env(tiny_models, EMOD_PARENT_PID=str(dead.pid))
    t0 = time.monotonic()
    r = subprocess.run([str(EMOD), "stage", "power", "--runtime-dir", str(short_tmp)], env=env, capture_output=True,
                       text=True, timeout=30)
    assert time.monotonic() - t0 < 20
    assert "launcher gone" in r.stdout
