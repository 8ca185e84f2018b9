"""What a ``--source`` string names, checked before anything starts.

A file or folder named on the command line (or in the config) that does not exist is a
configuration error: ``emod run`` exits at once (78) with the path named, instead of
retrying forever. Cameras (``auto``, ``picamera2``, ``/dev/videoN``) and URLs are not
checked here: a camera that is absent now may appear later, so capture retries it with backoff.
"""

from __future__ import annotations

import os
import stat

from emod.sources.video import special_kind

NAMED = ("auto", "picamera2", "demo")


def is_path(spec: str) -> bool:
    """True when SPEC names a local file or folder (not a camera, the demo clip or a URL)."""
    return spec not in NAMED and "://" not in spec and not spec.startswith("/dev/video")


def problem(spec: str) -> str | None:
    """Why the file or folder SPEC cannot be a source (missing, or a special file), or None."""
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
