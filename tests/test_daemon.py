"""The daemon end to end: real launcher, real stage processes, real ZeroMQ sockets, real video."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest
import zmq

from _fixtures import EMOD, EMOD_STATS, TINY, Daemon, base_env, build_tiny_model, clip, hamilton, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import bus, protocol

EMOD_CTL = EMOD.parent / "emod-ctl"


@pytest.fixture
def two_models(tiny_models):
    """The models directory with a second untrained model, ``tiny2``, to switch to."""
    if not (tiny_models / "tiny2").is_dir():
        build_tiny_model(tiny_models, "tiny2")
    return tiny_models


@pytest.fixture
def daemon(short_tmp, two_models, hamilton):
    """A running emod on the looping Hamilton clip with the model ``tiny``."""
    d = Daemon(short_tmp, two_models, hamilton)
    d.wait_processing()
    yield d
    d.kill()


def ctl(d: Daemon, models, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(EMOD_CTL), *args, "--runtime-dir", str(d.rundir)], capture_output=True, text=True,
                          timeout=timeout, env=base_env(models))


# What each stage publishes: its output socket, so "it works again" is checked on its own output.
OUTPUT = {"capture": protocol.FRAMES, "infer": protocol.RESULTS, "display": protocol.PREVIEW, "power": protocol.POWER}


def output_arrives(d: Daemon, endpoint: str, timeout: float) -> bool:
    """A message is published on ENDPOINT within TIMEOUT s (a fresh subscriber sees only new ones; subscribing to
    the preview is what makes display encode JPEGs).

    TIMEOUT must not be negative: zmq's poll would then wait forever."""
    sock = bus.connect(zmq.Context.instance(), zmq.SUB, d.rundir, endpoint, hwm=10, topic=b"")
    try:
        return bool(sock.poll(int(timeout * 1000)))
    finally:
        sock.close(linger=0)


def results_arrive(d: Daemon, timeout: float) -> bool:
    """A result is published on the results socket within TIMEOUT s (see :func:`output_arrives`)."""
    return output_arrives(d, protocol.RESULTS, timeout)


def test_results_flow_and_stats_shape(daemon):
    """Frames are captured, processed and reported with every documented stats field."""
    s = wait_for(lambda: (lambda x: x if x and x["latency_ms"]["p50"] is not None else None)(daemon.stats()), 20, what="latency")
    for key in ("version", "uptime_s", "time", "model", "stages", "frames", "processed_fps", "latency_ms",
                "inference_ms", "faces_per_s", "power", "energy_per_inference_j", "rejected", "total_rss_mb", "source"):
        assert key in s, key
    assert s["version"] == 1 and abs(s["time"] - time.time()) < 10 and s["uptime_s"] > 0
    assert s["source"]["name"] == str(daemon.source) and s["source"]["error"] is None and s["source"]["eos"] is False
    assert s["model"] == TINY
    assert set(s["stages"]) == {"capture", "infer", "display", "power", "launcher"}
    for name in ("capture", "infer", "display", "power"):
        st = s["stages"][name]
        assert st["alive"] and st["pid"] and st["restarts"] == 0 and st["rss_mb"] > 0
    assert s["frames"]["captured"] > 0 and s["frames"]["processed"] > 0  # each stage reports its own count, once a second
    for _ in range(15):  # no snapshot counts more frames processed and dropped than captured (a newcomer saw 26 of 23)
        f = daemon.stats()["frames"]
        assert f["processed"] + f["dropped"] <= f["captured"], f
        time.sleep(0.2)
    assert s["latency_ms"]["p95"] >= s["latency_ms"]["p50"] > 0


def test_set_model_swaps_live_and_unknown_model_is_refused(daemon, two_models):
    """set-model answers once the new model serves, restarts nothing, persists; an unknown name exits 2 and changes nothing."""
    t0 = time.monotonic()
    r = ctl(daemon, two_models, "set-model", "tiny2")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert took < 5.0
    s = daemon.stats()
    assert s["model"] == "tiny2" and s["inference_ms"]["model"] in ("tiny2", None)
    assert all(st["restarts"] == 0 for st in s["stages"].values())
    assert (daemon.statedir / "model").read_text().strip() == "tiny2"
    bad = ctl(daemon, two_models, "set-model", "nosuch")
    assert bad.returncode == 2
    assert "nosuch" in bad.stderr and "tiny" in bad.stderr  # names the models available
    s = daemon.stats()
    assert s["model"] == "tiny2"
    before = s["frames"]["processed"]
    wait_for(lambda: daemon.stats()["frames"]["processed"] > before, 5, what="frames after refused set-model")


