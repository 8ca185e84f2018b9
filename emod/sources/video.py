"""Video files, URLs and V4L2 devices through OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emod.sources.base import Source, SourceError


class VideoSource(Source):
    kind = "video"

    def _open(self) -> None:
        if "://" not in self.spec and not Path(self.spec).is_file():
            raise SourceError(f"video file {self.spec!r} does not exist")
        self.cap = cv2.VideoCapture(self.spec)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video {self.spec!r}")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None

    def _read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if not ok and "://" in self.spec:
            raise SourceError(f"stream {self.spec!r} stopped delivering frames")  # retried with backoff, not an end
        return frame if ok else None

    def _close(self) -> None:
        self.cap.release()


class V4l2Source(Source):
    kind = "v4l2"

    def __init__(self, spec: str, width: int = 640, height: int = 480, fps: float = 30.0):
        super().__init__(spec)
        self.size, self.want_fps = (width, height), fps

    def _open(self) -> None:
        if not Path(self.spec).exists():
            raise SourceError(f"V4L2 device {self.spec} does not exist")
        self.cap = cv2.VideoCapture(self.spec, cv2.CAP_V4L2)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open V4L2 device {self.spec} (busy, or no permission: is the user in group video?)")
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        self.cap.set(cv2.CAP_PROP_FPS, self.want_fps)

    def _read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if not ok:
            raise SourceError(f"V4L2 device {self.spec} stopped delivering frames")
        return frame

    def _close(self) -> None:
        self.cap.release()
