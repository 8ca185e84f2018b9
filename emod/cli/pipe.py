"""Output to a reader that went away (``emod doctor | head -n 1``): not an error; and text that any terminal can take."""

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


def safe_stdio() -> None:
    """Make stdout and stderr escape what their encoding cannot show (``\\xe9``, ``\\u4e2d``) instead of raising.

    A file name or label in a language the terminal's encoding lacks (``LANG=C``,
    ``PYTHONIOENCODING=ascii``, a Windows console) is then printed escaped, never a
    ``UnicodeEncodeError`` that ends the command. Every CLI calls it first.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) in ("strict", None):
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass
