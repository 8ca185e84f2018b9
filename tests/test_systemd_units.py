"""The shipped systemd units: they verify with systemd-analyze and carry the required settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from _system import executable
from emod.cli.install_systemd import DEFAULT_CONFIG, DEFAULT_PREFIX, render_unit
from emod.config import EXIT_CONFIG

UNIT_DIR = Path(__file__).resolve().parent.parent / "systemd"
MAIN = UNIT_DIR / "emod.service"
STAGE = UNIT_DIR / "emod-stage@.service"
INSTANCE = UNIT_DIR / "emod@.service"
VIEW = UNIT_DIR / "emod-view.service"


def parse(path: Path) -> dict[str, dict[str, str]]:
    """A unit file as {section: {key: value}}; a repeated key (Environment=) keeps its values joined by newlines."""
    units: dict[str, dict[str, str]] = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = units.setdefault(line[1:-1], {})
            continue
        assert section is not None and "=" in line, f"{path.name}: stray line {line!r}"
        key, value = (part.strip() for part in line.split("=", 1))
        section[key] = f"{section[key]}\n{value}" if key in section else value
    return units


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """Both units rendered for a stub prefix in tmp_path (verify needs an executable ExecStart)."""
    stub = tmp_path / "venv" / "bin" / "emod"
    stub.parent.mkdir(parents=True)
    for exe in (stub, stub.with_name("emod-view")):
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for src in (MAIN, STAGE, INSTANCE, VIEW):
        text = render_unit(src.read_text(), str(tmp_path / "venv"), str(tmp_path / "emod.toml"))
        assert str(stub) in text  # the rewrite really replaced the shipped prefix
        (units / src.name).write_text(text)
    return units


def _verify(path: Path) -> None:
    exe = executable("systemd", "systemd-analyze")
    r = subprocess.run([exe, "verify", str(path)], capture_output=True, text=True, cwd=path.parent)
    # verify exits 0 on unknown keys or unparsable values but warns; fail on any warning about our units
    ours = [line for line in (r.stdout + r.stderr).splitlines() if any(u in line for u in ("emod.service", "emod-stage@",
                                                                                          "emod@", "emod-view"))]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def test_main_unit_verifies(installed: Path) -> None:
    """systemd-analyze verify accepts emod.service without errors or warnings."""
    _verify(installed / "emod.service")


def test_stage_template_verifies(installed: Path) -> None:
    """systemd-analyze verify accepts an instance of the template, emod-stage@capture.service."""
    _verify(installed / "emod-stage@capture.service")


def test_instance_template_verifies(installed: Path) -> None:
    """systemd-analyze verify accepts an instance of the per-camera template, emod@cam1.service."""
    _verify(installed / "emod@cam1.service")


def test_view_unit_verifies(installed: Path) -> None:
    """systemd-analyze verify accepts emod-view.service (the web page kept up)."""
    _verify(installed / "emod-view.service")


def test_instance_template_directives() -> None:
    """emod@NAME.service: config /etc/emod/NAME.toml, sockets /run/emod/NAME, state /var/lib/emod/NAME, the instance
    named on the command line (emod.bus maps it; the MQTT device id defaults to HOSTNAME-NAME)."""
    svc = parse(INSTANCE)["Service"]
    assert svc["ExecStart"] == f"{DEFAULT_PREFIX}/bin/emod run --instance %i --config /etc/emod/%i.toml"
    assert (svc["RuntimeDirectory"], svc["StateDirectory"]) == ("emod/%i", "emod/%i")
    assert "EMOD_RUNTIME_DIR=/run/emod" in svc["Environment"].split("\n")
    main = parse(MAIN)["Service"]
    for key in ("Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartPreventExitStatus", "KillMode", "User",
                "SupplementaryGroups", "ProtectSystem", "SystemCallFilter", "CapabilityBoundingSet"):
        assert svc[key] == main[key], key


def test_view_unit_directives() -> None:
    """emod-view.service runs emod-view --http on loopback as user emod (who must read the password file)."""
    svc = parse(VIEW)["Service"]
    assert svc["ExecStart"].startswith(f"{DEFAULT_PREFIX}/bin/emod-view --http 127.0.0.1:")
    assert (svc["User"], svc["Group"], svc["Restart"]) == ("emod", "emod", "on-failure")


def test_main_unit_directives() -> None:
    """emod.service is a watchdog-supervised notify service that is not restarted on a config error."""
    svc = parse(MAIN)["Service"]
    assert svc["Type"] == "notify"
    assert svc["NotifyAccess"] == "main"
    assert svc["ExecStart"] == f"{DEFAULT_PREFIX}/bin/emod run --config {DEFAULT_CONFIG}"
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["WatchdogSec"] == "30"
    assert svc["Restart"] == "on-failure"
    assert svc["RestartSec"] == "5"
    assert svc["RestartPreventExitStatus"] == str(EXIT_CONFIG)
    assert svc["TimeoutStopSec"] == "15"
    assert "EMOD_RUNTIME_DIR=/run/emod" in svc["Environment"].split("\n")
    assert parse(MAIN)["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("unit", [MAIN, STAGE, INSTANCE], ids=lambda p: p.name)
def test_user_dirs_and_hardening(unit: Path) -> None:
    """The daemon units run as emod:emod with group video, own /run/emod[/NAME] 0750 and the sandbox, but keep /dev visible."""
    svc = parse(unit)["Service"]
    d = "emod/%i" if unit == INSTANCE else "emod"
    assert (svc["User"], svc["Group"], svc["SupplementaryGroups"]) == ("emod", "emod", "video")
    assert (svc["RuntimeDirectory"], svc["RuntimeDirectoryMode"], svc["StateDirectory"]) == (d, "0750", d)
    for key, value in {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
    }.items():
        assert svc.get(key) == value, key
    # these hide or allow-list devices: the camera, dma_heap, vchiq and vcio would vanish
    for key in ("PrivateDevices", "ProtectClock", "DeviceAllow", "DevicePolicy"):
        assert key not in svc, key


def test_stage_template_directives() -> None:
    """emod-stage@.service runs `emod stage %i` with the same config and restarts on failure."""
    cp = parse(STAGE)
    svc = cp["Service"]
    assert svc["Type"] == "simple"
    assert svc["ExecStart"] == f"{DEFAULT_PREFIX}/bin/emod stage %i --config {DEFAULT_CONFIG}"
    assert svc["Restart"] == "on-failure"
    assert svc["RestartPreventExitStatus"] == str(EXIT_CONFIG)
    assert cp["Unit"]["Conflicts"] == "emod.service"
