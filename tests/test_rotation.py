"""Phone videos with a rotation: frames come out as a player shows them (issue 29, kind 1).

A phone stores portrait video as sideways frames and a display matrix (or, in older files, a
``rotate`` tag). The clips here are made that way from the upright hamilton frames: coded
sideways, tagged to be shown upright. The daemon's file source and ``emod analyze`` share
:class:`emod.sources.video.VideoSource`, so both are covered by reading through it.
"""

from __future__ import annotations

import json
import subprocess

import av
import numpy as np
import pytest

from _clips import encode, hamilton_frames, remux
from _fixtures import EMOD, base_env, tiny_models  # noqa: F401
from emod.sources import orient
from emod.sources.video import VideoSource


def _read(path) -> tuple[list[np.ndarray], str | None]:
    with VideoSource(str(path)) as v:
        frames = []
        while (f := v.read()) is not None:
            frames.append(f)
        return frames, v.rotation


def _coded(path) -> list[np.ndarray]:
    """The frames as stored (no rotation), through emod's own colour conversion."""
    from emod.sources.yuv import frame_to_bgr

    with av.open(str(path)) as c:
        return [frame_to_bgr(f) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def upright():
    return hamilton_frames(8)


@pytest.mark.parametrize("ccw", [90, 180, 270, -90])
def test_a_display_matrix_turns_frames_upright(tmp_path, upright, ccw) -> None:
    """Frames stored turned by -CCW with a display rotation of CCW come out upright (640 x 360), exactly the stored
    pixels turned; 270 and -90 are the same turn."""
    k = ccw // 90
    plain = encode([np.rot90(f, -k) for f in upright], tmp_path / "coded.mp4")
    tagged = remux(plain, tmp_path / "phone.mp4", rotation=ccw)
    frames, how = _read(tagged)
    coded = _coded(plain)
    assert len(frames) == len(upright) and all(f.shape == (360, 640, 3) for f in frames)
    assert all(np.array_equal(f, np.rot90(c, k)) for f, c in zip(frames, coded))
    assert how == f"rotate {ccw % 360} ccw"
    assert frames[0].flags["C_CONTIGUOUS"]  # sent zero-copy by the capture stage


def test_a_legacy_rotate_tag_counts_clockwise(tmp_path, upright) -> None:
    """A Matroska file with only a ``rotate=90`` tag (clockwise, the old convention) comes out upright too."""
    plain = encode([np.rot90(f, 1) for f in upright], tmp_path / "coded.mp4")  # stored turned counter-clockwise
    frames, how = _read(remux(plain, tmp_path / "tagged.mkv", tag="90"))
    assert all(np.array_equal(f, np.rot90(c, -1)) for f, c in zip(frames, _coded(plain)))
    assert frames[0].shape == (360, 640, 3) and how == "rotate 270 ccw"


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("mirror", [False, True])
def test_quarter_turns_and_mirrors_are_exact(k, mirror) -> None:
    """Every quarter turn, mirrored or not, is numpy's rot90 (after a left-right mirror) of the frame."""
    img = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    a, b, c, d = orient.rotation_matrix(90 * k)
    m = (-a, -b, c, d) if mirror else (a, b, c, d)  # x -> -x first
    want = np.rot90(img[:, ::-1] if mirror else img, k)
    assert np.array_equal(orient.apply(img, m), want)
    assert orient.describe(m) == (None if not k and not mirror else
                                  ("mirror" if not k else ("mirror, then " if mirror else "") + f"rotate {90 * k} ccw"))


def test_other_angles_rotate_onto_a_larger_canvas() -> None:
    """45 degrees: the whole frame stays in the picture; a near-quarter turn (0.4 degrees off) snaps to it."""
    img = np.full((100, 200, 3), 200, np.uint8)
    out = orient.apply(img, orient.rotation_matrix(45))
    assert out.shape[:2] == (213, 213) and out[106, 106].tolist() == [200, 200, 200] and out[0, 0].tolist() == [0, 0, 0]
    assert np.array_equal(orient.apply(img, orient.rotation_matrix(90.4)), np.rot90(img, 1))
    assert orient.tag_rotation({"rotate": "abc"}) == 0 and orient.tag_rotation({"ROTATE": "-90"}) == 90


def test_analyze_finds_the_face_on_every_frame_of_a_rotated_clip(tmp_path, tiny_models) -> None:
    """`emod analyze --json` on a phone-style clip (stored sideways, tagged 90): a face on every frame, inside
    an upright 640 x 360 frame, and the rotation named."""
    frames = hamilton_frames(24)
    clip = remux(encode([np.rot90(f, -1) for f in frames], tmp_path / "coded.mp4"), tmp_path / "r90.mp4", rotation=90)
    r = subprocess.run([str(EMOD), "analyze", "--json", "--model", "tiny", str(clip)], env=base_env(tiny_models),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    found = [f["faces"] for f in out["frames"] if f["faces"]]
    assert len(found) >= 23 and out["rotation"] == "rotate 90 ccw"
    assert all(x + w <= 640 and y + h <= 360 and h > w * 0.9 for faces in found for x, y, w, h in [faces[0]["box"]])
