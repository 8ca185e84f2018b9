"""`emod doctor`: one verdict per check, the fix, and exit 1 when something would stop emod (picamera2 fakes, a real numpy ABI clash)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _fixtures import EMOD, REPO, base_env, tiny_models  # noqa: F401
from _system import skip_without
from emod.cli.install_systemd import render_unit
from emod.doctor.checks import CHECKS
from emod.sources.picamera2 import is_numpy_abi_error
from emod.testing import write_fake_picamera2

APT_SCIPY = Path("/usr/lib/python3/dist-packages/scipy")  # Debian's python3-scipy: built against numpy 1.24


def doctor(tmp: Path, models: Path, config: str = 'source = "demo"', pythonpath: list[Path] = (), unit_dir: Path | None = None,
           ) -> tuple[int, dict]:
    cfg = tmp / "emod.toml"
    cfg.write_text(f'[daemon]\nruntime_dir = "{tmp / "run"}"\nstate_dir = "{tmp / "state"}"\n[power]\nbackend = "none"\n'
                   f"[capture]\n{config}\n")
    env = base_env(models, PYTHONPATH=os.pathsep.join([*map(str, pythonpath), str(REPO)]))
    r = subprocess.run([str(EMOD), "doctor", "--json", "--config", str(cfg), "--unit-dir", str(unit_dir or tmp / "units")],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.stdout, r.stderr
    return r.returncode, {c["name"]: c for c in json.loads(r.stdout)["checks"]}


def test_doctor_lists_every_check_on_this_machine(tmp_path, tiny_models) -> None:
    """On this machine with a demo source every check reports a one-line verdict, none fails, and the exit status is 0."""
    rc, checks = doctor(tmp_path, tiny_models)
    assert list(checks) == [c.name for c in CHECKS]
    assert all(c["verdict"] and "\n" not in c["verdict"] and c["status"] in ("ok", "warn", "fail") for c in checks.values())
    assert rc == 0, {n: c for n, c in checks.items() if c["status"] == "fail"}
    import cv2
    import numpy
    import onnxruntime

    assert f"numpy {numpy.__version__}" in checks["python"]["verdict"]
    assert f"OpenCV {cv2.__version__}" in checks["python"]["verdict"] and onnxruntime.__version__ in checks["python"]["verdict"]
    assert "quant" in checks["models"]["verdict"] and checks["models"]["status"] == "ok"
    assert checks["systemd"]["status"] == "warn" and "install-systemd" in checks["systemd"]["fix"]
    text = subprocess.run([str(EMOD), "doctor", "--config", str(tmp_path / "emod.toml"), "--unit-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=base_env(tiny_models))
    assert text.returncode == 0 and len([ln for ln in text.stdout.splitlines() if ln[:4].strip() in ("OK", "WARN", "FAIL")]) == len(CHECKS)


@pytest.mark.parametrize("mode, source, status, says, fix", [
    ("numpy-abi", "auto", "fail", "picamera2 is installed but fails to import: ValueError: numpy.dtype size changed", "constraints/pi-"),
    ("no-libcamera", "auto", "fail", "ModuleNotFoundError: No module named 'libcamera'", "apt install --reinstall -y python3-picamera2"),
    ("no-camera", "picamera2", "fail", "picamera2 imports but finds no camera", "rpicam-hello --list-cameras"),
    ("camera", "picamera2", "ok", "camera(s) 0: imx708", None),
])
def test_doctor_names_picamera2_failures(tmp_path, tiny_models, mode, source, status, says, fix) -> None:
    """Each picamera2 fake failure mode is named with its real exception and fix and exits 1; a working camera passes."""
    write_fake_picamera2(tmp_path / "fake", mode)
    rc, checks = doctor(tmp_path, tiny_models, f'source = "{source}"', [tmp_path / "fake"])
    pc = checks["picamera2"]
    assert pc["status"] == status and says in pc["verdict"], pc
    assert (fix is None and pc["fix"] is None) or fix in pc["fix"], pc
    assert rc == (0 if status == "ok" else 1), checks
    if mode == "camera":
        assert checks["cameras"]["status"] == "ok" and checks["cameras"]["details"]["picamera2"] == 1


def test_doctor_names_a_numpy_abi_clash(tmp_path, tiny_models) -> None:
    """Debian's scipy (numpy 1.x ABI) seen from this numpy 2 environment fails to import: doctor names it, gives the fix, exits 1."""
    skip_without("python3-scipy", (APT_SCIPY / "__init__.py").is_file())
    system = tmp_path / "dist-packages"  # apt's folder, holding only scipy (apt's numpy would otherwise shadow ours)
    system.mkdir()
    (system / "scipy").symlink_to(APT_SCIPY)
    rc, checks = doctor(tmp_path, tiny_models, pythonpath=[system])
    abi = checks["numpy-abi"]
    assert rc == 1 and abi["status"] == "fail", abi
    assert "scipy (" in abi["verdict"] and is_numpy_abi_error(abi["verdict"]), abi  # e.g. "numpy.dtype size changed"
    assert "constraints/pi-" in abi["fix"] and "scipy" in abi["details"]["failed"]


