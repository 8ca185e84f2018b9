"""Remote viewing over TCP with CURVE: keygen, the [remote] config checks, and a real daemon that serves only authorised viewers."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from _fixtures import BIN, Daemon, clip, free_port, hamilton, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import config, remote
from emod.cli import keygen
from emod.viewer.receiver import Receiver


def make_keys(root: Path) -> dict[str, Path]:
    """Server, an authorised viewer (alice) and an unknown one (mallory); alice's public key is authorised."""
    assert keygen.main([str(root / "server")]) == 0
    assert keygen.main([str(root / "alice"), "--name", "alice"]) == 0
    assert keygen.main([str(root / "mallory"), "--name", "mallory"]) == 0
    auth = root / "authorized"
    auth.mkdir()
    shutil.copy(root / "alice" / "alice.key", auth)
    return {"server_public": root / "server" / "server.key", "server_secret": root / "server" / "server.key_secret",
            "alice": root / "alice" / "alice.key_secret", "mallory": root / "mallory" / "mallory.key_secret",
            "mallory_public": root / "mallory" / "mallory.key", "authorized": auth}


def test_keygen_writes_a_private_keypair(tmp_path, capsys) -> None:
    """keygen writes NAME.key and a 0600 NAME.key_secret, explains their use, and refuses to overwrite without --force."""
    assert keygen.main([str(tmp_path / "k"), "--name", "bob"]) == 0
    out = capsys.readouterr().out
    pub, sec = tmp_path / "k" / "bob.key", tmp_path / "k" / "bob.key_secret"
    assert stat.S_IMODE(sec.stat().st_mode) == 0o600 and "authorized_keys" in out and "emod-view --connect" in out
    public, secret = zmq.auth.load_certificate(sec)
    assert secret and zmq.auth.load_certificate(pub) == (public, None)
    assert keygen.main([str(tmp_path / "k"), "--name", "bob"]) == 2  # a refused request: the exit-code table (emod.protocol.EXIT_USAGE)
    assert keygen.main([str(tmp_path / "k"), "--name", "bob", "--force"]) == 0
    assert zmq.auth.load_certificate(pub)[0] != public
    with pytest.raises(SystemExit):
        keygen.main([str(tmp_path / "k"), "--name", "../evil"])


def test_enabling_remote_without_keys_is_a_config_error(tmp_path) -> None:
    """[remote] enabled without a server secret key or an authorized_keys directory raises a ConfigError naming the key."""
    keys = make_keys(tmp_path)
    with pytest.raises(config.ConfigError, match="server_secret_key"):
        config.load(None, env={}, overrides={"remote": {"enabled": True}})  # refused before anything starts
    cfg = config.Config()
    cfg.remote.enabled = True
    with pytest.raises(config.ConfigError, match="server_secret_key"):
        remote.check(cfg.remote)
    cfg.remote.server_secret_key = str(keys["server_public"])  # the public half is not enough
    with pytest.raises(config.ConfigError, match="no secret key"):
        remote.check(cfg.remote)
    cfg.remote.server_secret_key = str(keys["server_secret"])
    with pytest.raises(config.ConfigError, match="authorized_keys"):
        remote.check(cfg.remote)
    cfg.remote.authorized_keys = str(tmp_path / "missing")
    with pytest.raises(config.ConfigError, match="no such directory"):
        remote.check(cfg.remote)
    cfg.remote.authorized_keys = str(keys["authorized"])
    remote.check(cfg.remote)
    assert remote.open_publisher(zmq.Context.instance(), config.Config(), None) is None  # disabled: nothing opens


def test_only_authorised_viewers_get_frames(tiny_models, short_tmp, hamilton) -> None:
    """An authorised CURVE client gets preview frames; an unknown key and a plain client get none, and the refusal is logged."""
    keys = make_keys(short_tmp / "keys")
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    toml = short_tmp / "emod.toml"
    toml.write_text(f'[remote]\nenabled = true\npreview_bind = "{endpoint}"\n'
                    f'server_secret_key = "{keys["server_secret"]}"\nauthorized_keys = "{keys["authorized"]}"\n')
    d = Daemon(short_tmp, tiny_models, hamilton, args=("--config", str(toml)))
    ctx = zmq.Context.instance()
    receivers = []
    try:
        d.wait_processing()
        wait_for(lambda: "remote preview listening" in d.output(), 20, what="the remote publisher")
        alice = Receiver(remote.connect_subscriber(ctx, endpoint, str(keys["server_public"]), str(keys["alice"])))
        mallory = Receiver(remote.connect_subscriber(ctx, endpoint, str(keys["server_public"]), str(keys["mallory"])))
        plain = ctx.socket(zmq.SUB)
        plain.setsockopt(zmq.SUBSCRIBE, b"")
        plain.connect(endpoint)
        receivers = [alice, mallory, Receiver(plain)]
        for r in receivers:
            r.acquire()
        f = alice.wait(timeout=20)
        assert f is not None, "the authorised viewer got no frame"
        assert f.jpeg[:3] == b"\xff\xd8\xff" and f.header["info"]["model"] == "tiny"
        wait_for(lambda: alice.received > 5, 20, what="the authorised viewer to receive more frames")
        assert mallory.latest is None and receivers[2].latest is None, "an unauthorised viewer received frames"
        mallory_key = zmq.auth.load_certificate(keys["mallory_public"])[0].decode()

        def refusal():
            for line in d.output().splitlines():
                if '"remote subscriber refused"' in line:
                    rec = json.loads(line)
                    if rec.get("client_key") == mallory_key:
                        return rec
            return None

        rec = wait_for(refusal, 10, what="the daemon to log the refusal of mallory's key")
        assert rec["level"] == "warning" and rec["stage"] == "display"
        # libzmq reports a NULL-mechanism client as a protocol error or as "no detail", depending on timing
        wait_for(lambda: "handshake protocol error" in d.output() or "handshake failed" in d.output(), 15,
                 what="the plain (non-CURVE) client's refusal in the log")

        # the CLI end to end, and remote telemetry from the preview header
        r = subprocess.run([str(BIN / "emod-view"), "--connect", endpoint, "--server-key", str(keys["server_public"]),
                            "--client-key", str(keys["alice"]), "--snapshot", str(short_tmp / "r.jpg"), "--timeout", "20"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert (short_tmp / "r.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
        # emod events over the same CURVE link
        r = subprocess.run([str(BIN / "emod"), "events", "--connect", endpoint, "--server-key", str(keys["server_public"]),
                            "--client-key", str(keys["alice"]), "--json", "--count", "3", "--timeout", "20"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert [json.loads(line)["model"] for line in r.stdout.splitlines()] == ["tiny"] * 3
        from emod.viewer.sampler import StatsSampler

        sampler = StatsSampler(alice, remote=True)
        sampler.last_request = time.monotonic()
        s = wait_for(lambda: sampler.latest if sampler.latest.get("ok") else None, 10, what="a remote stats sample")
        sampler.close()
        assert s["source"] == "preview" and s["model"] == "tiny" and s["fps"] is not None
        assert d.proc.poll() is None
    finally:
        for r in receivers:
            r.close()
        d.stop()
