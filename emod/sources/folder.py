"""An image folder: every image in it (sub-folders too), in name order, as one frame each.

Files are taken by their content, not their extension (:mod:`emod.sources.files`): a file that
is not an image is skipped, and so is a named pipe, socket or device (with the reason logged
once); a link loop is not followed. A folder holding no image is an error.
"""

from __future__ import annotations

import numpy as np

from emod.sources.base import Source, SourceError
from emod.sources.files import IMAGE_FORMATS, read_head, sniff, walk


class FolderSource(Source):
    kind = "folder"

    def __init__(self, spec: str, fps: float = 10.0):
        super().__init__(spec)
        self.fps = fps
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of every entry that is not a frame
        self.warnings: list[tuple[str, str]] = []  # (path, warning), e.g. a truncated image

    def _open(self) -> None:
        import os

        if not os.path.isdir(self.spec):
            raise SourceError(f"image folder {self.spec!r}: no such folder")
        self.files, self.skipped = [], []
        for entry in walk([self.spec]):
            if entry.skip is not None:
                self.skipped.append((entry.name, entry.skip))
                continue
            try:
                fmt = sniff(read_head(entry.path))
            except SourceError as e:
                self.skipped.append((entry.name, str(e)))
                continue
            if fmt in IMAGE_FORMATS:
                self.files.append(entry.path)
            else:
                self.skipped.append((entry.name, "not an image"))
        if not self.files:
            raise SourceError(f"image folder {self.spec!r} holds no images (JPEG, PNG, BMP, WebP or TIFF, by content)")
        self.index = 0

    def _read(self) -> np.ndarray | None:
        from emod.sources.files import read_image

        while self.index < len(self.files):
            p = self.files[self.index]
            self.index += 1
            try:
                img = read_image(p)
            except SourceError as e:  # changed since the folder was listed: skip it, say why
                self.skipped.append((str(p), str(e)))
                continue
            if img.warning:
                self.warnings.append((str(p), img.warning))
            return img.pixels
        return None
