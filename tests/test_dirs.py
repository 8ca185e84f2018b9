"""Runtime and state directories nobody else controls: emod refuses foreign, symlinked or loose ones by name."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from _fixtures import EMOD, Daemon, base_env, hamilton, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import dirs, protocol
from emod.models import registry

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="making a directory owned by another user needs root")


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def emod_run(root: Path, models: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [str(EMOD), "run", "--source", "demo", "--duration", "1", *args]
    return subprocess.run(argv, env=base_env(models), capture_output=True, text=True, timeout=60)


def test_ensure_dir_creates_private_directories(short_tmp) -> None:
    """A missing directory is created 0700 (whatever the umask) and passes the checks."""
    old = os.umask(0)
    try:
        d = dirs.ensure_dir(short_tmp / "a" / "run")
    finally:
        os.umask(old)
    assert mode(d) == 0o700 and dirs.check_dir(d) == d


def test_check_dir_refuses_symlinks_and_loose_modes(short_tmp) -> None:
    """A symlink, a world-writable directory and one writable by a foreign group are refused with the path in the message."""
    real = short_tmp / "real"
    real.mkdir(mode=0o700)
    link = short_tmp / "link"
    link.symlink_to(real)
    with pytest.raises(dirs.UnsafePath, match=rf"{link} is a symlink \(to {real}"):
        dirs.check_dir(link)
    os.chmod(real, 0o777)
    with pytest.raises(dirs.UnsafePath, match=rf"{real} .* writable by others \(mode 0777\)"):
        dirs.check_dir(real)
    os.chmod(real, 0o770)
    os.chown(real, -1, NOBODY if os.geteuid() == 0 else os.getegid())
    if os.geteuid() == 0:
        with pytest.raises(dirs.UnsafePath, match="writable by group"):
            dirs.check_dir(real)
    os.chmod(real, 0o750)
    assert dirs.check_dir(real) == real
    f = real / "model"
    f.write_text("quant\n")
    (real / "alias").symlink_to(f)
    with pytest.raises(dirs.UnsafePath, match="alias is a symlink"):
        dirs.check_file(real / "alias", "persisted model choice")


@as_root
def test_emod_run_refuses_a_runtime_dir_owned_by_another_user(short_tmp, tiny_models) -> None:
    """A runtime directory pre-created by another user makes emod run exit 1, naming the path and that owner."""
    rundir = short_tmp / "run"
    rundir.mkdir(mode=0o755)
    os.chown(rundir, NOBODY, NOBODY)
    r = emod_run(short_tmp, tiny_models, "--runtime-dir", str(rundir), "--state-dir", str(short_tmp / "state"))
    assert r.returncode == 78, r.stderr  # issue 28 kind 5: a runtime directory no emod can serve on is a config error
    assert f"runtime directory {rundir} is owned by" in r.stderr and f"uid {NOBODY}" in r.stderr, r.stderr
    assert list(rundir.iterdir()) == [], "emod wrote into a directory someone else owns"


def test_emod_run_refuses_a_symlinked_runtime_dir(short_tmp, tiny_models) -> None:
    """A runtime directory that is a symlink (e.g. /tmp/emod-UID planted by another user) is refused by name."""
    target = short_tmp / "elsewhere"
    target.mkdir(mode=0o700)
    link = short_tmp / "run"
    link.symlink_to(target)
    r = emod_run(short_tmp, tiny_models, "--runtime-dir", str(link), "--state-dir", str(short_tmp / "state"))
    assert r.returncode == 78 and f"runtime directory {link} is a symlink" in r.stderr, r.stderr
    assert list(target.iterdir()) == []


def test_emod_run_refuses_a_symlinked_model_choice(short_tmp, tiny_models) -> None:
    """A persisted model choice that is a symlink is refused with its path, before any stage starts."""
    state = short_tmp / "state"
    state.mkdir(mode=0o700)
    (short_tmp / "other").write_text("tiny\n")
    (state / "model").symlink_to(short_tmp / "other")
    r = emod_run(short_tmp, tiny_models, "--runtime-dir", str(short_tmp / "run"), "--state-dir", str(state))
    assert r.returncode == 1 and f"persisted model choice {state / 'model'} is a symlink" in r.stderr, r.stderr


@as_root
def test_user_model_owned_by_another_user_is_refused(short_tmp, tiny_models) -> None:
    """A model in STATE_DIR/models whose file another user owns is refused by the registry, naming the file."""
    import shutil

    state = short_tmp / "state"
    (state / "models").mkdir(parents=True, mode=0o700)
    shutil.copytree(tiny_models / "tiny", state / "models" / "mine")
    assert registry.find("mine", state).path == state / "models" / "mine"
    os.chown(state / "models" / "mine" / "model.onnx", NOBODY, NOBODY)
    with pytest.raises(registry.ModelError, match=r"model.onnx is owned by .*uid 65534"):
        registry.find("mine", state)


def test_daemon_creates_private_directories_and_0660_sockets(short_tmp, tiny_models, hamilton) -> None:
    """emod run creates its runtime and state directories 0700 and every socket 0660."""
    d = Daemon(short_tmp, tiny_models, hamilton)
    try:
        socks = [d.rundir / f"{name}.sock" for name in protocol.ENDPOINTS]
        wait_for(lambda: all(p.exists() for p in socks), 60, 0.3, "every socket to be bound")
        modes = {p.name: oct(mode(p)) for p in socks}
        print(f"\nruntime dir {oct(mode(d.rundir))}, state dir {oct(mode(d.statedir))}, sockets {modes}")
        assert mode(d.rundir) == 0o700 and mode(d.statedir) == 0o700
        assert all(m == oct(0o660) for m in modes.values()), modes
    finally:
        d.stop()
