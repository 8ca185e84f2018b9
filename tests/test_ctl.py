"""The control CLIs against a real daemon: every ``emod-ctl`` command, plain ``emod-stats``, and the demo/auto sources."""

from __future__ import annotations

import glob
import json
import subprocess

import pytest

from _fixtures import DEMO, EMOD, EMOD_STATS, TINY, Daemon, base_env, build_tiny_model, short_tmp, tiny_models, wait_for  # noqa: F401

EMOD_CTL = EMOD.parent / "emod-ctl"


def run(argv: list, models, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=base_env(models))


def ctl(d: Daemon, models, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return run([EMOD_CTL, *args, "--runtime-dir", d.rundir], models, timeout)


@pytest.fixture
def demo_daemon(short_tmp, tiny_models):
    """A running emod on ``--source demo`` (the bundled clip, looping) with a config file, serving ``tiny``."""
    if not (tiny_models / "tiny2").is_dir():
        build_tiny_model(tiny_models, "tiny2")
    cfg = short_tmp / "emod.toml"
    cfg.write_text("[display]\nsmoothing = \"ema\"\n")
    d = Daemon(short_tmp, tiny_models, "demo", args=("--config", str(cfg)))
    d.config = cfg
    d.wait_processing()
    yield d
    d.kill()


def test_every_ctl_command_and_plain_stats(demo_daemon, tiny_models):
    """--source demo plays the bundled clip; models, status, reload (good and bad file), plain emod-stats and quit
    each do what docs/usage.md says, with exit 0, or 2 for a bad file."""
    d = demo_daemon
    s = wait_for(lambda: (lambda x: x if x and x["latency_ms"]["p50"] is not None else None)(d.stats()), 30, what="latency")
    assert s["source"]["name"] == str(DEMO) and s["source"]["error"] is None

    r = ctl(d, tiny_models, "models")
    assert r.returncode == 0, r.stderr
    lines = {line[2:].split()[0]: line for line in r.stdout.splitlines()}
    assert lines[TINY].startswith("* ") and lines["tiny2"].startswith("  ")  # the active one is starred
    r = ctl(d, tiny_models, "models", "--json")
    models = {m["name"]: m for m in json.loads(r.stdout)}
    assert models[TINY]["active"] and not models["tiny2"]["active"] and models[TINY]["input_size"] == 48

    r = ctl(d, tiny_models, "status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"model {TINY}  healthy") and "None" not in r.stdout
    for name in ("capture", "infer", "display", "power"):
        assert any(line.split()[:1] == [name] and " up " in line for line in r.stdout.splitlines()), (name, r.stdout)
    st = json.loads(ctl(d, tiny_models, "status", "--json").stdout)
    assert st["model"] == TINY and st["healthy"] is True and st["runtime_dir"] == str(d.rundir)

    r = run([EMOD_STATS, "--runtime-dir", d.rundir], tiny_models)
    assert r.returncode == 0, r.stderr
    assert f"model {TINY}" in r.stdout and f"source {DEMO}" in r.stdout and "None" not in r.stdout
    for name in ("capture", "infer", "display", "power", "launcher"):
        assert any(line.split()[:1] == [name] for line in r.stdout.splitlines()), (name, r.stdout)

    pids = {n: st["pid"] for n, st in d.stats()["stages"].items()}
    r = ctl(d, tiny_models, "reload", "--json")  # unchanged file: nothing restarts
    assert r.returncode == 0 and json.loads(r.stdout) == {"restarted": []}, r.stderr
    r = ctl(d, tiny_models, "reload")
    assert r.returncode == 0 and r.stdout == "config reloaded; no stage needed a restart\n", r.stderr
    d.config.write_text("[display]\nsmoothing = \"vote\"\n")
    r = ctl(d, tiny_models, "reload")
    assert r.returncode == 0 and r.stdout == "config reloaded; restarted: display\n", r.stderr
    wait_for(lambda: (d.stats() or {}).get("stages", {}).get("display", {}).get("pid") not in (None, pids["display"]),
             15, what="display restarted")
    pids = {n: st["pid"] for n, st in d.stats()["stages"].items()}
    d.config.write_text("[display]\nsmoothing = \"wobbly\"\n")
    r = ctl(d, tiny_models, "reload")
    assert r.returncode == 2 and "wobbly" in r.stderr, (r.returncode, r.stderr)
    assert {n: st["pid"] for n, st in d.stats()["stages"].items()} == pids

    r = ctl(d, tiny_models, "ping")
    assert r.returncode == 0 and r.stdout == "pong\n", r.stderr
    r = ctl(d, tiny_models, "quit")
    assert r.returncode == 0 and r.stdout == "emod stopping\n", r.stderr
    assert d.proc.wait(20) == 0, d.output()
    assert not list(d.rundir.glob("*.sock"))
    r = ctl(d, tiny_models, "status")
    assert r.returncode == 3 and r.stderr.startswith("emod-ctl: status:"), (r.returncode, r.stderr)


def test_auto_source_falls_back_to_the_demo_clip(short_tmp, tiny_models):
    """From a terminal, --source auto takes picamera2, else the first /dev/video*, else the bundled demo clip, and processes frames."""
    try:
        import picamera2  # noqa: F401
        has_picamera2 = True
    except ImportError:
        has_picamera2 = False
    devices = sorted(glob.glob("/dev/video[0-9]*"), key=lambda p: int(p[len("/dev/video"):]))
    d = Daemon(short_tmp, tiny_models, "auto", tty=True)
    try:
        s = d.wait_processing()
        if not has_picamera2:
            assert s["source"]["name"] == (devices[0] if devices else str(DEMO))
            if not devices:
                wait_for(lambda: "playing the bundled demo clip" in d.output(), 10, 0.2, "the log to say why the demo clip plays")
        assert s["source"]["error"] is None and s["frames"]["processed"] > 0
    finally:
        d.kill()


def test_unknown_model_exits_2_on_the_command_line_and_78_in_a_config(short_tmp, tiny_models):
    """`emod run --model nosuch` exits 2 naming the model; `[infer] model = "nosuch"` in a file is a bad config (78)."""
    common = [EMOD, "run", "--runtime-dir", short_tmp / "run", "--state-dir", short_tmp / "state", "--source", "demo",
              "--duration", "5"]
    r = run([*common, "--model", "nosuch"], tiny_models)
    assert r.returncode == 2 and "nosuch" in r.stderr, (r.returncode, r.stderr)
    cfg = short_tmp / "emod.toml"
    cfg.write_text("[infer]\nmodel = \"nosuch\"\n")
    r = run([*common, "--config", cfg], tiny_models)
    assert r.returncode == 78 and "nosuch" in r.stderr, (r.returncode, r.stderr)
