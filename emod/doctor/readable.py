"""``emod doctor``'s check that the service's user can read the MQTT password file ([mqtt] password_file).

The service runs as user ``emod`` (``emod install-systemd`` creates it): the file must be readable by that
user and nobody else, i.e. owner ``root``, group ``emod``, mode ``0640``. Kept in its own module and function.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from emod.doctor import Context, Result, fail, ok, warn


def user_can_read(path: Path, user: str) -> bool:
    """Whether USER (by its uid, primary group and supplementary groups) may read PATH, each parent searchable.

    KeyError when USER does not exist. Root reads everything."""
    pw = pwd.getpwnam(user)
    if pw.pw_uid == 0:
        return True
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}

    def allowed(st: os.stat_result, bits: tuple[int, int, int]) -> bool:
        if st.st_uid == pw.pw_uid:
            return bool(st.st_mode & bits[0])
        if st.st_gid in gids:
            return bool(st.st_mode & bits[1])
        return bool(st.st_mode & bits[2])

    path = Path(os.path.realpath(path))
    for parent in reversed(path.parents):
        if not allowed(os.stat(parent), (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)):
            return False
    return allowed(os.stat(path), (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH))


def check_mqtt_password(ctx: Context) -> Result:
    """[mqtt] password_file: readable by the service's user, and by nobody else."""
    m = ctx.cfg.mqtt
    if not (m.enabled and m.password_file):
        return ok("no MQTT password file configured")
    path = Path(m.password_file)
    fix = f"sudo chown root:{ctx.user} {path} && sudo chmod 0640 {path}"
    try:
        st = os.stat(path)
    except OSError as e:
        return fail(f"[mqtt] password_file {path}: {e.strerror}", "create it (one line: the broker password), then " + fix)
    try:
        readable = user_can_read(path, ctx.user)
    except KeyError:
        return ok(f"no user {ctx.user!r} (the service is not installed): {path} is read by whoever runs emod",
                  path=str(path), mode=oct(st.st_mode & 0o777))
    details = {"path": str(path), "mode": oct(st.st_mode & 0o777), "user": ctx.user}
    if not readable:
        return fail(f"the service's user {ctx.user} cannot read [mqtt] password_file {path}: the mqtt stage could not log in",
                    fix, **details)
    if st.st_mode & stat.S_IROTH:
        return warn(f"[mqtt] password_file {path} is readable by every user (mode {oct(st.st_mode & 0o777)})", fix, **details)
    return ok(f"the service's user {ctx.user} can read [mqtt] password_file {path}; others cannot", **details)
