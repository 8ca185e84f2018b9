"""Stages on two hosts: capture + display on the camera host, infer on another, linked over TCP with CURVE.

The two "hosts" are two runtime directories on this machine: nothing crosses between them
but the TCP links (``frames_bind`` / ``frames_connect``, ``results_bind`` / ``results_connect``).
Each stage runs as ``emod stage NAME``, the command line of ``emod-stage@NAME.service``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import zmq

from _fixtures import BIN, clip, free_port, hamilton, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import bus, config, protocol, remote
from test_remote import make_keys


def _toml(path: Path, **remote_keys: str) -> Path:
    path.write_text("[capture]\nloop = true\n[remote]\n" + "".join(f'{k} = "{v}"\n' for k, v in remote_keys.items()))
    return path


class Stage:
    def __init__(self, name: str, rundir: Path, cfg: Path, models: Path, *extra: str):
        rundir.mkdir(parents=True, exist_ok=True)
        self.log = rundir.parent / f"{rundir.name}-{name}.log"
        env = {**os.environ, "EMOD_MODELS_DIR": str(models), "EMOD_DAEMON_LOG_FORMAT": "json"}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([str(BIN / "emod"), "stage", name, "--runtime-dir", str(rundir), "--config", str(cfg),
                                          "--state-dir", str(rundir.parent / "state"), *extra],
                                         stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _collect(sock: zmq.Socket, topic: bytes, seconds: float) -> list[dict]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        if sock.poll(100):
            _, h, _ = protocol.decode(sock.recv_multipart(), expect=topic)
            out.append(h)
    return out


def test_link_keys_are_checked(tmp_path) -> None:
    keys = make_keys(tmp_path)
    with pytest.raises(config.ConfigError, match="remote.frames_bind needs remote.server_secret_key"):
        config.load(None, env={}, overrides={"remote": {"frames_bind": "tcp://127.0.0.1:5999"}})
    with pytest.raises(config.ConfigError, match="remote.frames_connect needs remote.server_public_key"):
        config.load(None, env={}, overrides={"remote": {"frames_connect": "tcp://cam:5561"}})
    with pytest.raises(config.ConfigError, match="remote.results_connect: 'ipc:///x' is not a tcp:// endpoint"):
        config.load(None, env={}, overrides={"remote": {"results_connect": "ipc:///x"}})
    with pytest.raises(config.ConfigError, match="client_secret_key: .* holds no secret key"):
        config.load(None, env={}, overrides={"remote": {"frames_connect": "tcp://cam:5561", "server_public_key": str(keys["server_public"]),
                                                        "client_secret_key": str(keys["server_public"])}})
    cfg = config.load(None, env={}, overrides={"remote": {"frames_connect": "tcp://cam:5561", "server_public_key": str(keys["server_public"]),
                                                          "client_secret_key": str(keys["alice"])}})
    assert cfg.remote.frames_connect == "tcp://cam:5561"


def test_local_mono_translates_through_wall_clocks() -> None:
    now_w, now_m = time.time(), time.monotonic()
    assert abs(remote.local_mono({"t_wall": now_w - 0.25}) - (now_m - 0.25)) < 0.05
    # wall clocks that disagree (capture "in the future", or hours ago) count as captured now
    assert abs(remote.local_mono({"t_wall": now_w + 3.0}) - now_m) < 0.05
    assert abs(remote.local_mono({"t_wall": now_w - 7200}) - now_m) < 0.05


def test_capture_and_infer_on_different_hosts(tiny_models, short_tmp, hamilton) -> None:
    """Frames cross to infer over TCP; results cross back to the camera host's display, whose preview shows them."""
    keys = make_keys(short_tmp / "keys")
    (keys["authorized"] / "server.key").write_bytes(keys["server_public"].read_bytes())  # infer host's own key, see below
    fport, rport = free_port(), free_port()
    cam, gpu = short_tmp / "cam", short_tmp / "gpu"
    # the camera host publishes frames and takes results; the inference host the reverse. One key pair serves
    # as both hosts' server key here; each side authorises the other's client key (alice = inference host,
    # server = camera host).
    cam_cfg = _toml(short_tmp / "cam.toml", frames_bind=f"tcp://127.0.0.1:{fport}", server_secret_key=keys["server_secret"],
                    authorized_keys=keys["authorized"], results_connect=f"tcp://127.0.0.1:{rport}",
                    server_public_key=keys["server_public"], client_secret_key=keys["server_secret"])
    gpu_cfg = _toml(short_tmp / "gpu.toml", frames_connect=f"tcp://127.0.0.1:{fport}", server_public_key=keys["server_public"],
                    client_secret_key=keys["alice"], results_bind=f"tcp://127.0.0.1:{rport}",
                    server_secret_key=keys["server_secret"], authorized_keys=keys["authorized"])
    stages = [Stage("capture", cam / "run", cam_cfg, tiny_models, "--source", str(hamilton)),
              Stage("display", cam / "run", cam_cfg, tiny_models),
              Stage("infer", gpu / "run", gpu_cfg, tiny_models, "--model", "tiny")]
    ctx = zmq.Context.instance()
    socks = []
    try:
        wait_for(lambda: bus.socket_path(gpu / "run", protocol.RESULTS).exists(), 60, what="the infer stage's results socket")
        results = bus.connect(ctx, zmq.SUB, gpu / "run", protocol.RESULTS, hwm=100)
        preview = bus.connect(ctx, zmq.SUB, cam / "run", protocol.PREVIEW, hwm=10, topic=b"preview")
        socks = [results, preview]
        got = wait_for(lambda: _collect(results, b"result", 1.0), 60, what="results on the inference host")
        got += _collect(results, b"result", 3.0)
        assert len(got) > 20 and all(r["model"] == "tiny" for r in got)
        assert sum(len(r["faces"]) for r in got) > 0, "Haar found no face in frames that crossed the link"
        seqs = [r["seq"] for r in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        lat = [r["t_done"] - r["t_capture"] for r in got]
        assert all(0 <= x < 2.0 for x in lat), lat[:5]  # capture time translated onto the inference host's clock
        joined = wait_for(lambda: [h for h in _collect(preview, b"preview", 1.0) if not h["stale"]], 30,
                          what="a preview joined with a result that came back over TCP")
        assert joined[-1]["info"]["model"] == "tiny"
        assert all(s.proc.poll() is None for s in stages), [s.output()[-2000:] for s in stages]
        cam_log = stages[0].output()
        assert "remote frames listening" in cam_log and "remote subscriber attached" in cam_log
    finally:
        for s in socks:
            s.close()
        for s in stages:
            s.stop()


def test_unauthorised_inference_host_gets_no_frames(tiny_models, short_tmp, hamilton) -> None:
    keys = make_keys(short_tmp / "keys")
    fport = free_port()
    cam, gpu = short_tmp / "cam", short_tmp / "gpu"
    cam_cfg = _toml(short_tmp / "cam.toml", frames_bind=f"tcp://127.0.0.1:{fport}", server_secret_key=keys["server_secret"],
                    authorized_keys=keys["authorized"])
    gpu_cfg = _toml(short_tmp / "gpu.toml", frames_connect=f"tcp://127.0.0.1:{fport}", server_public_key=keys["server_public"],
                    client_secret_key=keys["mallory"])
    stages = [Stage("capture", cam / "run", cam_cfg, tiny_models, "--source", str(hamilton)),
              Stage("infer", gpu / "run", gpu_cfg, tiny_models, "--model", "tiny")]
    ctx = zmq.Context.instance()
    results = None
    try:
        wait_for(lambda: bus.socket_path(gpu / "run", protocol.RESULTS).exists(), 60, what="the infer stage's results socket")
        results = bus.connect(ctx, zmq.SUB, gpu / "run", protocol.RESULTS, hwm=100)
        wait_for(lambda: '"remote subscriber refused"' in stages[0].output(), 30, what="the camera host to refuse mallory")
        assert _collect(results, b"result", 3.0) == []
        assert all(s.proc.poll() is None for s in stages)
    finally:
        if results is not None:
            results.close()
        for s in stages:
            s.stop()
