"""Tests for emod.vision.overlay: what draw() paints, where, and at which resolutions."""

import numpy as np
import pytest

from emod.labels import LABEL_INDEX, LABELS
from emod.vision.overlay import LABEL_COLORS, draw, format_header
from emod.vision.smooth import Smoothed
from emod.vision.track import Track

INFO = {"fps": 29.7, "infer_ms": 12.4, "model": "mobilenet_v3", "watts": 4.2}


def make_track(tid: int, box, label: str = "happy", visible: bool = True) -> Track:
    probs = np.full(len(LABELS), 0.05)
    probs[LABEL_INDEX[label]] = 0.7
    return Track(id=tid, box=box, raw_label=label, raw_probs=probs,
                 smoothed=Smoothed(label, 0.7, probs), last_seen=0.0, hits=3, visible=visible)


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


@pytest.mark.parametrize("size", [(480, 640), (720, 1280)])
def test_draw_touches_boxes_and_panel_not_far_pixels(size):
    """Drawing changes pixels on/near each box and in the top-right bar panel, and nothing in the far bottom-right."""
    h, w = size
    s = h / 480
    frame = np.full((h, w, 3), 90, np.uint8)
    before = frame.copy()
    small = (int(40 * s), int(200 * s), int(60 * s), int(60 * s))
    big = (int(160 * s), int(180 * s), int(150 * s), int(150 * s))
    draw(frame, [make_track(1, small, "sad"), make_track(2, big, "happy")], INFO)
    diff = changed(before, frame)
    for x, y, bw, bh in (small, big):
        assert diff[y - 3: y + 4, x: x + bw].any(), "top edge of box"
        assert diff[y + bh - 3: y + bh + 4, x: x + bw].any(), "bottom edge of box"
        assert diff[max(0, y - int(30 * s)): y, x: x + bw].any(), "caption above box"
        assert not diff[y + int(20 * s): y + bh - int(20 * s), x + int(20 * s): x + bw - int(20 * s)].any()
    assert diff[: int(200 * s), w - int(150 * s):].mean() > 0.3, "bar panel"
    assert diff[: int(25 * s), : int(150 * s)].any(), "header"
    assert not diff[h - int(100 * s):, w - int(200 * s):].any(), "far-away corner untouched"
    assert not diff[int(350 * s):, : int(150 * s)].any(), "far-away bottom-left untouched"
    # the box of the happy track is drawn in the happy colour
    x, y, bw, bh = big
    assert (frame[y + bh, x + bw // 2] == LABEL_COLORS["happy"]).all()


def test_bars_follow_largest_face():
    """The bar panel shows the largest face: a happy-dominant panel paints more happy colour than a sad one."""
    def happy_pixels(tracks):
        frame = np.zeros((480, 640, 3), np.uint8)
        draw(frame, tracks, INFO)
        panel = frame[:220, 400:]
        return int(np.all(panel == LABEL_COLORS["happy"], axis=2).sum())

    big_happy = [make_track(1, (20, 200, 200, 200), "happy"), make_track(2, (300, 300, 50, 50), "sad")]
    big_sad = [make_track(1, (20, 200, 50, 50), "happy"), make_track(2, (300, 250, 200, 200), "sad")]
    assert happy_pixels(big_happy) > happy_pixels(big_sad) + 100


@pytest.mark.parametrize("size", [(480, 640), (720, 1280)])
def test_no_tracks_and_watts_none(size):
    """With no tracks and watts=None only the header is drawn, and the header says n/a for watts."""
    frame = np.full((*size, 3), 50, np.uint8)
    before = frame.copy()
    draw(frame, [], {**INFO, "watts": None})
    diff = changed(before, frame)
    assert diff[:40].any()
    assert not diff[size[0] // 6:].any()
    assert format_header({**INFO, "watts": None}).endswith("| n/a")
    assert format_header(INFO) == "29.7 fps | 12.4 ms | mobilenet_v3 | 4.2 W"


def test_header_handles_missing_keys():
    """Missing info keys show as n/a instead of raising."""
    assert format_header({}) == "n/a fps | n/a ms | n/a | n/a"


def test_fonts_scale_with_height():
    """The header covers more pixels at 720p than at 480p (fonts and strokes scale with height)."""
    counts = []
    for h, w in ((480, 640), (720, 1280)):
        frame = np.zeros((h, w, 3), np.uint8)
        draw(frame, [], INFO)
        counts.append(int(frame.any(axis=2).sum()))
    assert counts[1] > 1.8 * counts[0]


def test_edge_boxes_and_hidden_tracks_do_not_crash():
    """Boxes touching or crossing the frame edge, and hidden tracks, are drawn without error."""
    frame = np.zeros((480, 640, 3), np.uint8)
    tracks = [make_track(1, (-20, -10, 100, 100)), make_track(2, (600, 440, 100, 100), "fear"),
              make_track(3, (300, 200, 80, 80), "neutral", visible=False)]
    draw(frame, tracks, INFO)
    assert frame.any()


def test_colours_distinct_per_label():
    """Every label has its own colour."""
    assert set(LABEL_COLORS) == set(LABELS)
    assert len(set(LABEL_COLORS.values())) == len(LABELS)


def test_rejects_non_bgr_frame():
    """A frame that is not H x W x 3 uint8 raises ValueError."""
    with pytest.raises(ValueError):
        draw(np.zeros((480, 640), np.uint8), [], INFO)


def test_bar_panel_moves_off_a_face_in_the_top_right():
    """A face under the top-right corner keeps its pixels: the bar panel goes to the corner covering the least face."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    before = frame.copy()
    face = (440, 30, 180, 200)  # where the panel would sit
    draw(frame, [make_track(1, face, "happy")], INFO)
    diff = changed(before, frame)
    x, y, bw, bh = face
    assert not diff[y + 20: y + bh - 20, x + 20: x + bw - 20].any(), "face interior covered"
    assert diff[300:, 440:].mean() > 0.3, "panel in the bottom-right corner instead"


def test_captions_keep_off_the_header_and_the_panel_keeps_off_captions():
    """A face just under the header gets its caption inside its top edge, not over the header text; the bar panel
    picks a corner that covers neither a face nor the caption above it."""
    from emod.vision.overlay import _caption_rect

    # caption rectangles, by the rule: above the box; inside it where the header (200 x 30) or the frame edge is
    assert _caption_rect((100, 200, 80, 80), 640, 60, 20, 4) == (100, 180, 168, 200)
    assert _caption_rect((100, 40, 80, 80), 640, 60, 20, 4, header=(200, 30)) == (100, 40, 168, 60)  # would cover it
    assert _caption_rect((300, 40, 80, 80), 640, 60, 20, 4, header=(200, 30)) == (300, 20, 368, 40)  # beside it: above
    assert _caption_rect((620, 5, 20, 20), 640, 60, 20, 4) == (572, 5, 640, 25)  # at the right edge, no room above

    frame = np.full((480, 640, 3), 90, np.uint8)
    header_only = frame.copy()
    draw(header_only, [], INFO)
    header_rows = changed(frame, header_only).any(axis=1).nonzero()[0].max() + 1
    face = (20, header_rows + 4, 150, 150)  # its caption would sit on the header
    out = frame.copy()
    draw(out, [make_track(2, face, "neutral")], INFO)
    # the header's own pixels are exactly as drawn without any face
    assert np.array_equal(out[:header_rows, :300], header_only[:header_rows, :300])


def test_the_bar_panel_keeps_off_a_caption_wider_than_its_face():
    """A small face just left of the top-right corner: its caption reaches into the corner, so the panel goes elsewhere."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    face = (430, 60, 60, 60)  # caption "#1 neutral 70%" is wider than the box and reaches x ~ 540
    out = frame.copy()
    draw(out, [make_track(1, face, "neutral")], INFO)
    alone = frame.copy()
    draw(alone, [], INFO)
    caption_only = changed(alone, out)[30:60, 430:640]  # rows of the caption above the box
    panel_rows = changed(frame, out)[150:, 440:].mean()
    assert caption_only[:, :100].any() and panel_rows > 0.2, "panel stayed in the top-right corner over the caption"
