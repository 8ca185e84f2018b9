"""Every emod command exits by the one table in emod/protocol.py, and the docs show that table (issue 14, kind 10)."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
import zmq

from _fixtures import BIN, EMOD, REPO, base_env, short_tmp, tiny_models  # noqa: F401
from emod import bus, protocol

EMOD_CTL, EMOD_STATS, EMOD_VIEW = BIN / "emod-ctl", BIN / "emod-stats", BIN / "emod-view"


def run(*argv, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env)


def test_the_readme_table_is_the_protocol_table() -> None:
    """The exit-code table of docs/usage.md is exactly the one emod.protocol generates, and it lists each code once."""
    readme = (REPO / "docs" / "usage.md").read_text()
    assert protocol.exit_table_markdown() in readme
    codes = [c for c, _ in protocol.EXIT_TABLE]
    assert len(codes) == len(set(codes)) and codes == sorted(codes)
    assert set(protocol.EXIT_CODES.values()) <= set(codes)


@pytest.mark.parametrize("argv", [
    ("emod-view", "--snapshot", "SHOT"), ("emod-ctl", "status"), ("emod-ctl", "ping"), ("emod-stats",), ("emod-stats", "--json"),
])
def test_no_daemon_exits_3_everywhere(short_tmp, argv) -> None:
    """With no emod on the runtime directory, every client exits 3 and says to check that emod is running."""
    tool = BIN / argv[0]
    rest = [str(short_tmp / "x.jpg") if a == "SHOT" else a for a in argv[1:]]
    r = run(tool, *rest, "--runtime-dir", short_tmp, *(["--timeout", "1"] if argv[0] == "emod-view" else []))
    assert r.returncode == protocol.EXIT_UNREACHABLE, (r.returncode, r.stderr)
    assert "is emod running" in r.stderr and "Traceback" not in r.stderr


def test_a_second_emod_run_exits_6_naming_the_running_pid(short_tmp, tiny_models) -> None:
    """While another emod holds the runtime directory, `emod run` exits 6 and names that instance's pid."""
    rundir = short_tmp / "run"
    rundir.mkdir()
    with open(rundir / "emod.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        r = run(EMOD, "run", "--runtime-dir", rundir, "--state-dir", short_tmp / "st", "--source", "demo", "--model", "tiny",
                env=base_env(tiny_models))
    assert r.returncode == protocol.EXIT_ALREADY_RUNNING, (r.returncode, r.stderr)
    assert f"pid {os.getpid()}" in r.stderr and "another emod is running" in r.stderr


def test_config_errors_exit_78_and_usage_errors_2(short_tmp, tiny_models) -> None:
    """A bad config exits 78 (validate and run); an unknown command, an unreadable analyze input and a refused keygen exit 2."""
    bad = short_tmp / "bad.toml"
    bad.write_text("[infer]\nmax_faces = -1\n")
    env = base_env(tiny_models)
    assert run(EMOD, "validate", bad, env=env).returncode == protocol.EXIT_CONFIG
    assert run(EMOD, "run", "--config", bad, "--runtime-dir", short_tmp / "r", env=env).returncode == protocol.EXIT_CONFIG
    good = short_tmp / "good.toml"
    good.write_text('[infer]\nmodel = "tiny"\n')
    assert run(EMOD, "validate", good, env=env).returncode == protocol.EXIT_OK
    assert run(EMOD_CTL, "bogus", env=env).returncode == protocol.EXIT_USAGE
    assert run(EMOD, "analyze", short_tmp / "nope.jpg", "--model", "tiny", env=env).returncode == protocol.EXIT_USAGE
    assert run(EMOD, "keygen", short_tmp / "k", env=env).returncode == protocol.EXIT_OK
    assert run(EMOD, "keygen", short_tmp / "k", env=env).returncode == protocol.EXIT_USAGE


@pytest.mark.parametrize("argv", [("run", "--duration", "-5"), ("run", "--duration", "0"), ("run", "--duration", "nan"),
                                  ("analyze", "--every", "0", "x.jpg"), ("analyze", "--every", "two", "x.jpg")])
def test_nonsense_durations_and_strides_are_usage_errors(short_tmp, argv) -> None:
    """`emod run --duration -5` used to run and stop at once (0: forever); `analyze --every 0` was taken as 1: now exit 2 naming the value."""
    r = run(EMOD, *argv, "--runtime-dir" if argv[0] == "run" else "--json", *((short_tmp / "r",) if argv[0] == "run" else ()))
    assert r.returncode == protocol.EXIT_USAGE and f"'{argv[2]}'" in r.stderr and "stage spawned" not in r.stdout, r.stderr
    assert not (short_tmp / "r" / "capture.sock").exists()


def test_an_unusable_runtime_directory_exits_1(short_tmp, tiny_models) -> None:
    """`emod run` with a runtime directory it cannot create exits 1 with one line, no traceback."""
    r = run(EMOD, "run", "--runtime-dir", "/proc/emod-cannot-be-here", "--source", "demo", "--model", "tiny",
            env=base_env(tiny_models))
    assert r.returncode == protocol.EXIT_FAILURE and "Traceback" not in r.stderr and r.stderr.strip()


def _answer(rundir: Path, body) -> threading.Thread:
    """A control socket at RUNDIR that answers one request with BODY(request id) (a stand-in daemon)."""
    sock = bus.bind(zmq.Context.instance(), zmq.ROUTER, rundir, protocol.CONTROL)

    def serve():
        try:
            if sock.poll(20000):
                ident, *parts = sock.recv_multipart()
                _, req, _ = protocol.decode(parts, expect=b"request")
                sock.send_multipart([ident, *protocol.encode(b"reply", body(req["id"]))])
        finally:
            sock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_a_timeout_reply_exits_4(short_tmp) -> None:
    """A set-model that the daemon reports as timed out makes emod-ctl exit 4."""
    t = _answer(short_tmp, lambda rid: protocol.reply_error(rid, protocol.E_TIMEOUT, "infer stage did not load 'full' in 60 s"))
    r = run(EMOD_CTL, "set-model", "full", "--runtime-dir", short_tmp)
    t.join(5)
    assert r.returncode == protocol.EXIT_TIMEOUT and "did not load" in r.stderr


def test_an_unhealthy_status_exits_5(short_tmp) -> None:
    """A status reply saying emod is not healthy makes emod-ctl status exit 5 and print the reason."""
    status = {"model": "quant", "uptime_s": 3.0, "ready": False, "healthy": False, "problems": ["stage infer is down (restarts 2)"],
              "source": {"name": "demo", "state": "ok", "error": None}, "processed_fps": None, "inference_ms_p50": None,
              "watts": None, "stages": {"infer": {"pid": None, "alive": False, "restarts": 2}}, "runtime_dir": str(short_tmp)}
    t = _answer(short_tmp, lambda rid: protocol.reply_ok(rid, status))
    r = run(EMOD_CTL, "status", "--runtime-dir", short_tmp)
    t.join(5)
    assert r.returncode == protocol.EXIT_UNHEALTHY and "stage infer is down" in r.stdout
    assert "None" not in r.stdout and re.search(r"DEGRADED", r.stdout)
