"""Video files through PyAV (FFmpeg), URLs and V4L2 devices through OpenCV.

A local file is decoded by PyAV and its planes converted to BGR by :mod:`emod.sources.yuv`
in exact integer arithmetic, so a file gives the same pixels on a Raspberry Pi as on a PC
(OpenCV's own conversion does not). A URL is opened and read with timeouts
(:data:`OPEN_TIMEOUT_MS`, :data:`READ_TIMEOUT_MS`): a stream that stops sending raises
:class:`NoSignal` instead of blocking forever. File frames carry their own media time
(``t_media``, seconds from the stream's first timestamp), so a variable-frame-rate file is
paced frame by frame. File frames come out as a player shows them: the display matrix (a phone's
portrait rotation, a mirror) or the legacy ``rotate`` tag is applied (:mod:`emod.sources.orient`);
``rotation`` names what was applied. A local file is opened through ``/proc/self/fd`` so that any file name
(not valid UTF-8 included) reaches the decoder safely.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np

from emod.sources import orient
from emod.sources.base import NoSignal, NotMedia, Source, SourceError
from emod.sources.yuv import frame_to_bgr

OPEN_TIMEOUT_MS = 4000
READ_TIMEOUT_MS = 3000
SHORT_BY_S = 0.5  # frames ending this much before the declared duration: the file was cut short


class VideoSource(Source):
    kind = "video"

    def __init__(self, spec: str):
        super().__init__(spec)
        self.is_url = isinstance(spec, str) and "://" in spec  # a local path may be bytes (any file name)
        self.live = self.is_url
        self._fd: int | None = None

    def _open(self) -> None:
        if self.is_url:
            self.cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS])
            if not self.cap.isOpened():
                raise NoSignal(f"no signal: cannot open stream {self.spec!r} within {OPEN_TIMEOUT_MS / 1000:.0f} s")
            fps = self.cap.get(cv2.CAP_PROP_FPS)
            self.frame_count = 0
        else:
            import av

            self._fd = open_regular(self.spec, "video file")
            try:
                self.container = av.open(f"/proc/self/fd/{self._fd}")
                stream = self.container.streams.video[0]
            except (av.FFmpegError, IndexError, ValueError) as e:
                self._close()
                why = "no video stream" if isinstance(e, IndexError) else (getattr(e, "strerror", None) or str(e))
                raise NotMedia(f"cannot open video {os.fsdecode(self.spec)!r}: not a video FFmpeg can decode ({why})",
                               f"not an image, nor a video FFmpeg can open ({why})") from None
            stream.thread_type = "AUTO"  # frame threads: the decoded pixels are the same, faster
            self.frames = self._decode(stream)
            self._errors = (av.FFmpegError, EOFError)  # data cut short or damaged: the end, and said so (see truncated)
            self.declared_s = declared_duration(stream, self.container)
            self._start, self._time_base = stream.start_time, stream.time_base
            self._tag_matrix = orient.rotation_matrix(tag) if (tag := orient.tag_rotation(stream.metadata)) else None
            fps = float(stream.average_rate) if stream.average_rate else 0.0
            self.frame_count = int(stream.frames or 0)
        self.fps = fps if 0 < fps < 1000 else None
        self.frames_read = 0
        self.end_error: str | None = None  # why decoding stopped before the end of the file, if it did
        self._last_t: float | None = None  # media time of the frame before the last (for its duration)
        self._shown_s: float | None = None  # the last frame's own duration, when the file gives one
        self.rotation: str | None = None  # how the last file frame was turned for display ("rotate 90 ccw"), None if not

    def _read(self) -> np.ndarray | None:
        if not self.is_url:
            return self._read_file()
        ok, frame = self.cap.read()
        if not ok:  # retried with backoff, not an end
            raise NoSignal(f"no signal: stream {self.spec!r} sent no frame within {READ_TIMEOUT_MS / 1000:.0f} s")
        self.frames_read += 1
        return frame

    def _decode(self, stream):
        """The stream's frames, as ``container.decode`` gives them; a packet the demuxer flags corrupt (the file
        ends inside it) is noted in ``end_error``."""
        for packet in self.container.demux(stream):
            if packet.is_corrupt and packet.size:
                self.end_error = "the data of a frame is cut short or damaged"
            yield from packet.decode()

    def _read_file(self) -> np.ndarray | None:
        try:
            frame = next(self.frames)
        except StopIteration:
            return None
        except self._errors as e:
            self.end_error = f"decoding failed ({getattr(e, 'strerror', None) or str(e) or type(e).__name__})"
            return None
        self.frames_read += 1
        self._last_t = self.t_media
        if frame.pts is not None and self._time_base is not None:
            self.t_media = max(0.0, float((frame.pts - (self._start or 0)) * self._time_base))
        else:
            self.t_media = None
        # how long this frame shows, when the file says (a GIF's or a slideshow's last frame may be held for seconds)
        self._shown_s = float(frame.duration * self._time_base) if frame.duration and self._time_base else None
        m = orient.frame_matrix(frame) or self._tag_matrix
        self.rotation = orient.describe(m)
        return orient.apply(frame_to_bgr(frame), m)

    @property
    def truncated(self) -> str | None:
        """After the end: why the file looks cut short, else None.

        Any of: fewer frames than its container declares (an MP4's sample tables); decoding
        stopped by an error (data cut inside a fragment or packet); the frames decoded end more
        than :data:`SHORT_BY_S` before the duration the container declares (a Matroska/WebM
        file, or a fragmented MP4, cut between packets).
        """
        if self.is_url:
            return None
        n = self.frames_read
        if self.frame_count and n < self.frame_count - 1:
            return f"ended early: after {n} of the {self.frame_count} frames its container declares (truncated?)"
        if self.end_error:
            return f"ended early: {n} frame{'s' if n != 1 else ''}, then {self.end_error} (truncated?)"
        if self.declared_s and self.t_media is not None:
            step = max(0.0, self.t_media - self._last_t) if self._last_t is not None else 0.0
            end = self.t_media + (self._shown_s or step)  # else the last frame lasts as long as the one before it
            if self.declared_s - end > max(SHORT_BY_S, 3 * step):
                return (f"ended early: the frames decoded end at {end:.2f} s of the {self.declared_s:.2f} s "
                        "its container declares (truncated?)")
        return None

    def _close(self) -> None:
        if getattr(self, "cap", None) is not None:
            self.cap.release()
        if getattr(self, "container", None) is not None:
            self.container.close()
            self.container = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def declared_duration(stream, container) -> float | None:
    """Seconds of video the file says it holds: the stream's duration, else its Matroska ``DURATION`` tag,
    else the container's; None when it says nothing."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = next((v for k, v in (stream.metadata or {}).items() if k.upper() == "DURATION"), None)
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            pass
    if container.duration:
        return container.duration / 1e6  # AV_TIME_BASE
    return None


def open_regular(path: str | os.PathLike | bytes, what: str = "file") -> int:
    """Open PATH for reading if it is a regular file (a FIFO or device would block or never end); the fd.

    Raises :class:`SourceError` naming the file: missing, not a regular file, or unreadable.
    """
    shown = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SourceError(f"{what} {shown!r}: no such file") from None
    except OSError as e:
        raise SourceError(f"{what} {shown!r}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{what} {shown!r} is not a regular file ({special_kind(st.st_mode)})")
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise SourceError(f"{what} {shown!r}: {e.strerror}") from None


def special_kind(mode: int) -> str:
    """A word for a file type that is not a regular file."""
    for test, word in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return word
    return "a special file"


class V4l2Source(Source):
    kind = "v4l2"
    live = True

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