def test_doctor_survives_a_library_that_crashes_python_on_import(tmp_path, tiny_models) -> None:
    """An onnxruntime that kills the interpreter on import (as 1.28+ beside numpy 1.x on arm64): named, fix given, exit 1."""
    fake = tmp_path / "fake"
    (fake / "onnxruntime").mkdir(parents=True)
    (fake / "onnxruntime" / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    rc, checks = doctor(tmp_path, tiny_models, pythonpath=[fake])
    py, models = checks["python"], checks["models"]
    assert rc == 1 and py["status"] == "fail", py
    assert "onnxruntime (the import crashed Python (signal 11))" in py["verdict"], py
    assert "constraints/pi-" in py["fix"] and py["details"]["numpy"] and py["details"]["cv2"]
    assert models["status"] == "fail" and "onnxruntime" in models["verdict"], models
    assert checks["config"]["status"] == "ok"  # the checks after it still ran


def test_doctor_needs_no_web_libraries(tmp_path, tiny_models) -> None:
    """Broken aiohttp/argon2 (base dependencies, but a venv can lose them): every check still runs."""
    blocked = tmp_path / "blocked"
    for mod in ("aiohttp", "argon2"):
        (blocked / mod).mkdir(parents=True)
        (blocked / mod / "__init__.py").write_text(f"raise ImportError('{mod} is not installed')\n")
    rc, checks = doctor(tmp_path, tiny_models, pythonpath=[blocked])
    assert all("the check itself failed" not in c["verdict"] for c in checks.values()), checks
    assert checks["security"]["status"] == "ok", checks["security"]


def test_doctor_sees_what_the_service_cannot(tmp_path, tiny_models) -> None:
    """An installed unit whose venv is under /home and whose config is in /tmp fails, naming ProtectHome and PrivateTmp."""
    units = tmp_path / "units"
    units.mkdir()
    shipped = (REPO / "systemd" / "emod.service").read_text()
    (units / "emod.service").write_text(render_unit(shipped, "/home/pi/emod/.venv", "/tmp/emod.toml"))
    rc, checks = doctor(tmp_path, tiny_models, unit_dir=units)
    sd = checks["systemd"]
    assert rc == 1 and sd["status"] == "fail", sd
    assert "ProtectHome=yes hides /home/pi/emod/.venv/bin/emod" in sd["verdict"], sd
    assert "does not exist" in sd["verdict"] and "/opt/emod" in sd["fix"]


def test_doctor_fails_a_bad_config(tmp_path, tiny_models) -> None:
    """An invalid config file is a failed check with `emod validate` as the fix; the other checks still run."""
    rc, checks = doctor(tmp_path, tiny_models, 'source = "demo"\nfps = "fast"')
    assert rc == 1 and checks["config"]["status"] == "fail" and "emod validate" in checks["config"]["fix"], checks["config"]
    assert list(checks) == [c.name for c in CHECKS]


def test_doctor_fails_loose_directories_and_an_open_metrics_bind(tmp_path, tiny_models) -> None:
    """A world-writable state directory and a non-loopback Prometheus bind each make the security check fail, naming them."""
    rc, checks = doctor(tmp_path, tiny_models)
    assert checks["security"]["status"] == "ok", checks["security"]
    (tmp_path / "state").mkdir(mode=0o700)
    os.chmod(tmp_path / "state", 0o777)
    rc, checks = doctor(tmp_path, tiny_models, config='source = "demo"\n[telemetry]\nprometheus = "0.0.0.0:9108"')
    sec = checks["security"]
    assert rc == 1 and sec["status"] == "fail", sec
    assert f"state directory {tmp_path / 'state'}" in sec["verdict"] and "writable by others" in sec["verdict"]
    assert "0.0.0.0:9108" in sec["verdict"] and "chmod o-w" in sec["fix"]


@pytest.mark.parametrize("cmd", ["-m emod.cli.main doctor", "-m emod.cli.main doctor --json", "-m emod.protocol"])
def test_output_into_a_closed_pipe_is_not_an_error(cmd, tmp_path):
    """`emod doctor [--json] | head -n 1` and `python -m emod.protocol | head -n 1`, with a reader that is gone before
    the first write (`| true`): no traceback, and doctor's own verdict (not a broken-pipe failure) is its exit status."""
    r = subprocess.run(["bash", "-c", f"{sys.executable} {cmd} | true; echo \"rc=${{PIPESTATUS[0]}}\" >&2"],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
    assert re.search(r"rc=[01]\b", r.stderr), r.stderr


def test_doctor_lists_two_cameras_and_refuses_a_missing_one(tmp_path, tiny_models) -> None:
    """With the fake's two cameras doctor lists both by number, and fails `picamera2:2`, naming the numbers there are."""
    write_fake_picamera2(tmp_path / "fake", "two-cameras")
    rc, checks = doctor(tmp_path, tiny_models, 'source = "picamera2:2"', [tmp_path / "fake"])
    pc = checks["picamera2"]
    assert pc["status"] == "fail" and "picamera2:2" in pc["verdict"] and "0: imx708, 1: imx477" in pc["verdict"], pc
    assert "N one of 0, 1" in pc["fix"] and rc == 1, pc
    assert "(0: imx708, 1: imx477)" in checks["cameras"]["verdict"] and [c["Num"] for c in pc["details"]["cameras"]] == [0, 1]


def test_mqtt_password_file_must_be_readable_by_the_service_user_only(tmp_path) -> None:
    """check_mqtt_password, for a real user (nobody) and a real file: unreadable fails, world-readable warns, 0640 root:group ok."""
    import pwd
    import tempfile

    from emod import config
    from emod.doctor import Context
    from emod.doctor.readable import check_mqtt_password

    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    user = pwd.getpwnam("nobody")
    d = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        d.chmod(0o755)
        secret = d / "mqtt.pass"
        secret.write_text("s3cret\n")
        cfg = config.load(None, overrides={"mqtt": {"enabled": True, "username": "emod", "password_file": str(secret)}})
        ctx = Context(None, cfg, None, tmp_path, user="nobody")
        os.chown(secret, 0, 0)
        secret.chmod(0o600)
        r = check_mqtt_password(ctx)
        assert r.status == "fail" and "cannot read" in r.verdict and "chown root:nobody" in r.fix and "0640" in r.fix, r
        secret.chmod(0o644)
        assert check_mqtt_password(ctx).status == "warn"
        os.chown(secret, 0, user.pw_gid)
        secret.chmod(0o640)
        assert check_mqtt_password(ctx).status == "ok"
        d.chmod(0o700)  # a parent the user cannot enter
        assert check_mqtt_password(ctx).status == "fail"
    finally:
        d.chmod(0o755)
        import shutil

        shutil.rmtree(d)
