"""Pixel operations in exact integer arithmetic: the same bytes on every CPU.

OpenCV picks a SIMD or HAL path per CPU (SSE/AVX on x86, NEON/KleidiCV on arm64), and
its ``resize`` gives different bytes on a Raspberry Pi than on a PC (up to 4/255). The
classifier's input must not depend on the CPU, so the three operations that make it
are written here with integers (or float64 sums of integers, which are exact):

- :func:`bgr_to_gray`: OpenCV's fixed-point BT.601 weights (``COLOR_BGR2GRAY``, 15 bits);
- :func:`area_resize`: area averaging; shrinking is the exact mean rounded half up,
  enlarging uses ``INTER_AREA``'s bilinear weights;
- :func:`linear_resize`: ``INTER_LINEAR``'s 11-bit fixed-point weights and its x86
  vector rounding;
- :func:`shrink_by`: block means by a whole factor, for the face detector's frame.

On x86 the results equal ``cv2`` byte for byte for FER2013's 48 -> 64 upscale and for
grayscale conversion; area shrinking differs from ``cv2`` only where OpenCV's float sum
rounds a tie the other way (measured in ``tests/test_pixels.py``).
"""

from __future__ import annotations

import numpy as np

_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
_ONE = 1 << _COEF_BITS


def bgr_to_gray(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) BGR -> uint8 (H, W): (3735 B + 19235 G + 9798 R + 2^14) >> 15, as OpenCV."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a (H, W, 3) BGR image, got shape {img.shape}")
    i = img.astype(np.int32)
    return ((i[..., 0] * 3735 + i[..., 1] * 19235 + i[..., 2] * 9798 + (1 << 14)) >> 15).astype(np.uint8)


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def _round_coef(c: np.ndarray) -> np.ndarray:
    """float32 weights -> int16 fixed point, rounding half to even like OpenCV's saturate_cast."""
    return np.rint(_f32(c) * _f32(_ONE)).astype(np.int64)


def _linear_axis(src: int, dst: int, area: bool, clamp_frac: bool):
    """Source indices (i0, i1) and fixed-point weights (w0, w1) of each destination index along one axis."""
    d = np.arange(dst)
    scale = src / dst
    if area:  # INTER_AREA when enlarging
        s = np.floor(d * scale).astype(np.int64)
        f = _f32((d + 1) - (s + 1) * (dst / src))
        f = np.where(f <= 0, _f32(0), f - np.floor(f)).astype(np.float32)
    else:
        f = _f32((d + 0.5) * scale - 0.5)
        s = np.floor(f).astype(np.int64)
        f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp_frac:  # OpenCV clamps the fraction at the borders horizontally only
        f = np.where((s < 0) | (s >= src - 1), _f32(0), f).astype(np.float32)
    w0, w1 = _round_coef(_f32(1) - f), _round_coef(f)
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), w0, w1


def _linear(img: np.ndarray, size: tuple[int, int], area: bool) -> np.ndarray:
    h, w = img.shape
    x0, x1, a0, a1 = _linear_axis(w, size[0], area, clamp_frac=True)
    y0, y1, b0, b1 = _linear_axis(h, size[1], area, clamp_frac=False)
    i = img.astype(np.int64)
    rows = i[:, x0] * a0 + i[:, x1] * a1  # horizontal pass, scale 2^11
    # vertical pass as OpenCV's vector code: 16-bit high products, then (+2) >> 2
    out = (((b0[:, None] * (rows[y0] >> 4)) >> 16) + ((b1[:, None] * (rows[y1] >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def linear_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) -> uint8 (size[1], size[0]) bilinear, pixel centres aligned (``cv2.INTER_LINEAR``)."""
    _check(img, size)
    return _linear(img, size, area=False)


def _area_sums(a: np.ndarray, dst: int) -> np.ndarray:
    """int64 (..., n) -> int64 (..., dst): overlap-weighted sums along the last axis, in units of 1/dst of a pixel.

    Source pixel i spans [i*dst, (i+1)*dst) and output pixel j spans [j*n, (j+1)*n) on a
    common integer grid; each sum is G((j+1)*n) - G(j*n), where G(t) = dst*P[t // dst] +
    (t % dst)*x[t // dst] is the running integral of the pixels (P their prefix sums).
    """
    n = a.shape[-1]
    zero = np.zeros(a.shape[:-1] + (1,), np.int64)
    prefix = np.concatenate([zero, np.cumsum(a, axis=-1)], axis=-1)
    padded = np.concatenate([a, zero], axis=-1)
    q, r = np.divmod(np.arange(dst + 1, dtype=np.int64) * n, dst)
    g = dst * prefix[..., q] + r * padded[..., q]
    return np.diff(g, axis=-1)


def area_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) -> uint8 (size[1], size[0]) by area averaging (``cv2.INTER_AREA``).

    Shrinking (both sides): each output pixel is the exact area-weighted mean of the input,
    rounded half up, from integer prefix sums. Otherwise: INTER_AREA's bilinear weights.
    """
    _check(img, size)
    h, w = img.shape
    if size[0] > w or size[1] > h:
        return _linear(img, size, area=True)
    rows = _area_sums(img.astype(np.int64), size[0])  # (h, size[0]), scaled by size[0]
    num = _area_sums(rows.T, size[1]).T  # (size[1], size[0]), scaled by size[0] * size[1]
    den = h * w  # each output pixel covers (w / size[0]) * (h / size[1]) pixels
    return ((2 * num + den) // (2 * den)).astype(np.uint8)


def shrink_by(img: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (H, W[, C]) -> (H // FACTOR, W // FACTOR[, C]): the mean of each FACTOR x FACTOR block, rounded half up.

    Exact integer arithmetic (the same bytes on every CPU) and a few ms for a 1280 x 720 colour
    frame. The last ``W % FACTOR`` columns and ``H % FACTOR`` rows are left out, so pixel (x, y)
    of the result covers [x * FACTOR, (x + 1) * FACTOR) of IMG exactly. Raises ``ValueError`` when
    FACTOR < 1 or exceeds a side.
    """
    h, w = img.shape[:2]
    if factor < 1 or factor > min(h, w):
        raise ValueError(f"cannot shrink {img.shape} by {factor}")
    if factor == 1:
        return img
    img = img[: h - h % factor, : w - w % factor]
    n = factor * factor
    # sums of strided slices, uint16 while n <= 257 (no overflow): a few ms where prefix sums take tens
    acc = img[:, 0::factor].astype(np.uint16 if n <= 257 else np.uint32)
    for k in range(1, factor):
        acc += img[:, k::factor]
    total = acc[0::factor].astype(np.uint32)
    for k in range(1, factor):
        total += acc[k::factor]
    return ((2 * total + n) // (2 * n)).astype(np.uint8)


def _check(img: np.ndarray, size: tuple[int, int]) -> None:
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W) image, got {img.dtype} {img.shape}")
    if img.size == 0 or min(size) < 1:
        raise ValueError(f"cannot resize {img.shape} to {size}")
