"""An image folder: every readable image, in name order, as one frame each."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emod.sources.base import Source, SourceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class FolderSource(Source):
    kind = "folder"

    def __init__(self, spec: str, fps: float = 10.0):
        super().__init__(spec)
        self.fps = fps

    def _open(self) -> None:
        folder = Path(self.spec)
        if not folder.is_dir():
            raise SourceError(f"image folder {self.spec!r} does not exist")
        self.files = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.files:
            raise SourceError(f"image folder {self.spec!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.index = 0

    def _read(self) -> np.ndarray | None:
        while self.index < len(self.files):
            p = self.files[self.index]
            self.index += 1
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                return img
        return None
