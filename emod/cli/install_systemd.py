"""``emod install-systemd``: install emod as a systemd service (run as root).

Actions, in order, each printed as it is taken (``--dry-run`` prints the same list
prefixed with ``would:`` and changes nothing):

1. create the system group ``emod`` and the system user ``emod`` (home
   ``/var/lib/emod``, no login shell, primary group ``emod``, supplementary group
   ``video`` for the camera, ``/dev/dma_heap``, ``/dev/vchiq`` and ``/dev/vcio``); an
   existing user is only added to ``video``;
2. write the default configuration (:func:`emod.config.default_toml`) to ``--config``
   unless that file exists: an existing file is never overwritten;
3. copy ``emod.service``, ``emod-stage@.service``, ``emod@.service`` (one emod per camera) and
   ``emod-view.service`` (the web page) from the ``systemd/`` folder beside the ``emod`` package
   (or a wheel's ``share/emod/systemd``) into ``--unit-dir``, with the ``/opt/emod/.venv`` prefix
   and the ``/etc/emod/emod.toml`` path replaced by ``--prefix`` and ``--config``;
4. ``systemctl daemon-reload`` and, unless ``--no-enable``, ``systemctl enable emod.service``
   (it is not started: ``systemctl start emod``).

``--instance NAME`` installs the same units but writes the config ``/etc/emod/NAME.toml`` and
enables ``emod@NAME.service`` instead: one emod per camera, each with its own sockets
(``/run/emod/NAME``), state (``/var/lib/emod/NAME``) and MQTT device id. Run it once per camera,
then set ``[capture] source = "picamera2:N"`` in each config.

Access for other users: the service's runtime directory ``/run/emod`` is created by
systemd with mode 0750, owner ``emod``, group ``emod``, and emod creates its sockets
there with mode 0660. So a user may use ``emod-view``, ``emod-stats`` and ``emod-ctl``
against the service once in group ``emod``:
``sudo usermod -a -G emod alice`` (then log in again). Nobody else can reach the sockets.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import emod
from emod import config
from emod.cli.argtypes import instance as instance_arg

USER = GROUP = "emod"
HOME = "/var/lib/emod"
DEVICE_GROUPS = ("video",)
UNITS = ("emod.service", "emod-stage@.service", "emod@.service", "emod-view.service")
INSTANCE_CONFIG = "/etc/emod/{}.toml"  # as written in emod@.service (/etc/emod/%i.toml)
DEFAULT_PREFIX = "/opt/emod/.venv"  # as written in the shipped unit files
DEFAULT_CONFIG = "/etc/emod/emod.toml"
DEFAULT_UNIT_DIR = "/etc/systemd/system"


class InstallError(RuntimeError):
    pass


@dataclass
class Action:
    """One step: ``text`` is printed; ``run`` does it (None: nothing to do, e.g. keep a file)."""

    text: str
    run: Callable[[], None] | None = None


def unit_source_dir() -> Path:
    """The shipped ``systemd/`` folder: beside the ``emod`` package (source checkout or
    editable install), else ``<prefix>/share/emod/systemd`` (a wheel's data files)."""
    candidates = [Path(emod.__file__).resolve().parent.parent / "systemd", Path(sys.prefix) / "share" / "emod" / "systemd"]
    for d in candidates:
        if all((d / u).is_file() for u in UNITS):
            return d
    raise InstallError(
        f"unit files {', '.join(UNITS)} not found; looked in: {', '.join(map(str, candidates))}"
    )


def _check_path(option: str, value: str) -> str:
    # the value is pasted into ExecStart=: no quoting or specifier escaping is attempted
    if not value.startswith("/") or any(c.isspace() or c in "%$\"'\\" for c in value):
        raise InstallError(f"{option} {value!r}: must be an absolute path without spaces, quotes, '%', '$' or '\\'")
    return value.rstrip("/") or "/"


#: what the unit's sandbox hides from the service (emod.service: PrivateTmp=yes, ProtectHome=yes)
HIDDEN = (("/tmp", "PrivateTmp"), ("/var/tmp", "PrivateTmp"), ("/home", "ProtectHome"), ("/root", "ProtectHome"),
          ("/run/user", "ProtectHome"))


def hidden_from_service(path: str) -> str | None:
    """Why the service cannot see PATH (symlinks resolved), e.g. "/tmp is private to the service (PrivateTmp)"; else None."""
    for candidate in dict.fromkeys((path, os.path.realpath(path))):
        for root, setting in HIDDEN:
            if candidate == root or candidate.startswith(root + "/"):
                return f"{root} is hidden from the service by {setting}=yes"
    return None


def render_unit(text: str, prefix: str, config_path: str) -> str:
    """A shipped unit's text for another install prefix and config file path."""
    return text.replace(f"{DEFAULT_PREFIX}/bin/emod", f"{prefix}/bin/emod").replace(
        f"--config {DEFAULT_CONFIG}", f"--config {config_path}"
    )


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def _run_cmd(argv: list[str]) -> None:
    """Run a system command; a missing tool or non-zero exit is an :class:`InstallError`."""
    if shutil.which(argv[0]) is None:
        raise InstallError(f"{argv[0]}: command not found")
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise InstallError(f"{shlex.join(argv)} failed (exit {r.returncode}): {r.stdout.strip()}")


def _cmd(argv: list[str]) -> Action:
    return Action(shlex.join(argv), lambda: _run_cmd(argv))


def _nologin() -> str:
    return next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "/bin/false")


