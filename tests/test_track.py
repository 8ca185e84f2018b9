"""Tests for emod.vision.track: ID assignment, crossings, occlusions and per-track smoothing."""

import numpy as np
import pytest

from emod.labels import LABEL_INDEX, LABELS
from emod.vision.smooth import MajorityVote
from emod.vision.track import FaceTracker, iou

DT = 0.1  # 10 fps


def probs(label: str, p: float = 0.8) -> np.ndarray:
    v = np.full(len(LABELS), (1.0 - p) / (len(LABELS) - 1))
    v[LABEL_INDEX[label]] = p
    return v


def test_iou_basics():
    """IoU is 1 for identical boxes, 0 for disjoint ones and 1/3 for half-shifted equal boxes."""
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (20, 0, 10, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(1 / 3)


def test_new_tracks_get_increasing_ids_from_one():
    """New faces get IDs 1, 2, 3 ... in detection order, and a track keeps its ID while seen."""
    tr = FaceTracker()
    out = tr.update([((0, 0, 50, 50), probs("happy")), ((200, 0, 50, 50), probs("sad"))], 0.0)
    assert [t.id for t in out] == [1, 2]
    out = tr.update([((202, 1, 50, 50), probs("sad")), ((3, 0, 50, 50), probs("happy"))], DT)
    assert {t.id: t.box[0] for t in out} == {1: 3.0, 2: 202.0}
    out = tr.update([((400, 300, 50, 50), probs("fear"))], 2 * DT, include_hidden=True)
    assert [t.id for t in out] == [1, 2, 3]
    assert [t.visible for t in out] == [False, False, True]
    assert all(t.hits == h for t, h in zip(out, [2, 2, 1]))


@pytest.mark.parametrize("shuffle", [False, True])
def test_ids_stable_through_crossing(shuffle):
    """Two faces moving horizontally through each other (overlapping on the way) keep their IDs and labels."""
    rng = np.random.default_rng(1)
    tr = FaceTracker(smoother=lambda: MajorityVote(window=3))
    step, size = 20, 100
    saw_overlap = False
    for k in range(30):
        a = (float(step * k), 100.0, size, size)          # moving right
        b = (float(310 - step * k), 110.0, size, size)    # moving left
        saw_overlap |= iou(a, b) > 0.5
        faces = [(a, probs("happy")), (b, probs("sad"))]
        if shuffle and rng.random() < 0.5:
            faces.reverse()
        out = {t.id: t for t in tr.update(faces, k * DT)}
        assert set(out) == {1, 2}
        assert out[1].box == a and out[2].box == b
        assert out[1].raw_label == "happy" and out[2].raw_label == "sad"
        assert out[1].smoothed.label == "happy" and out[2].smoothed.label == "sad"
    assert saw_overlap


def test_ids_stable_when_one_face_hides_behind_the_other_while_crossing():
    """If the rear face is not detected while the two overlap, both still keep their IDs after the crossing."""
    tr = FaceTracker()
    hidden = 0
    for k in range(30):
        a = (float(20 * k), 100.0, 100, 100)
        b = (float(310 - 20 * k), 110.0, 100, 100)
        faces = [(a, probs("happy"))]
        if iou(a, b) > 0.2:
            hidden += 1
        else:
            faces.append((b, probs("sad")))
        out = {t.id: t for t in tr.update(faces, k * DT)}
        assert out[1].box == a
        if len(faces) == 2:
            assert set(out) == {1, 2} and out[2].box == b
    assert hidden >= 3


def test_short_occlusion_keeps_id():
    """A face missing for a few frames (0.5 s < max_age) keeps its ID when it comes back."""
    tr = FaceTracker(max_age=1.0)
    box = (100.0, 100.0, 80, 80)
    for k in range(5):
        tr.update([(box, probs("happy"))], k * DT)
    for k in range(5, 10):
        assert tr.update([], k * DT) == []
        assert [t.id for t in tr.tracks()] == [1]
    out = tr.update([((102.0, 101.0, 80, 80), probs("happy"))], 10 * DT)
    assert [t.id for t in out] == [1]
    assert out[0].hits == 6 and out[0].visible


def test_moving_face_occlusion_keeps_id_via_prediction():
    """A face moving at constant speed and hidden for 4 frames is matched at its predicted position."""
    tr = FaceTracker(max_age=1.0)
    for k in range(5):
        tr.update([((30.0 * k, 50.0, 60, 60), probs("happy"))], k * DT)
    out = tr.update([((30.0 * 10, 50.0, 60, 60), probs("happy"))], 10 * DT)
    assert [t.id for t in out] == [1]


def test_long_occlusion_gets_new_id():
    """A face missing longer than max_age is dropped and returns with a new ID."""
    tr = FaceTracker(max_age=1.0)
    box = (100.0, 100.0, 80, 80)
    tr.update([(box, probs("happy"))], 0.0)
    assert tr.update([], 0.5) == []
    assert [t.id for t in tr.tracks()] == [1]
    assert tr.update([], 1.5) == []
    assert tr.tracks() == []
    out = tr.update([(box, probs("happy"))], 1.6)
    assert [t.id for t in out] == [2]


def test_fast_motion_matches_by_centroid():
    """A jump too large for the IoU threshold but within the centroid gate keeps the ID."""
    tr = FaceTracker(iou_threshold=0.3, center_gate=0.6)
    tr.update([((0.0, 0.0, 100, 100), probs("happy"))], 0.0)
    out = tr.update([((55.0, 0.0, 100, 100), probs("happy"))], DT)  # IoU = 45/155 < 0.3
    assert [t.id for t in out] == [1]
    off = FaceTracker(iou_threshold=0.3, center_gate=0.0)
    off.update([((0.0, 0.0, 100, 100), probs("happy"))], 0.0)
    assert [t.id for t in off.update([((55.0, 0.0, 100, 100), probs("happy"))], DT)] == [2]


def test_far_detection_does_not_steal_track():
    """A detection far from every track starts a new track instead of matching by centroid."""
    tr = FaceTracker()
    tr.update([((0.0, 0.0, 100, 100), probs("happy"))], 0.0)
    out = tr.update([((300.0, 0.0, 100, 100), probs("happy"))], DT)
    assert [t.id for t in out] == [2]


def test_smoothing_is_per_track():
    """Each track has its own smoother: a glitch on one face never flips it, and the other is unaffected."""
    tr = FaceTracker()
    for k in range(10):
        a_label = "angry" if k == 5 else "happy"
        out = {t.id: t for t in tr.update(
            [((0.0, 0.0, 80, 80), probs(a_label, 0.9)), ((300.0, 0.0, 80, 80), probs("sad"))], k * DT)}
        assert out[1].smoothed.label == "happy"
        assert out[2].smoothed.label == "sad"
    assert out[1].raw_label == "happy"


def test_bad_input_rejected():
    """Boxes without positive size and probability vectors of the wrong length raise ValueError."""
    tr = FaceTracker()
    with pytest.raises(ValueError):
        tr.update([((0, 0, 0, 10), probs("happy"))], 0.0)
    with pytest.raises(ValueError):
        tr.update([((0, 0, 10, 10), np.ones(3))], 0.0)


def test_a_second_detection_of_a_tracked_face_starts_no_track():
    """A detection overlapping a face matched in the same frame is a duplicate: no new track that could later steal the id."""
    tr = FaceTracker()
    tr.update([((100, 100, 100, 100), probs("happy"))], 0.0)
    out = tr.update([((102, 100, 100, 100), probs("happy")), ((90, 60, 100, 100), probs("sad"))], DT, include_hidden=True)
    assert [t.id for t in out] == [1]
    out = tr.update([((95, 80, 100, 100), probs("happy"))], 2 * DT)
    assert [t.id for t in out] == [1]
    two = FaceTracker().update([((0, 0, 100, 100), probs("sad")), ((10, 10, 100, 100), probs("sad"))], 0.0)
    assert [t.id for t in two] == [1]
    assert [t.id for t in FaceTracker(duplicate_iou=0).update([((0, 0, 100, 100), probs("sad")), ((10, 10, 100, 100), probs("sad"))], 0.0)] == [1, 2]
