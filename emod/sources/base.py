"""The source lifecycle: ``open()`` / ``read()`` / ``close()``; subclasses fill in ``_open``, ``_read``, ``_close``.

Hardware is probed only in ``open()``, never at import.
"""

from __future__ import annotations

import numpy as np


class SourceError(RuntimeError):
    """The source cannot deliver frames (missing file, camera busy, decode failure)."""


class NotMedia(SourceError):
    """The file is neither an image nor a video FFmpeg can open (a text file, a playlist), or not a regular file.

    ``reason``: the why without the file's name (what a folder walk reports as ``skipped``).
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class NoSignal(SourceError):
    """A live source that opened but sends nothing within its read timeout (a stalled stream)."""


class Source:
    kind = "source"
    #: native frame rate, used to pace file sources; None for live sources
    fps: float | None = None
    #: a camera or a stream (frames come at their own pace; it can stall or freeze), not a file or folder
    live: bool = False
    #: seconds of media time of the frame last read (its own timestamp in the file), or None for live sources
    t_media: float | None = None

    def __init__(self, spec: str):
        self.spec = spec
        self.is_open = False

    def open(self) -> None:
        if not self.is_open:
            self._open()
            self.is_open = True

    def read(self) -> np.ndarray | None:
        """The next BGR uint8 frame, or None at the end of a finite source."""
        if not self.is_open:
            raise SourceError(f"{self.kind} {self.spec!r} is not open")
        return self._read()

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self._close()

    def __enter__(self) -> "Source":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # subclasses
    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> np.ndarray | None:
        raise NotImplementedError

    def _close(self) -> None:
        pass
