"""Pick a source from its specification string.

``auto`` tells the truth: a picamera2 that is installed but fails to import is reported
with its real exception, and the bundled demo clip is a fallback only from a terminal.
Under a service (``NOTIFY_SOCKET``, or the launcher's ``EMOD_UNDER_SERVICE`` for its
stages) or without a TTY, no camera is a :class:`SourceError`, which the capture stage
reports and retries with backoff.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from emod.protocol import SERVICE_ENV
from emod.sources.base import Source, SourceError

DEMO_CLIP = Path(__file__).resolve().parents[1] / "data" / "demo" / "demo.mp4"


def demo_fallback_allowed(env: Mapping[str, str] | None = None, streams=None) -> bool:
    """True only when run from a terminal: not under systemd and with stdout or stderr on a TTY."""
    env = os.environ if env is None else env
    if env.get("NOTIFY_SOCKET") or env.get(SERVICE_ENV):
        return False
    for s in (sys.stdout, sys.stderr) if streams is None else streams:
        try:
            if s is not None and s.isatty():
                return True
        except (AttributeError, ValueError):  # closed or not a real stream
            continue
    return False


def v4l2_devices() -> list[str]:
    """/dev/videoN paths, in N order."""
    return sorted(glob.glob("/dev/video[0-9]*"), key=lambda d: int(d[len("/dev/video"):]))


def resolve_auto(interactive: bool) -> tuple[str, list[str]]:
    """(spec, notes) for ``auto``: picamera2's first camera, else the first V4L2 device, else the demo clip.

    ``notes`` say why a camera was passed over. Raises :class:`SourceError` when not
    ``interactive`` and picamera2 is broken or no camera is found.
    """
    from emod.sources.picamera2 import load_picamera2

    notes: list[str] = []
    try:
        factory = load_picamera2()
    except SourceError as e:
        if not interactive:
            raise SourceError(f"auto: {e}") from e  # a broken camera stack on a Pi: never pass it over quietly
        notes.append(str(e))
        factory = None
    if factory is not None:
        try:
            if factory.global_camera_info():
                return "picamera2", notes
            notes.append("picamera2 finds no camera")
        except Exception as e:
            notes.append(f"picamera2 cannot list cameras: {type(e).__name__}: {e}")
    devices = v4l2_devices()
    if devices:
        return devices[0], notes
    notes.append("no /dev/video* device")
    if not interactive:
        raise SourceError("auto: no camera (" + "; ".join(notes) + "); the demo clip is only a fallback from a "
                          "terminal: run `emod run --source demo` (or set [capture] source = \"demo\") to analyse it")
    notes.append(f"no camera: playing the bundled demo clip {DEMO_CLIP.name}")
    return "demo", notes


def open_source(spec: str, width: int = 640, height: int = 480, fps: float = 30.0, *,
                interactive: bool | None = None, warn: Callable[[str], None] | None = None) -> Source:
    """A closed source for ``spec``; ``auto`` resolves through :func:`resolve_auto`.

    ``interactive`` defaults to :func:`demo_fallback_allowed`; each note of ``auto`` goes to
    ``warn`` (default: stderr). Raises :class:`SourceError` for a spec that names nothing.
    """
    from emod.sources.folder import FolderSource
    from emod.sources.picamera2 import Picamera2Source
    from emod.sources.video import V4l2Source, VideoSource

    if spec == "auto":
        spec, notes = resolve_auto(demo_fallback_allowed() if interactive is None else interactive)
        for note in notes:
            if warn is not None:
                warn(note)
            else:
                print(f"emod: source auto: {note}", file=sys.stderr)
    from emod.sources.spec import picamera2_number

    try:
        camera_num = picamera2_number(spec)
    except ValueError as e:
        raise SourceError(str(e)) from None
    if camera_num is not None:
        return Picamera2Source(spec, width, height, fps, camera_num=camera_num)
    if spec == "demo":
        return VideoSource(str(DEMO_CLIP))
    if spec.startswith("/dev/video"):
        return V4l2Source(spec, width, height, fps)
    if "://" in spec:
        return VideoSource(spec)
    p = Path(spec)
    if p.is_dir():
        return FolderSource(spec)
    if p.is_file():
        return VideoSource(spec)
    from emod.sources.spec import problem

    raise SourceError(problem(spec) or f"source {spec!r} is neither auto, picamera2[:N], demo, a /dev/video device, a URL, a file nor a folder")
