"""Output to a reader that went away (``emod doctor | head -n 1``): not an error."""

from __future__ import annotations

import os
import sys


def reader_gone() -> int:
    """Call on ``BrokenPipeError`` from stdout: point stdout at /dev/null, so that Python's flush at exit
    does not print a second error, and return exit status 0."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return 0
