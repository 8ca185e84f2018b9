"""What a ``--source`` string names, checked before anything starts.

A file or folder named on the command line (or in the config) that does not exist is a
configuration error: ``emod run`` exits at once (78) with the path named, instead of
retrying forever. ``picamera2:N`` names the Pi's camera N (``picamera2`` is camera 0); a
malformed number is the same configuration error. Cameras (``auto``, ``picamera2[:N]``,
``/dev/videoN``) and URLs are not otherwise checked here: a camera that is absent now may appear later, so capture retries it with backoff.
"""

from __future__ import annotations

import os
import stat

from emod.sources.video import special_kind

NAMED = ("auto", "picamera2", "demo")
PICAMERA2 = "picamera2"


def picamera2_number(spec: str) -> int | None:
    """The camera number of a picamera2 SPEC (``picamera2`` -> 0, ``picamera2:1`` -> 1), None for any other
    source. ValueError for ``picamera2:`` followed by anything but a whole number 0-15."""
    if spec == PICAMERA2:
        return 0
    if not spec.startswith(PICAMERA2 + ":"):
        return None
    num = spec[len(PICAMERA2) + 1:]
    if not (num.isdigit() and int(num) < 16):
        raise ValueError(f"source {spec!r}: picamera2:N needs a camera number N from 0 to 15 (emod doctor lists them)")
    return int(num)


def is_path(spec: str) -> bool:
    """True when SPEC names a local file or folder (not a camera, the demo clip or a URL)."""
    return (spec not in NAMED and not spec.startswith(PICAMERA2 + ":") and "://" not in spec
            and not spec.startswith("/dev/video"))


def problem(spec: str) -> str | None:
    """Why the file or folder SPEC cannot be a source (missing, or a special file), or None."""
    try:
        picamera2_number(spec)
    except ValueError as e:
        return str(e)
    if not is_path(spec):
        return None
    try:
        st = os.stat(spec)
    except FileNotFoundError:
        return f"source {spec!r}: no such file or folder"
    except OSError as e:
        return f"source {spec!r}: {e.strerror}"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return f"source {spec!r} is {special_kind(st.st_mode)}, not a video file or an image folder"
    return None