def _write_new(path: Path, text: str, mode: int) -> None:
    # O_EXCL: never replace a file that appeared meanwhile
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def plan(prefix: str, config_path: str, unit_dir: str, enable: bool, instance: str | None = None) -> list[Action]:
    """The actions an install takes on this machine now (reads state, changes nothing)."""
    src = unit_source_dir()
    actions: list[Action] = []
    groups = [g for g in DEVICE_GROUPS if _exists(grp.getgrnam, g)]
    if not _exists(grp.getgrnam, GROUP):
        actions.append(_cmd(["groupadd", "--system", GROUP]))
    if not _exists(pwd.getpwnam, USER):
        argv = ["useradd", "--system", "--gid", GROUP, "--home-dir", HOME, "--no-create-home", "--shell", _nologin()]
        argv += ["--comment", "emod facial-emotion daemon"]
        actions.append(_cmd(argv + (["--groups", ",".join(groups)] if groups else []) + [USER]))
    elif groups:
        actions.append(_cmd(["usermod", "--append", "--groups", ",".join(groups), USER]))

    cfg = Path(config_path)
    if cfg.exists():
        actions.append(Action(f"keep existing config {cfg}"))
    else:
        if not cfg.parent.is_dir():
            actions.append(Action(f"mkdir {cfg.parent}", lambda: cfg.parent.mkdir(mode=0o755, parents=True, exist_ok=True)))
        actions.append(Action(f"write default config {cfg}", lambda: _write_new(cfg, config.default_toml(), 0o644)))

    udir = Path(unit_dir)
    if not udir.is_dir():
        actions.append(Action(f"mkdir {udir}", lambda: udir.mkdir(mode=0o755, parents=True, exist_ok=True)))
    unit_config = DEFAULT_CONFIG if instance else config_path  # emod@.service names /etc/emod/%i.toml itself
    for name in UNITS:
        text = render_unit((src / name).read_text(), prefix, unit_config)
        what = f"install {src / name} -> {udir / name}"
        if (prefix, unit_config) != (DEFAULT_PREFIX, DEFAULT_CONFIG):
            what += f" (for {prefix}/bin/emod --config {unit_config})"
        actions.append(Action(what, lambda p=udir / name, t=text: _write(p, t)))

    actions.append(_cmd(["systemctl", "daemon-reload"]))
    if enable:
        actions.append(_cmd(["systemctl", "enable", f"emod@{instance}.service" if instance else "emod.service"]))
    return actions


def main(argv: list[str] | None = None) -> int:
    """``emod install-systemd [--dry-run] [--prefix P] [--config F] [--unit-dir D] [--no-enable]``."""
    p = argparse.ArgumentParser(prog="emod install-systemd", description="Install emod as a systemd service (as root).")
    p.add_argument("--dry-run", action="store_true", help="print the actions (prefixed 'would:') and change nothing")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="virtual environment holding bin/emod (default %(default)s)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="config file; written only if absent (default %(default)s)")
    p.add_argument("--unit-dir", default=DEFAULT_UNIT_DIR, help="where the unit files go (default %(default)s)")
    p.add_argument("--no-enable", action="store_true", help="do not run 'systemctl enable emod.service'")
    p.add_argument("--instance", type=instance_arg, metavar="NAME",
                   help="one emod per camera: config /etc/emod/NAME.toml, enable emod@NAME.service")
    p.add_argument("--force", action="store_true", help="install even where the service cannot see --prefix or --config")
    args = p.parse_args(argv)
    if args.instance:
        if args.config != DEFAULT_CONFIG:
            p.error("--instance NAME uses /etc/emod/NAME.toml (emod@.service names it): drop --config")
        args.config = INSTANCE_CONFIG.format(args.instance)

    if not args.dry_run and os.geteuid() != 0:
        print("emod install-systemd: must run as root (use sudo, or --dry-run to see the actions)", file=sys.stderr)
        return 1  # emod.protocol.EXIT_FAILURE
    try:
        prefix = _check_path("--prefix", args.prefix)
        config_path = _check_path("--config", args.config)
        unit_dir = _check_path("--unit-dir", args.unit_dir)
        for option, value in (("--prefix", prefix), ("--config", config_path)):
            if (why := hidden_from_service(value)) is not None:
                msg = f"{option} {value}: {why}, so the service would not start; install emod elsewhere (e.g. /opt/emod)"
                if not args.force:
                    print(f"emod install-systemd: error: {msg} (or --force)", file=sys.stderr)
                    return 2  # a refused request (emod.protocol.EXIT_USAGE)
                print(f"emod install-systemd: warning: {msg}", file=sys.stderr)
        actions = plan(prefix, config_path, unit_dir, enable=not args.no_enable, instance=args.instance)
        if not os.access(f"{prefix}/bin/emod", os.X_OK):
            print(f"emod install-systemd: note: {prefix}/bin/emod does not exist (yet); see --prefix", file=sys.stderr)
        for action in actions:
            if args.dry_run:
                print(f"would: {action.text}", flush=True)
                continue
            print(action.text, flush=True)
            if action.run is not None:
                action.run()
    except (InstallError, OSError) as e:
        print(f"emod install-systemd: error: {e}", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(f"done; start it with: systemctl start {f'emod@{args.instance}' if args.instance else 'emod'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
