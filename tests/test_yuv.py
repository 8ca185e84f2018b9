"""Video frames to BGR in exact integer arithmetic (emod.sources.yuv): the matrices, the ranges, and real frames."""

from __future__ import annotations

import av
import numpy as np
import pytest

from _fixtures import HAMILTON
from emod.sources.video import VideoSource
from emod.sources.yuv import MATRICES, frame_to_bgr, yuv_to_bgr


def _reference(y, cb, cr, matrix, full):
    """The BT.601 / BT.709 conversion in float64, chroma repeated 2x2 (the textbook formula)."""
    kr, kb = MATRICES[matrix]
    kg = 1 - kr - kb
    Y = y.astype(float) if full else (y.astype(float) - 16) * 255 / 219
    up = lambda c: np.repeat(np.repeat(c.astype(float) - 128, 2, 0), 2, 1) * (1 if full else 255 / 224)  # noqa: E731
    u, v = up(cb), up(cr)
    r, b = Y + 2 * (1 - kr) * v, Y + 2 * (1 - kb) * u
    g = (Y - kr * r - kb * b) / kg
    return np.clip(np.floor(np.stack([b, g, r], -1) + 0.5), 0, 255)


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("full", [False, True])
def test_conversion_matches_the_textbook_formula(matrix, full):
    """Random 4:2:0 planes: every value within one level of the float formula (fixed point), and the same on every run."""
    rng = np.random.default_rng(0)
    y = rng.integers(16 if not full else 0, 236 if not full else 256, (64, 96), dtype=np.uint8)
    cb, cr = (rng.integers(16, 241, (32, 48), dtype=np.uint8) for _ in range(2))
    out = yuv_to_bgr(y, cb, cr, matrix, full)
    assert out.shape == (64, 96, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - _reference(y, cb, cr, matrix, full)).max() <= 1
    assert np.array_equal(out, yuv_to_bgr(y.copy(), cb.copy(), cr.copy(), matrix, full))


def test_grey_and_known_colours():
    """Limited range: Y 16 is black, 235 white, neutral chroma is grey; BT.601 red (81, 90, 240) is red."""
    y = np.array([[16, 235], [126, 81]], np.uint8)
    cb = np.array([[128]], np.uint8)
    cr = np.array([[128]], np.uint8)
    grey = yuv_to_bgr(y, cb, cr)
    assert grey[0, 0].tolist() == [0, 0, 0] and grey[0, 1].tolist() == [255, 255, 255]
    assert len(set(grey[1, 0].tolist())) == 1
    red = yuv_to_bgr(np.full((2, 2), 81, np.uint8), np.array([[90]], np.uint8), np.array([[240]], np.uint8))
    b, g, r = red[0, 0].tolist()
    assert r >= 250 and b <= 3 and g <= 3
    with pytest.raises(ValueError, match="subsample"):
        yuv_to_bgr(y, np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8))


def test_real_frames_stay_close_to_ffmpegs_own_conversion():
    """The shared clip (H.264, BT.709, limited range): emod's frames differ from FFmpeg's swscale BGR by about a level
    (swscale interpolates chroma and rounds its own way), never by more than a few."""
    if not HAMILTON.is_file():
        pytest.skip(f"{HAMILTON} is absent")
    with av.open(str(HAMILTON)) as c:
        for i, f in enumerate(c.decode(video=0)):
            ours, theirs = frame_to_bgr(f).astype(int), f.to_ndarray(format="bgr24").astype(int)
            assert ours.shape == theirs.shape
            d = np.abs(ours - theirs)
            assert d.mean() < 2.0 and np.percentile(d, 99) <= 8, (i, d.mean())
            if i == 20:
                break


def test_the_video_source_gives_the_converted_planes():
    """VideoSource (what emod run and emod analyze read files with) returns exactly frame_to_bgr of each decoded
    frame, with its media time from the first frame."""
    if not HAMILTON.is_file():
        pytest.skip(f"{HAMILTON} is absent")
    with av.open(str(HAMILTON)) as c, VideoSource(str(HAMILTON)) as src:
        for i, f in enumerate(c.decode(video=0)):
            frame = src.read()
            assert frame is not None and np.array_equal(frame, frame_to_bgr(f))
            assert src.t_media == pytest.approx(i / 29.97, abs=0.002)
            if i == 10:
                break
