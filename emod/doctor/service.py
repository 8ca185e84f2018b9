"""``emod doctor``'s host checks: writable directories, the config, and the systemd unit's view of the paths it needs."""

from __future__ import annotations

import os
from pathlib import Path

from emod.doctor import Context, Result, fail, ok, warn


def _writable(p: Path) -> bool:
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def check_dirs(ctx: Context) -> Result:
    import pwd

    from emod import bus

    dirs = {"runtime": bus.runtime_dir(ctx.cfg.daemon.runtime_dir or None), "state": bus.state_dir(ctx.cfg.daemon.state_dir or None)}
    details = {k: str(v) for k, v in dirs.items()}
    blocked = [f"{k} {v}" for k, v in dirs.items() if not _writable(v)]
    if not blocked:
        return ok("writable: " + ", ".join(f"{k} {v}" for k, v in dirs.items()), **details)
    owners = set()
    for v in dirs.values():
        try:
            owners.add(pwd.getpwuid(v.stat().st_uid).pw_name)
        except (OSError, KeyError):
            owners.add(None)
    if owners == {ctx.user}:
        return warn(f"not writable by you, but by the service user {ctx.user}: {', '.join(blocked)}",
                    f"use emod-ctl/emod-stats (group {ctx.user}) or pass --runtime-dir/--state-dir to run by hand", **details)
    return fail("not writable: " + ", ".join(blocked), "create them for the user that runs emod "
                "(sudo install -d -o $USER DIR), or set [daemon] runtime_dir / state_dir", **details)


def check_config(ctx: Context) -> Result:
    if ctx.config_error:
        return fail(f"{ctx.config_path}: {ctx.config_error}", f"fix it, then `emod validate {ctx.config_path}`")
    if ctx.config_path is None:
        return ok("no config file: defaults (the service reads /etc/emod/emod.toml)")
    return ok(f"{ctx.config_path}: valid")


def check_preflight(ctx: Context) -> Result:
    """The checks of ``emod validate`` on what the config points at (:mod:`emod.preflight`): the same lines.

    A runtime directory emod cannot serve on fails (emod does not start); an unusable MQTT or Prometheus setting
    warns: emod runs, and that optional part reports the same problem until it is fixed.
    """
    from emod import preflight

    found = preflight.problems(ctx.cfg)
    if not found:
        return ok("MQTT credentials, Prometheus port and runtime directory path usable")
    fix = "fix each, then `emod validate" + (f" {ctx.config_path}`" if ctx.config_path else " FILE`")
    if any(p.startswith("daemon.") for p in found):
        return fail("; ".join(found), fix, problems=found)
    return warn("; ".join(found) + " (emod runs without this optional part)", fix, problems=found)


def _unit_settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if "=" in line and not line.startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def hidden_from_service(path: str, settings: dict[str, str]) -> str | None:
    """Why the unit's sandbox hides PATH from the service (ProtectHome, PrivateTmp), or None."""
    p = os.path.abspath(path)
    home = settings.get("ProtectHome", "no").lower()
    if home in ("yes", "true", "1", "tmpfs") and any(p == d or p.startswith(d + "/") for d in ("/home", "/root", "/run/user")):
        return f"ProtectHome={settings['ProtectHome']} hides {p}"
    if settings.get("PrivateTmp", "no").lower() in ("yes", "true", "1") and any(p.startswith(d + "/") for d in ("/tmp", "/var/tmp")):
        return f"PrivateTmp=yes gives the service its own /tmp: it cannot see {p}"
    return None


def check_systemd(ctx: Context) -> Result:
    from emod import config as emod_config

    unit = ctx.unit_dir / "emod.service"
    if not unit.is_file():
        return warn(f"the service is not installed ({unit} missing): emod runs only by hand",
                    "sudo .venv/bin/emod install-systemd  (in /opt/emod)", unit=str(unit))
    settings = _unit_settings(unit.read_text())
    argv = settings.get("ExecStart", "").split()
    details = {"unit": str(unit), "ExecStart": settings.get("ExecStart"), "ProtectHome": settings.get("ProtectHome"),
               "PrivateTmp": settings.get("PrivateTmp")}
    paths = {"ExecStart": argv[0]} if argv else {}
    if "--config" in argv[:-1]:
        paths["config"] = argv[argv.index("--config") + 1]
    problems = [f"{what} {p} does not exist" for what, p in paths.items() if not Path(p).exists()]
    try:
        cfg = emod_config.load(paths["config"]) if "config" in paths and Path(paths["config"]).is_file() else None
    except emod_config.ConfigError as e:
        problems.append(f"its config {paths['config']} is invalid: {e}")
        cfg = None
    if cfg is not None:
        src = cfg.capture.source
        if src not in ("auto", "picamera2", "demo") and not src.startswith(("/dev/", "picamera2:")) and "://" not in src:
            paths["[capture] source"] = src
        for k in ("yunet_model",):
            if getattr(cfg.infer, k, ""):
                paths[f"[infer] {k}"] = getattr(cfg.infer, k)
    if os.environ.get("EMOD_MODELS_DIR"):
        paths["EMOD_MODELS_DIR (yours; the unit does not set it)"] = os.environ["EMOD_MODELS_DIR"]
    problems += [f"{what}: {why}" for what, p in paths.items() if (why := hidden_from_service(p, settings))]
    details["paths"] = paths
    if problems:
        return fail(f"{unit}: " + "; ".join(problems), "install emod under /opt/emod (docs/install.md) "
                    "and keep files the service reads outside /home and /tmp, e.g. under /var/lib/emod", **details)
    return ok(f"{unit} installed; its paths are visible to the service (ProtectHome={settings.get('ProtectHome', 'no')}, "
              f"PrivateTmp={settings.get('PrivateTmp', 'no')})", **details)
