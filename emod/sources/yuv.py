"""Decoded video frames (PyAV ``VideoFrame``) -> BGR uint8, in exact integer arithmetic.

A video decoder's output (the Y, Cb, Cr planes) is bit-exact by the codec's standard on every
CPU; the conversion to BGR that OpenCV's video capture does (FFmpeg's swscale) is not: measured
under arm64 emulation, OpenCV 4.14's frames of ``short_hamilton_clip.mp4`` differ from x86's by up to
2 levels in most pixels, enough to move a small face's box by a few pixels. So emod converts the
planes itself:

- 4:2:0, 4:2:2 and 4:4:4 planar formats (``yuv420p``, ``yuvj420p``, ``yuv422p``, ``yuv444p``, ...):
  chroma repeated to full size (nearest), then the BT.601 or BT.709 matrix (the frame's
  ``colorspace``; BT.601 when unspecified), limited ("tv", 16..235) or full range (``yuvj*``
  or the frame's ``color_range``), in 14-bit fixed point, rounded half up and clipped;
- anything else (RGB, paletted GIF frames, grey, semi-planar): PyAV's own ``bgr24`` conversion
  (a byte shuffle for RGB; not guaranteed exact across CPUs for the rest).
"""

from __future__ import annotations

import numpy as np

SHIFT = 14
ROUND = 1 << (SHIFT - 1)
# (Kr, Kb) of each matrix; Kg = 1 - Kr - Kb
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
PLANAR = {"yuv420p": (2, 2), "yuvj420p": (2, 2), "yuv422p": (2, 1), "yuvj422p": (2, 1), "yuv444p": (1, 1),
          "yuvj444p": (1, 1), "yuv440p": (1, 2), "yuvj440p": (1, 2)}  # format -> chroma subsampling (x, y)
_AVCOL_SPC_BT709, _AVCOL_RANGE_JPEG = 1, 2  # FFmpeg's enum values, as PyAV reports them


def coefficients(matrix: str, full_range: bool) -> tuple[int, int, int, int, int]:
    """Fixed-point (y, r_cr, g_cb, g_cr, b_cb) scaled by 2**SHIFT for MATRIX ("bt601"/"bt709") and the range.

    From Kr, Kb: R = Y + 2(1 - Kr) Cr, B = Y + 2(1 - Kb) Cb, G = Y - (2 Kb (1 - Kb) / Kg) Cb - (2 Kr (1 - Kr) / Kg) Cr,
    with Y scaled by 255/219 and Cb, Cr by 255/224 for limited range (ITU-R BT.601 / BT.709).
    """
    kr, kb = MATRICES[matrix]
    kg = 1 - kr - kb
    ys, cs = (1.0, 1.0) if full_range else (255 / 219, 255 / 224)
    f = [ys, 2 * (1 - kr) * cs, 2 * kb * (1 - kb) / kg * cs, 2 * kr * (1 - kr) / kg * cs, 2 * (1 - kb) * cs]
    return tuple(int(round(v * (1 << SHIFT))) for v in f)


def planes(frame) -> list[np.ndarray]:
    """The frame's planes as uint8 (height, width) arrays (line padding removed)."""
    out = []
    for p in frame.planes:
        a = np.frombuffer(p, np.uint8)
        out.append(a[: p.line_size * p.height].reshape(p.height, p.line_size)[:, : p.width])
    return out


def yuv_to_bgr(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, matrix: str = "bt601", full_range: bool = False) -> np.ndarray:
    """uint8 planes (Y: H x W; Cb, Cr: subsampled by whole factors) -> uint8 (H, W, 3) BGR, exactly.

    Chroma is repeated to full size (nearest); values are computed in int32 with the
    :func:`coefficients` and rounded half up. Raises ``ValueError`` when the chroma planes'
    size does not divide the luma plane's.
    """
    h, w = y.shape
    ch, cw = cb.shape
    fy, fx = -(-h // ch), -(-w // cw)
    if cr.shape != cb.shape or -(-h // fy) != ch or -(-w // fx) != cw:
        raise ValueError(f"chroma planes {cb.shape}, {cr.shape} do not subsample luma {y.shape}")
    ky, r_cr, g_cb, g_cr, b_cb = coefficients(matrix, full_range)
    yy = (y.astype(np.int32) - (0 if full_range else 16)) * ky + ROUND
    u = np.repeat(np.repeat(cb.astype(np.int32) - 128, fy, axis=0), fx, axis=1)[:h, :w]
    v = np.repeat(np.repeat(cr.astype(np.int32) - 128, fy, axis=0), fx, axis=1)[:h, :w]
    out = np.empty((h, w, 3), np.uint8)
    out[..., 0] = np.clip((yy + b_cb * u) >> SHIFT, 0, 255)
    out[..., 1] = np.clip((yy - g_cb * u - g_cr * v) >> SHIFT, 0, 255)
    out[..., 2] = np.clip((yy + r_cr * v) >> SHIFT, 0, 255)
    return out


def frame_to_bgr(frame) -> np.ndarray:
    """A PyAV ``VideoFrame`` -> uint8 (H, W, 3) BGR: exact for the planar YUV formats in :data:`PLANAR`."""
    name = frame.format.name
    if name in PLANAR:
        y, cb, cr = planes(frame)[:3]
        matrix = "bt709" if int(frame.colorspace) == _AVCOL_SPC_BT709 else "bt601"
        full = name.startswith("yuvj") or int(frame.color_range) == _AVCOL_RANGE_JPEG
        return yuv_to_bgr(y, cb, cr, matrix, full)
    return frame.to_ndarray(format="bgr24")