@pytest.mark.parametrize("stage", ["capture", "infer", "display", "power"])
def test_kill_9_of_a_stage_is_restarted(daemon, stage):
    """A stage killed with SIGKILL is restarted by the launcher within 5 s, and its own output (frames, results,
    preview, power) flows again within 15 s of the kill (a fresh Python process on a loaded machine)."""
    pid = daemon.stats()["stages"][stage]["pid"]
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()

    def back():
        s = daemon.stats()
        st = s["stages"][stage] if s else None
        return s if st and st["alive"] and st["pid"] != pid and st["restarts"] == 1 else None

    wait_for(back, 5, 0.1, f"{stage} to be restarted")
    assert output_arrives(daemon, OUTPUT[stage], max(0.0, 15 - (time.monotonic() - t0))), \
        f"nothing on {OUTPUT[stage]} within 15 s of the kill"
    assert results_arrive(daemon, 5), "no results after the restart"


def test_sigterm_stops_everything_cleanly(short_tmp, tiny_models, hamilton):
    """SIGTERM to the launcher: every emod process is gone within 5 s, exit status 0, sockets and lock removed."""
    d = Daemon(short_tmp, tiny_models, hamilton)
    try:
        s = d.wait_processing()
        pids = [st["pid"] for st in s["stages"].values()]
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        code = d.proc.wait(10)
        assert code == 0, d.output()
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids),
                 5, 0.1, "stage processes to exit")
        assert time.monotonic() - t0 < 5
        assert not list(d.rundir.glob("*.sock")) and not (d.rundir / "emod.lock").exists()
    finally:
        d.kill()


def test_second_instance_is_refused(daemon, two_models, hamilton):
    """A second emod on the same runtime directory exits non-zero and leaves the first one serving."""
    r = subprocess.run([str(EMOD), "run", "--runtime-dir", str(daemon.rundir), "--state-dir", str(daemon.statedir),
                        "--source", str(hamilton), "--model", TINY, "--duration", "5"], capture_output=True, text=True,
                       timeout=30, env=base_env(two_models))
    assert r.returncode != 0 and "another emod is running" in r.stderr
    before = daemon.stats()["frames"]["processed"]
    wait_for(lambda: daemon.stats()["frames"]["processed"] > before, 5, what="first instance still serving")


GARBAGE = [
    [b"\x00\xff garbage"],
    [b"frame", b"{not json", b"x"],
    [b"telemetry"],
    [b"request", b'{"v": 1, "id": 3, "cmd": "status", "args": {}}'],
    [b"frame", b'{"v":1,"seq":1,"t_mono":0,"t_wall":0,"shape":[10,10,3],"dtype":"uint8","source":"x"}', b"short"],
    [b"telemetry", b'{"v": 1, "stage": "capture", "pid": 1, "t_mono": 0, "stats": {}}', b"extra", b"parts"],
    [b"result", b"[1, 2, 3]"],
    [b"request", b"x" * (protocol.MAX_HEADER_BYTES + 10)],
]


