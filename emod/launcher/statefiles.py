"""The state directory's files, written so that a full or read-only SD card never takes the sensor down.

* :func:`write_atomic`: a small file (the saved model choice) is written to a temporary file in the
  same directory, fsynced, renamed over the old one, and the directory fsynced: after a power cut
  the file is the old or the new content, never empty or torn. On any OSError (ENOSPC, EROFS...) the
  temporary file is removed and the error raised: the caller carries on without the file.
* :func:`lock_dir`: one emod per state directory. An exclusive ``flock`` on the directory itself
  (it needs no file, so it works on a read-only directory too); a second instance gets
  :class:`DirInUse` naming the holder's pid, read from ``/proc/locks``.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class DirInUse(RuntimeError):
    """Another process holds the directory's lock (its pid in ``pid``, None when unknown)."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid


def write_atomic(path: str | os.PathLike, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` by ``text`` (UTF-8, file mode ``mode``) atomically and durably; OSError on failure, and then
    nothing half-written or temporary is left."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            data = text.encode()
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)  # the rename itself reaches the disk
        finally:
            os.close(dfd)
    except OSError:
        pass  # the file is in place; only its durability across a power cut is less certain


def lock_holder(path: str | os.PathLike) -> int | None:
    """The pid holding a ``flock`` on ``path`` (from ``/proc/locks``), or None."""
    try:
        st = os.stat(path)
        wanted = f":{st.st_ino}"
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF" (blocked waiters carry "->")
                if len(parts) >= 6 and parts[1] == "FLOCK" and "->" not in parts and parts[5].endswith(wanted):
                    maj, mnr = parts[5].split(":")[:2]
                    if os.makedev(int(maj, 16), int(mnr, 16)) == st.st_dev:
                        return int(parts[4])
    except (OSError, ValueError):
        pass
    return None


def lock_dir(path: str | os.PathLike, what: str = "state directory") -> int:
    """Lock directory ``path`` for this process (released when it exits); returns the fd to keep open.

    Raises :class:`DirInUse` when another process holds it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = lock_holder(path)
        raise DirInUse(f"another emod uses {what} {path}" + (f" (pid {pid})" if pid else "")
                       + "; give each instance its own --state-dir", pid) from None
    return fd
