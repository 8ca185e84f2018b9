"""Short test clips made at test time with PyAV (FFmpeg's libraries; no ``ffmpeg`` binary needed).

- :func:`hamilton_frames`: the first N upright frames of the shared hamilton clip (BGR).
- :func:`encode`: frames -> an H.264 file, at a fixed rate or at given timestamps (variable frame rate),
  optionally fragmented MP4 and with a display rotation (a phone's portrait tag).
- :func:`remux`: copy a file's video packets into a new container, setting a rotation
  (display matrix or the legacy ``rotate`` tag), as ``ffmpeg -c copy`` does.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "media" / "video"
HAMILTON_SHARED = SHARED_VIDEO / "short_hamilton_clip.mp4"


def hamilton_frames(n: int) -> list[np.ndarray]:
    """The first N frames (BGR, 360 x 640) of the shared hamilton clip; skips the test when it is absent."""
    import av
    import pytest

    if not HAMILTON_SHARED.is_file():
        pytest.skip(f"{HAMILTON_SHARED} is absent")
    out = []
    with av.open(str(HAMILTON_SHARED)) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="bgr24"))
            if len(out) == n:
                break
    return out


def encode(frames, path: Path, fps: float = 25.0, times: list[float] | None = None, rotation: float | None = None,
           fragmented: bool = False, fmt: str | None = None, codec: str = "libx264") -> Path:
    """Write BGR FRAMES to PATH as CODEC video: at FPS, or at TIMES (seconds, one per frame: a variable frame rate).

    ROTATION: a display matrix turning the frames ROTATION degrees counter-clockwise on screen.
    FRAGMENTED: a fragmented MP4 (``movflags=frag_keyframe+empty_moov``, a keyframe every 10 frames).
    """
    import av

    opts = {"movflags": "frag_keyframe+empty_moov"} if fragmented else {}
    with av.open(str(path), "w", format=fmt, options=opts) as o:
        s = o.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options={"g": "10"} if fragmented else {})
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        if times is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, a in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="bgr24")
            if times is not None:
                vf.pts, vf.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for p in s.encode(vf):
                o.mux(p)
        for p in s.encode():
            o.mux(p)
    return path


def remux(src: Path, dst: Path, rotation: float | None = None, tag: str | None = None) -> Path:
    """Copy SRC's video packets into DST unchanged, with a display matrix of ROTATION degrees counter-clockwise
    and/or the legacy stream tag ``rotate=TAG`` (as ``ffmpeg -c copy -metadata:s:v:0 rotate=TAG`` on an old FFmpeg)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s = i.streams.video[0]
        t = o.add_stream_from_template(s)
        if rotation is not None:
            t.set_display_rotation(rotation)
        if tag is not None:
            t.metadata["rotate"] = tag
        for p in i.demux(s):
            if p.dts is None:
                continue
            p.stream = t
            o.mux(p)
    return dst