def test_malformed_flood_is_counted_and_survived(daemon):
    """10,000 malformed messages to every socket emod listens on: nothing dies and each rejection is counted."""
    ctx = zmq.Context.instance()
    targets = {  # listening socket -> a peer type that can send to it
        protocol.TELEMETRY: zmq.PUSH, protocol.CONTROL: zmq.DEALER, protocol.INFER_CONTROL: zmq.DEALER,
        protocol.PREVIEW: zmq.XSUB, protocol.FRAMES: zmq.XSUB, protocol.RESULTS: zmq.XSUB, protocol.POWER: zmq.XSUB,
    }
    socks = {name: bus.connect(ctx, kind, daemon.rundir, name, hwm=20000) for name, kind in targets.items()}
    n = 10_000
    for name, s in socks.items():
        for i in range(n):
            msg = GARBAGE[i % len(GARBAGE)]
            if targets[name] == zmq.XSUB:
                msg = [b"\x02" + b"".join(msg)[:100]]  # neither subscribe (1) nor unsubscribe (0)
            s.send_multipart(msg)
    counted = {protocol.TELEMETRY: "launcher.telemetry", protocol.CONTROL: "launcher.control",
               protocol.INFER_CONTROL: "infer.infer-control", protocol.PREVIEW: "display.preview"}

    def all_counted():
        s = daemon.stats()
        by = s["rejected"]["by_socket"] if s else {}
        return s if all(by.get(k, 0) >= n for k in counted.values()) else None

    s = wait_for(all_counted, 60, 1.0, f"rejections to be counted: {daemon.stats()['rejected']}")
    assert all(st["alive"] and st["restarts"] == 0 for st in s["stages"].values()), s["stages"]
    before = s["frames"]["processed"]
    wait_for(lambda: daemon.stats()["frames"]["processed"] > before, 5, what="results after the flood")
    for sock in socks.values():
        sock.close()


def test_sighup_reloads_the_config_and_a_bad_file_changes_nothing(short_tmp, tiny_models, hamilton):
    """SIGHUP re-reads the file, restarts only the stages whose section changed, and a bad file keeps all running."""
    cfg = short_tmp / "emod.toml"
    cfg.write_text("[display]\nsmoothing = \"ema\"\n")
    d = Daemon(short_tmp, tiny_models, hamilton, args=("--config", str(cfg)))
    try:
        s = d.wait_processing()
        pids = {n: st["pid"] for n, st in s["stages"].items()}
        cfg.write_text("[display]\nsmoothing = \"vote\"\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: (d.stats() or {}).get("stages", {}).get("display", {}).get("pid") not in (None, pids["display"]),
                 15, what="display restarted with the new config")
        s = d.stats()
        assert s["stages"]["capture"]["pid"] == pids["capture"] and s["stages"]["infer"]["pid"] == pids["infer"]
        pids = {n: st["pid"] for n, st in s["stages"].items()}
        cfg.write_text("[display]\nsmoothing = \"wobbly\"\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in d.output(), 15, what="the bad file to be refused")
        assert d.proc.poll() is None, d.output()
        s2 = d.stats()
        assert {n: st["pid"] for n, st in s2["stages"].items()} == pids  # nothing restarted
        assert all(st["alive"] for st in s2["stages"].values())
        before = s2["frames"]["processed"]
        wait_for(lambda: d.stats()["frames"]["processed"] > before, 5, what="frames after the refused reload")
    finally:
        d.kill()


def test_shipped_models_serve_swap_and_survive_a_killed_infer_stage(short_tmp, tiny_models, hamilton):
    """The real `quant` and `full` from the repository in the daemon: faces classified, live swaps both ways, and a
    SIGKILLed infer stage comes back serving the model that was active."""
    d = Daemon(short_tmp, tiny_models, hamilton, args=("--model", "quant"))
    try:
        s = wait_for(lambda: (lambda x: x if x and x["faces_per_s"] and x["faces_per_s"] > 0 else None)(d.stats()), 60,
                     what="faces classified by quant")
        assert s["model"] == "quant"
        for name in ("full", "quant"):
            r = ctl(d, tiny_models, "set-model", name, timeout=60)
            assert r.returncode == 0, r.stderr
            s = d.stats()
            assert s["model"] == name and all(st["restarts"] == 0 for st in s["stages"].values())
            before = s["frames"]["processed"]
            wait_for(lambda: d.stats()["frames"]["processed"] > before, 5, what=f"results from {name}")
        pid = d.stats()["stages"]["infer"]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (lambda x: x if x and x["stages"]["infer"]["restarts"] == 1 and x["stages"]["infer"]["pid"] != pid
                          else None)(d.stats()), 10, 0.1, "infer to restart")
        assert results_arrive(d, 10), "no results from the restarted infer stage"
        assert d.stats()["model"] == "quant"
        assert d.stop() == 0
    finally:
        d.kill()
