"""Pick a source from its specification string."""

from __future__ import annotations

import glob
from pathlib import Path

from emod.sources.base import Source, SourceError

DEMO_CLIP = Path(__file__).resolve().parents[1] / "data" / "demo" / "demo.mp4"


def _camera_present() -> bool:
    try:
        from picamera2 import Picamera2
    except ImportError:
        return False
    try:
        return bool(Picamera2.global_camera_info())
    except Exception:
        return False


def open_source(spec: str, width: int = 640, height: int = 480, fps: float = 30.0) -> Source:
    """``auto`` tries picamera2, then the first V4L2 device, then the bundled demo clip."""
    from emod.sources.folder import FolderSource
    from emod.sources.picamera2 import Picamera2Source
    from emod.sources.video import V4l2Source, VideoSource

    if spec == "auto":
        if _camera_present():
            spec = "picamera2"
        else:
            devices = sorted(glob.glob("/dev/video[0-9]*"), key=lambda d: int(d[len("/dev/video"):]))
            spec = devices[0] if devices else "demo"
    if spec == "picamera2":
        return Picamera2Source(spec, width, height, fps)
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
    raise SourceError(f"source {spec!r} is neither auto, picamera2, demo, a /dev/video device, a URL, a file nor a folder")
