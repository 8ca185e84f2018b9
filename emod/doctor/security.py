"""``emod doctor``'s security check: who could control emod's directories, and what is served unauthenticated.

Fails when the runtime or state directory (or a file emod reads there, or the viewer's
password file) would be refused by :mod:`emod.dirs` (someone else's, a symlink, writable by
others), or when ``telemetry.prometheus`` binds a non-loopback address: that endpoint has no
login, so anyone on the network reads the telemetry. ``emod-view --http`` needs no check here:
it refuses a non-loopback bind without credentials by itself.
"""

from __future__ import annotations

import os

from emod.doctor import Context, Result, fail, ok


def check_security(ctx: Context) -> Result:
    from emod import bus, dirs
    from emod.viewer.auth import default_passwd_file
    from emod.netaddr import is_loopback

    problems, fixes = [], []
    rundir, state = bus.runtime_dir(ctx.cfg.daemon.runtime_dir or None), bus.state_dir(ctx.cfg.daemon.state_dir or None)
    paths = [(rundir, "runtime directory", dirs.check_dir), (state, "state directory", dirs.check_dir),
             (state / "model", "persisted model choice", dirs.check_file),
             (state / "telemetry.jsonl", "telemetry history", dirs.check_file),
             (default_passwd_file(), "password file", dirs.check_file)]
    for path, what, check in paths:
        if not os.path.lexists(path):
            continue
        try:
            check(path, what)
        except dirs.UnsafePath as e:
            problems.append(str(e).split(": ")[0])
            fixes.append(str(e).rsplit(": ", 1)[-1])
        except OSError:
            pass  # unreadable for this user: the dirs check says so
    prom = ctx.cfg.telemetry.prometheus
    if prom:
        host = prom.rpartition(":")[0].strip("[]") or "127.0.0.1"
        if not is_loopback(host):
            problems.append(f"telemetry.prometheus = {prom!r} serves /metrics to the network without a login")
            fixes.append("bind 127.0.0.1 and let the scraper reach it through SSH or an authenticating reverse proxy")
    details = {"runtime_dir": str(rundir), "state_dir": str(state), "prometheus": prom}
    if problems:
        return fail("; ".join(problems), "; ".join(dict.fromkeys(fixes)), **details)
    return ok("directories private, no unauthenticated network endpoint in the config", **details)
