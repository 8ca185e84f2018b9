"""Runtime and state directories that nobody else controls.

emod's sockets live in a runtime directory (``/run/emod``, ``$XDG_RUNTIME_DIR/emod`` or
``/tmp/emod-UID``) and its persistent state (the chosen model, user models, the telemetry
history) in a state directory. Whoever controls either directory can replace a socket or a
model, so before binding or reading emod checks that each one:

* is a real directory, not a symlink;
* is owned by the effective user or by root;
* is not writable by others, and writable by its group only when that group is the effective
  group or ``emod`` (the service's group, whose members may use the sockets).

Files read from the state directory (the persisted model choice, user models, the history)
get the same checks (a regular file, not a symlink). A failed check raises
:class:`UnsafePath` (an ``OSError``) whose message names the path, the owner found and the fix.

:func:`ensure_dir` creates a missing directory with mode 0700, or 0750 with group ``emod``
when emod runs as the service (as the user ``emod``, or as root where the group exists);
intermediate directories get the usual modes. Sockets are made 0660 by :func:`emod.bus.bind`.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

SERVICE_GROUP = "emod"


class UnsafePath(OSError):
    """A directory or file that someone other than the effective user (or root) could control."""


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def service_gid() -> int | None:
    """The gid of group ``emod`` when emod runs as the service (user ``emod``, or root), else None."""
    try:
        gid = grp.getgrnam(SERVICE_GROUP).gr_gid
    except KeyError:
        return None
    euid = os.geteuid()
    if euid == 0:
        return gid
    try:
        return gid if pwd.getpwuid(euid).pw_name == SERVICE_GROUP else None
    except KeyError:
        return None


def _check(path: Path, st: os.stat_result, what: str) -> None:
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        raise UnsafePath(f"{what} {path} is owned by {_user(st.st_uid)}, not by {_user(euid)} or root: "
                         f"someone else controls it; remove it or choose another (--runtime-dir / --state-dir)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IWOTH:
        raise UnsafePath(f"{what} {path} (owner {_user(st.st_uid)}) is writable by others (mode {mode:04o}): "
                         f"chmod o-w {path}")
    if mode & stat.S_IWGRP and st.st_gid != os.getegid() and _group_name(st.st_gid) != SERVICE_GROUP:
        raise UnsafePath(f"{what} {path} (owner {_user(st.st_uid)}) is writable by group "
                         f"{_group_name(st.st_gid) or st.st_gid} (mode {mode:04o}): chmod g-w {path}")


def _check_entry(p: Path, what: str, is_kind, kind: str, symlink_hint: str = "") -> Path:
    """``p`` if lstat says it is ``kind`` (not a symlink) with a safe owner and mode; :class:`UnsafePath` else."""
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{what} {p} is a symlink (to {os.readlink(p)}, owner {_user(st.st_uid)}): emod refuses it{symlink_hint}")
    if not is_kind(st.st_mode):
        raise UnsafePath(f"{what} {p} (owner {_user(st.st_uid)}) is not {kind}")
    _check(p, st, what)
    return p


def check_dir(path: str | os.PathLike, what: str = "directory") -> Path:
    """``path`` if it is a safe directory (see the module docstring); :class:`UnsafePath` or FileNotFoundError else."""
    return _check_entry(Path(path), what, stat.S_ISDIR, "a directory",
                        "; remove it or point emod at the real directory")


def check_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` if it is a regular file, not a symlink, with a safe owner and mode; the directory is checked too."""
    p = Path(path)
    check_dir(p.parent, f"directory of {what}")
    return _check_entry(p, what, stat.S_ISREG, "a regular file")


def ensure_dir(path: str | os.PathLike, what: str = "directory") -> Path:
    """Create ``path`` if missing (0700, or 0750 group ``emod`` for the service), then :func:`check_dir` it."""
    p = Path(path)
    if not os.path.lexists(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        gid = service_gid()
        try:
            os.mkdir(p, 0o750 if gid is not None else 0o700)
        except FileExistsError:
            pass  # someone was quicker: the check below decides whether it is acceptable
        else:
            if gid is not None:
                os.chown(p, -1, gid)
            os.chmod(p, 0o750 if gid is not None else 0o700)  # exact, whatever the umask
    return check_dir(p, what)
