"""Input files as they are, not as they are named: used by the folder source and ``emod analyze``.

- The format comes from the content (magic bytes), never the extension: a GIF named ``.png``
  is a GIF (an animation: read as video), a JPEG named ``.mp4`` is an image.
- Only regular files are opened: a named pipe, socket or device is skipped with the reason
  (opening a FIFO would block forever).
- Bytes are read by emod and decoded from memory (``cv2.imdecode``); a video is opened
  through ``/proc/self/fd``: no file name reaches OpenCV, so names that are not valid UTF-8 work.
- A truncated JPEG or PNG (no end marker) decodes with a warning instead of silently.
- Folders are walked in name order, following links to folders but never into a loop.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from emod.sources.base import SourceError
from emod.sources.video import open_regular, special_kind

MAX_IMAGE_BYTES = 256 * 2**20

# (magic prefix, format); WEBP is RIFF....WEBP, checked separately
_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))
IMAGE_FORMATS = ("jpeg", "png", "bmp", "webp", "tiff")  # one frame each; a GIF is read as a video


def sniff(head: bytes) -> str:
    """The format of a file from its first bytes: an image format, ``gif``, or ``video`` (anything else: OpenCV decides)."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return "video"


def read_head(path, n: int = 16) -> bytes:
    """The first N bytes of the regular file PATH (SourceError naming it otherwise)."""
    fd = open_regular(path)
    try:
        return os.read(fd, n)
    finally:
        os.close(fd)


@dataclass
class Image:
    pixels: np.ndarray  # BGR uint8
    format: str
    warning: str | None = None


def read_image(path) -> Image:
    """Decode the image file PATH by its content. Raises SourceError naming the file when it is not a decodable image."""
    import cv2

    fd = open_regular(path, "image")
    try:
        size = os.fstat(fd).st_size
        if size > MAX_IMAGE_BYTES:
            raise SourceError(f"image {os.fsdecode(path)!r}: {size} bytes is too large")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    fmt = sniff(data[:16])
    if fmt not in IMAGE_FORMATS:
        raise SourceError(f"{os.fsdecode(path)!r} is not an image ({'a GIF animation' if fmt == 'gif' else 'unknown format'})")
    cut = _truncation(fmt, data)
    if cut and fmt == "jpeg":  # end it properly: libjpeg then decodes what is there (the rest grey) instead of refusing
        data += b"\xff\xd9"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"cannot decode {fmt} image {printable(path)!r}" + (f" ({cut})" if cut else ""))
    return Image(img, fmt, cut)


def _truncation(fmt: str, data: bytes) -> str | None:
    if fmt == "jpeg" and data.rstrip(b"\x00").rfind(b"\xff\xd9") < len(data.rstrip(b"\x00")) - 2:
        return f"truncated JPEG: no end-of-image marker after {len(data)} bytes (the missing part decodes grey)"
    if fmt == "png" and b"IEND" not in data[-32:]:
        return f"truncated PNG: no IEND chunk after {len(data)} bytes"
    return None


@dataclass(frozen=True)
class Entry:
    """One input found by :func:`walk`: its path (str or bytes as given), and why it is skipped, if it is."""

    path: str | bytes
    skip: str | None = None
    top: bool = False  # named by the caller itself, not found in a folder

    @property
    def name(self) -> str:
        """The path for people: undecodable bytes shown as backslash escapes (printable anywhere)."""
        return printable(self.path)


def printable(path) -> str:
    """PATH as text that any stream can print: bytes that are not UTF-8 become backslash escapes."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def walk(paths) -> Iterator[Entry]:
    """Every file under PATHS (files as given, folders recursively in name order).

    Special files and missing paths come back with ``skip`` set; links to folders are followed
    unless they lead back into a folder already being walked (a loop).
    """
    for p in paths:
        yield from _walk(os.fspath(p), set(), top=True)


def _walk(path, active: set, top: bool = False) -> Iterator[Entry]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        yield Entry(path, "no such file or folder", top)
        return
    except OSError as e:
        yield Entry(path, e.strerror or str(e), top)
        return
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key in active:
            yield Entry(path, "a link back into a folder being walked (a loop): not followed", top)
            return
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            yield Entry(path, f"cannot list folder: {e.strerror}", top)
            return
        active = active | {key}
        for name in names:
            yield from _walk(os.path.join(path, name), active)
        return
    if not stat.S_ISREG(st.st_mode):
        yield Entry(path, f"{special_kind(st.st_mode)}, not a file", top)
        return
    yield Entry(path, None, top)
