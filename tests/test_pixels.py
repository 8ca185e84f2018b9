"""Exact-integer preprocessing (emod.models.pixels): the same bytes as OpenCV on x86, and no OpenCV in the path."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from emod.models import pixels
from emod.models.pixels import area_resize, bgr_to_gray, linear_resize
from emod.models.preprocess import Preprocess
from emod.vision.crop import crop_face

FER_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013" / "test"


def _fer_faces(n: int) -> np.ndarray:
    paths = sorted(FER_TEST.glob("*/*.jpg"))
    if not paths:
        pytest.fail(f"no FER2013 test images under {FER_TEST}")
    pick = np.random.default_rng(0).choice(len(paths), n, replace=False)
    return np.stack([cv2.imread(str(paths[i]), cv2.IMREAD_GRAYSCALE) for i in pick])


def test_fer_upscale_is_opencv_bit_for_bit() -> None:
    """FER2013's 48 -> 64 bilinear upscale gives exactly cv2.INTER_LINEAR's bytes (what the shipped models were trained on)."""
    faces = _fer_faces(300)
    ours = np.stack([linear_resize(f, (64, 64)) for f in faces])
    ref = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_LINEAR) for f in faces])
    assert ours.dtype == np.uint8 and ours.shape == (300, 64, 64)
    assert np.array_equal(ours, ref)


def test_gray_is_opencv_bit_for_bit() -> None:
    """bgr_to_gray equals cv2.COLOR_BGR2GRAY on every value of a random colour image."""
    img = np.random.default_rng(1).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    assert np.array_equal(bgr_to_gray(img), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    with pytest.raises(ValueError, match="BGR"):
        bgr_to_gray(img[..., :2])


def test_area_shrink_is_the_exact_mean() -> None:
    """Shrinking averages each output pixel's exact (fractional) footprint, rounded half up, checked with Fractions."""
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (7, 10), dtype=np.uint8)
    out = area_resize(img, (4, 3))  # (W, H): 10 -> 4 and 7 -> 3, fractional footprints
    for j in range(3):
        for i in range(4):
            total = Fraction(0)
            for y in range(7):
                wy = max(Fraction(0), min(Fraction(y + 1), Fraction(7 * (j + 1), 3)) - max(Fraction(y), Fraction(7 * j, 3)))
                for x in range(10):
                    wx = max(Fraction(0), min(Fraction(x + 1), Fraction(10 * (i + 1), 4)) - max(Fraction(x), Fraction(10 * i, 4)))
                    total += wx * wy * int(img[y, x])
            mean = total / (Fraction(7, 3) * Fraction(10, 4))
            assert out[j, i] == int(mean + Fraction(1, 2)), (j, i, mean)
    blocks = img[:6, :10].astype(int).reshape(3, 2, 5, 2).sum(axis=(1, 3))
    assert np.array_equal(area_resize(img[:6, :10], (5, 3)), (blocks + 2) // 4)  # 2x2 blocks: (a+b+c+d+2)//4


def test_area_resize_stays_within_one_of_opencv() -> None:
    """Face crops of 20..390 px reduced to 48x48 differ from cv2.INTER_AREA by at most 1 in under 0.1 % of values."""
    rng = np.random.default_rng(3)
    faces = _fer_faces(40)
    diff = total = 0
    for k, s in enumerate(range(20, 400, 10)):
        crop = cv2.resize(faces[k % len(faces)], (s, s), interpolation=cv2.INTER_CUBIC)
        ours, ref = area_resize(crop, (48, 48)), cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA)
        d = np.abs(ours.astype(int) - ref.astype(int))
        assert d.max() <= 1, s
        diff, total = diff + int((d > 0).sum()), total + d.size
    assert diff / total < 1e-3


def test_preprocess_needs_no_opencv() -> None:
    """Importing and running Preprocess loads no OpenCV: the tensor cannot depend on OpenCV's per-CPU code paths."""
    code = ("import sys, numpy as np\nfrom emod.models.preprocess import Preprocess\n"
            "x = Preprocess(64)([np.full((100, 90, 3), 128, np.uint8), np.zeros((30, 30), np.uint8)])\n"
            "assert x.shape == (2, 1, 64, 64) and x.dtype == np.float32\n"
            "assert 'cv2' not in sys.modules\nprint('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_colour_crop_preprocesses_like_its_gray_crop() -> None:
    """A colour crop (also one padded at the frame border) gives the same tensor as the crop of the gray frame."""
    frame = np.random.default_rng(4).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    prep = Preprocess(64)
    for box in [(40, 30, 50, 50), (-10, 90, 60, 50)]:
        colour, mono = crop_face(frame, box), crop_face(gray, box)
        assert colour.shape[:2] == mono.shape and colour.ndim == 3
        assert np.array_equal(prep([colour]), prep([mono]))


@pytest.mark.parametrize("shape,factor", [((480, 640, 3), 2), ((720, 1280, 3), 4), ((1428, 2000, 3), 6), ((97, 131), 3),
                                          ((40, 50, 3), 1)])
def test_shrink_by_is_the_exact_block_mean(shape, factor) -> None:
    """The detector's downscale: each output pixel is the mean of its FACTOR x FACTOR block, rounded half up; the
    remainder rows and columns are left out, so output pixel x covers input [x * FACTOR, (x + 1) * FACTOR)."""
    img = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    out = pixels.shrink_by(img, factor)
    h, w = shape[0] // factor, shape[1] // factor
    assert out.shape == (h, w) + shape[2:] and out.dtype == np.uint8
    blocks = img[: h * factor, : w * factor].astype(np.int64).reshape(h, factor, w, factor, *shape[2:])
    total, n = blocks.sum(axis=(1, 3)), factor * factor
    assert np.array_equal(out, (2 * total + n) // (2 * n))
    if factor == 2:
        assert np.array_equal(out, cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))  # OpenCV's 2x: the same
    for bad in (0, min(shape[:2]) + 1):
        with pytest.raises(ValueError):
            pixels.shrink_by(img, bad)
