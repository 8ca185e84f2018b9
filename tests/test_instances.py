"""One emod per camera: `emod run -i NAME` (what emod@NAME.service runs) on the fake picamera2's two cameras.

Two instances at once share nothing: sockets, lock, state, history and MQTT topics; each answers its own
`emod-stats -i NAME`. `--source picamera2:N` opens camera N (picamera2's `Picamera2(camera_num=N)`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from pathlib import Path

import pytest

from _fixtures import BIN, EMOD, EMOD_STATS, REPO, TINY, base_env, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import bus
from emod.sources.base import SourceError
from emod.sources.select import open_source
from emod.sources.spec import problem
from emod.testing import write_fake_picamera2


@pytest.fixture
def two_cameras(tmp_path, monkeypatch):
    """`import picamera2` gives the fake with an IMX708 (camera 0) and an IMX477 (camera 1); the folder to put on PYTHONPATH."""
    write_fake_picamera2(tmp_path / "fake", "two-cameras")
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    yield tmp_path / "fake"
    sys.modules.pop("picamera2", None)


def test_picamera2_n_opens_camera_n(two_cameras) -> None:
    frames = {}
    for n, model in ((0, "imx708"), (1, "imx477")):
        with open_source(f"picamera2:{n}", 320, 240, 15.0) as src:
            assert src.cam.camera_idx == n and src.cam.camera_properties["Model"] == model
            frames[n] = src.read()
    assert frames[0].shape == frames[1].shape == (240, 320, 3)
    assert frames[1][..., 0].mean() > frames[0][..., 0].mean() + 100  # BGR: camera 1's fake picture is bluer
    with open_source("picamera2", 320, 240, 15.0) as src:  # plain picamera2 is camera 0
        assert src.cam.camera_idx == 0
    with pytest.raises(SourceError, match=r"no camera 2: it finds 0: imx708, 1: imx477"):
        open_source("picamera2:2").open()


def test_a_malformed_camera_number_is_a_config_error() -> None:
    for spec in ("picamera2:", "picamera2:x", "picamera2:-1", "picamera2:99"):
        assert "picamera2:N needs a camera number" in problem(spec), spec
    assert problem("picamera2:1") is None and problem("picamera2") is None
    r = subprocess.run([str(EMOD), "run", "--source", "picamera2:x"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 78 and "picamera2:N" in r.stderr, r.stderr


def test_instance_directories_have_one_mapping(monkeypatch, tmp_path) -> None:
    """-i NAME puts the runtime and state directories one level down, BASE/NAME; systemd's STATE_DIRECTORY is used as is."""
    monkeypatch.setenv("EMOD_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert bus.runtime_dir() == tmp_path / "run" and bus.runtime_dir(None, "cam1") == tmp_path / "run" / "cam1"
    assert bus.runtime_dir("/x", "cam1") == Path("/x/cam1") and bus.state_dir("/s", "cam1") == Path("/s/cam1")
    monkeypatch.delenv("EMOD_RUNTIME_DIR")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert bus.runtime_dir(None, "cam1") == Path("/run/emod/cam1") and bus.state_dir(None, "cam1") == Path("/var/lib/emod/cam1")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/emod/cam0")  # StateDirectory=emod/%i: already the instance's
    assert bus.state_dir(None, "cam0") == Path("/var/lib/emod/cam0")
    with pytest.raises(ValueError):
        bus.instance_name("../x")


def test_two_instances_share_nothing(short_tmp, tiny_models, two_cameras) -> None:
    """`emod run -i a --source picamera2:0` and `-i b --source picamera2:1` side by side, with [mqtt] on mosquitto."""
    from test_mqtt import Broker, Listener

    broker = Broker(short_tmp)
    broker.start()
    listener = Listener(broker.port)
    cfg = short_tmp / "emod.toml"  # one config, no device_id: each instance is HOSTNAME-NAME
    cfg.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\nkeepalive = 5\n')
    env = base_env(tiny_models, EMOD_RUNTIME_DIR=str(short_tmp / "run"),
                   PYTHONPATH=os.pathsep.join([str(two_cameras), str(REPO)]))
    procs = {}
    try:
        for name, cam in (("a", 0), ("b", 1)):
            log = open(short_tmp / f"{name}.log", "wb")
            procs[name] = subprocess.Popen([str(EMOD), "run", "-i", name, "--source", f"picamera2:{cam}", "--model", TINY,
                                            "--state-dir", str(short_tmp / "state"), "--config", str(cfg)],
                                           env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def stats(name: str) -> dict | None:
            assert procs[name].poll() is None, (short_tmp / f"{name}.log").read_text()[-3000:]
            r = subprocess.run([str(EMOD_STATS), "-i", name, "--json"], capture_output=True, text=True, env=env, timeout=30)
            s = json.loads(r.stdout) if r.returncode == 0 else None
            return s if s and s["frames"]["processed"] > 0 else None

        snaps = {n: wait_for(lambda n=n: stats(n), 60, 0.5, f"instance {n} to process frames") for n in procs}
        assert {n: s["source"]["name"] for n, s in snaps.items()} == {"a": "picamera2:0", "b": "picamera2:1"}
        host = __import__("re").sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())
        for name in procs:
            rundir = short_tmp / "run" / name
            socks = sorted(p.name for p in rundir.glob("*.sock"))
            assert "control.sock" in socks and "preview.sock" in socks and (rundir / "emod.lock").is_file(), socks
            wait_for(lambda n=name: (short_tmp / "state" / n / "telemetry.jsonl").is_file(), 20, what=f"{name}'s history")
            avail = wait_for(lambda n=name: listener.get(f"emod/{host}-{n}/availability"), 20, what=f"{name} online")
            assert avail[-1][0] == "online"
            wait_for(lambda n=name: listener.get(f"homeassistant/sensor/{host}-{n}/dominant_emotion/config"), 20,
                     what=f"{name}'s discovery config")
        assert {p.resolve() for p in (short_tmp / "run" / "a").iterdir()}.isdisjoint(
            p.resolve() for p in (short_tmp / "run" / "b").iterdir())
        a_pids = {s["pid"] for s in snaps["a"]["stages"].values()}
        b_pids = {s["pid"] for s in snaps["b"]["stages"].values()}
        assert a_pids.isdisjoint(b_pids)
        for name in procs:
            procs[name].terminate()
            assert procs[name].wait(30) == 0, (short_tmp / f"{name}.log").read_text()[-3000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait(10)
        listener.close()
        broker.stop()
