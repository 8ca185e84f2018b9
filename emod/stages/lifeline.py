"""A stage dies with its launcher, by any death of the launcher (``kill -9`` included).

The launcher puts its pid in ``EMOD_PARENT_PID`` of every stage it spawns. :func:`bind_to_parent`
then asks Linux for ``PR_SET_PDEATHSIG`` (SIGTERM when the parent goes away: the normal,
graceful stop) and starts a thread that checks the parent is still there every
``interval`` seconds: it covers the race before ``prctl`` and a main thread stuck in a C call
(a blocking camera read), first asking the stage to stop, then ending the process after
``grace`` seconds. Without the variable (``emod stage NAME`` under systemd) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Callable

PARENT_ENV = "EMOD_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def bind_to_parent(request_stop: Callable[[], None], log=None, interval: float = 0.5, grace: float = 3.0) -> int | None:
    """Tie this process's life to ``$EMOD_PARENT_PID``; returns that pid, or None when unset.

    ``request_stop`` is called once the parent is gone (the stage's graceful stop); if the
    process still runs ``grace`` seconds later it exits with status 1.
    """
    value = os.environ.get(PARENT_ENV, "")
    if not value.isdigit():
        return None
    parent = int(value)
    _set_pdeathsig(signal.SIGTERM)

    def orphaned() -> bool:
        return os.getppid() != parent

    def watch() -> None:
        while not orphaned():
            time.sleep(interval)
        if log is not None:
            log.warning("launcher gone, stopping", parent_pid=parent)
        request_stop()
        time.sleep(grace)
        os._exit(1)  # the main thread is stuck: leave anyway, the kernel frees the camera

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return parent
