"""One input file of ``emod analyze``, image or video by its content, as frames with their media time.

:class:`MediaFile` reads an image (one frame) or a video or GIF animation (every frame, or every
Nth) through the daemon's own readers (:func:`emod.sources.files.read_image`,
:class:`emod.sources.video.VideoSource`), and keeps what it learnt on the way: the video's
frame rate, a truncation warning, and how the frames were turned for display.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from emod.sources.base import SourceError
from emod.sources.files import IMAGE_FORMATS, read_head, read_image, sniff

VIDEO_FORMATS = ("video", "gif")


class MediaFile:
    """PATH (str or bytes) read by its content. ``format`` is known at once (``jpeg``, ``png``... ``gif``, ``video``);
    ``fps``, ``warning`` and ``rotation`` once :meth:`frames` has run.

    Raises :class:`SourceError` naming the file when it cannot be opened, and from :meth:`frames`
    when nothing decodes.
    """

    def __init__(self, path):
        self.path = path
        self.format = sniff(read_head(path))
        self.fps: float | None = None
        self.warning: str | None = None  # the input looks cut short
        self.rotation: str | None = None  # how a video's frames were turned for display ("rotate 90 ccw")
        self.shape: tuple[int, ...] | None = None  # of the last frame read

    @property
    def is_image(self) -> bool:
        return self.format in IMAGE_FORMATS

    def frames(self, every: int = 1) -> Iterator[tuple[int, float | None, np.ndarray]]:
        """``(index, media time s or None, BGR uint8 frame)`` of the image, or of every EVERY-th video frame."""
        if self.is_image:
            img = read_image(self.path)
            self.warning, self.shape = img.warning, img.pixels.shape
            yield 0, None, img.pixels
            return
        from emod.sources.video import VideoSource

        i = 0
        with VideoSource(self.path) as video:  # the capture stage's own reader
            self.fps = video.fps
            while (frame := video.read()) is not None:
                self.rotation, self.shape = self.rotation or video.rotation, frame.shape
                if i % every == 0:
                    yield i, (round(video.t_media, 4) if video.t_media is not None else None), frame
                i += 1
            self.warning = video.truncated
        if i == 0:
            raise SourceError(f"no frames decoded from {os.fsdecode(self.path)!r} "
                              "(not an image emod can read, nor a video FFmpeg can decode)")
