"""`emod install-systemd`: the action list, --dry-run changing nothing, and a sandboxed real run."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from emod import config
from emod.cli import install_systemd as inst

REPO = Path(__file__).resolve().parent.parent


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def fresh_machine(monkeypatch):
    """Pretend user and group emod do not exist yet (group video does) and no system command may run."""
    monkeypatch.setattr(inst, "_exists", lambda lookup, name: name == "video")
    ran: list[list[str]] = []
    monkeypatch.setattr(inst, "_run_cmd", ran.append)
    monkeypatch.setattr(inst.subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    return ran


def args(tmp_path: Path, *extra: str) -> list[str]:
    # tmp_path is under /tmp, which the service cannot see (PrivateTmp): --force installs there anyway
    return ["--config", str(tmp_path / "etc" / "emod.toml"), "--unit-dir", str(tmp_path / "units"), "--force", *extra]


def test_dry_run_lists_every_action_and_changes_nothing(tmp_path, fresh_machine, capsys) -> None:
    """--dry-run prints user/group creation, config, both units, daemon-reload and enable as 'would:' lines and touches nothing."""
    (tmp_path / "keep").write_text("x")
    before = snapshot(tmp_path)
    assert inst.main(["--dry-run", *args(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("would: ") for line in lines)
    text = "\n".join(lines)
    assert "would: groupadd --system emod" in lines
    useradd = next(line for line in lines if " useradd " in f" {line} ")
    for part in ("--system", "--gid emod", "--home-dir /var/lib/emod", "--groups video", "nologin", " emod"):
        assert part in useradd
    assert f"would: write default config {tmp_path / 'etc' / 'emod.toml'}" in lines
    assert f"{tmp_path / 'units' / 'emod.service'}" in text
    assert f"{tmp_path / 'units' / 'emod-stage@.service'}" in text
    assert lines[-2:] == ["would: systemctl daemon-reload", "would: systemctl enable emod.service"]
    assert fresh_machine == []  # no command ran
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_dry_run_as_module(tmp_path) -> None:
    """`python -m emod.cli.install_systemd --dry-run` exits 0, prints only 'would:' actions and creates no files."""
    r = subprocess.run(
        [sys.executable, "-m", "emod.cli.install_systemd", "--dry-run", *args(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(line.startswith("would: ") for line in lines)
    assert any("useradd" in line or "usermod" in line for line in lines)  # depends on whether user emod exists
    assert any("default config" in line for line in lines)
    assert "would: systemctl daemon-reload" in lines and "would: systemctl enable emod.service" in lines
    assert list(tmp_path.iterdir()) == []


def test_existing_config_kept_and_no_enable(tmp_path, fresh_machine, capsys) -> None:
    """An existing config is listed as kept (never rewritten) and --no-enable drops the enable step."""
    cfg = tmp_path / "etc" / "emod.toml"
    cfg.parent.mkdir()
    cfg.write_text("[capture]\nsource = \"demo\"\n")
    assert inst.main(["--dry-run", "--no-enable", *args(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"would: keep existing config {cfg}" in out and "write default config" not in out
    assert "enable" not in out and "would: systemctl daemon-reload" in out


def test_requires_root_unless_dry_run(tmp_path, fresh_machine, monkeypatch, capsys) -> None:
    """Without --dry-run a non-root user gets a clear error and exit status 1, and nothing happens."""
    monkeypatch.setattr(inst.os, "geteuid", lambda: 1000)
    assert inst.main(args(tmp_path)) == 1
    assert "must run as root" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [] and fresh_machine == []
    assert inst.main(["--dry-run", *args(tmp_path)]) == 0


def test_real_run_does_what_dry_run_lists(tmp_path, fresh_machine, monkeypatch, capsys) -> None:
    """A real run (system commands stubbed) prints the dry-run list without 'would:', writes the config and the rewritten units."""
    monkeypatch.setattr(inst.os, "geteuid", lambda: 0)
    argv = [*args(tmp_path), "--prefix", str(tmp_path / "venv")]
    assert inst.main(["--dry-run", *argv]) == 0
    planned = [line.removeprefix("would: ") for line in capsys.readouterr().out.splitlines()]
    assert inst.main(argv) == 0
    done = capsys.readouterr().out.splitlines()
    assert done[:-1] == planned and done[-1].startswith("done")
    assert [c[0] for c in fresh_machine] == ["groupadd", "useradd", "systemctl", "systemctl"]
    assert fresh_machine[-1] == ["systemctl", "enable", "emod.service"]

    cfg = tmp_path / "etc" / "emod.toml"
    assert cfg.read_text() == config.default_toml()
    assert config.load(cfg, env={}) == config.Config()  # the written file is valid and means the defaults
    unit = (tmp_path / "units" / "emod.service").read_text()
    assert f"ExecStart={tmp_path}/venv/bin/emod run --config {cfg}\n" in unit
    stage = (tmp_path / "units" / "emod-stage@.service").read_text()
    assert f"ExecStart={tmp_path}/venv/bin/emod stage %i --config {cfg}\n" in stage

    cfg.write_text("# mine\n")
    assert inst.main(argv) == 0  # a second run keeps the edited config
    assert cfg.read_text() == "# mine\n"


def test_missing_unit_folder_is_a_clear_error(tmp_path, fresh_machine, monkeypatch, capsys) -> None:
    """When no systemd/ folder is found beside the package, the installer says where it looked and exits 1."""
    fake = types.SimpleNamespace(__file__=str(tmp_path / "site" / "emod" / "__init__.py"))
    monkeypatch.setattr(inst, "emod", fake)
    monkeypatch.setattr(inst.sys, "prefix", str(tmp_path / "prefix"))
    assert inst.main(["--dry-run", *args(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and str(tmp_path / "site" / "systemd") in err


def test_rejects_unsafe_paths(tmp_path, fresh_machine, capsys) -> None:
    """A relative --prefix or one that systemd would misparse (spaces, %) is refused with exit 1."""
    assert inst.main(["--dry-run", "--prefix", "venv", *args(tmp_path)]) == 1
    assert inst.main(["--dry-run", "--prefix", "/opt/my env", *args(tmp_path)]) == 1
    assert "--prefix" in capsys.readouterr().err


@pytest.mark.parametrize("option, where", [("--prefix", "/tmp/venv"), ("--prefix", "/home/alice/emod/.venv"),
                                           ("--config", "/root/emod.toml"), ("--prefix", "/var/tmp/emod")])
def test_a_prefix_the_service_cannot_see_is_refused_without_force(tmp_path, fresh_machine, capsys, option, where) -> None:
    """A venv or config under /tmp, /var/tmp, /home or /root (hidden by PrivateTmp/ProtectHome) is refused (exit 2) unless --force, which warns."""
    base = ["--dry-run", "--unit-dir", "/etc/systemd/system"]
    other = ["--config", "/etc/emod/emod.toml"] if option == "--prefix" else []
    assert inst.main([*base, *other, option, where]) == 2
    err = capsys.readouterr().err
    assert where in err and ("PrivateTmp" in err or "ProtectHome" in err) and "--force" in err
    assert inst.main([*base, *other, option, where, "--force"]) == 0
    out = capsys.readouterr()
    assert "warning" in out.err and where in out.err and out.out.startswith("would: ")


def test_a_symlink_into_home_is_seen_through(fresh_machine, capsys) -> None:
    """A prefix that looks fine but is a symlink into /home is refused too (the real path counts)."""
    import os
    import tempfile

    if not os.path.isdir("/dev/shm"):
        pytest.skip("needs /dev/shm for a symlink outside /tmp")
    d = tempfile.mkdtemp(dir="/dev/shm")
    try:
        link = os.path.join(d, "venv")
        os.symlink("/home/alice/emod/.venv", link)
        assert inst.main(["--dry-run", "--unit-dir", "/etc/systemd/system", "--config", "/etc/emod/emod.toml", "--prefix", link]) == 2
        assert link in capsys.readouterr().err
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
