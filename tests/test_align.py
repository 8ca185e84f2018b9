"""Aligned crops: a tilted face comes out upright, eyes level and where FER2013 puts them."""

import dataclasses

import cv2
import numpy as np
import pytest

from _fixtures import HAMILTON
from emod.config import Infer
from emod.vision.align import FER_EYE_SPAN, align_matrix, aligned_crop, eye_angle
from emod.vision.detect import from_config

PHOTO = HAMILTON.parents[1] / "photos" / "obama_small.jpg"


def _rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("tilt", [-25.0, -10.0, 0.0, 15.0, 25.0])
def test_landmarks_map_to_level_eyes_at_the_fer_position(tilt):
    """Synthetic landmarks of a face tilted by TILT degrees map to level eyes, centred, at eye_y of the crop."""
    rng = np.random.default_rng(int(tilt) + 50)
    upright = np.array([[-30, 0], [30, 0], [0, 35], [-22, 62], [22, 62]], float)  # eyes 60 px apart
    a = np.radians(tilt)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = upright @ rot.T + rng.uniform(100, 300, 2)
    assert eye_angle(pts) == pytest.approx(tilt, abs=1e-3)
    m, side = align_matrix(pts, scale=1.0, eye_y=0.4)
    out = np.c_[pts, np.ones(5)] @ m.T
    assert out[0, 1] == pytest.approx(out[1, 1], abs=1e-3)  # level eyes
    assert (out[0, 0] + out[1, 0]) / 2 == pytest.approx(side / 2, abs=1e-3)
    assert out[0, 1] == pytest.approx(0.4 * side, abs=1e-3)
    assert out[3, 1] > out[2, 1] > out[0, 1]  # upright: nose below the eyes, mouth below the nose
    assert side == round(max(60 / FER_EYE_SPAN, 62 / 0.387))


def _synthetic_face(tilt: float):
    """A drawn face (bright oval, dark round eyes 60 px apart, dark mouth) rotated by TILT degrees; (image, landmarks)."""
    img = np.full((240, 240, 3), 128, np.uint8)
    cv2.ellipse(img, (120, 125), (62, 80), 0, 0, 360, (210, 210, 210), -1)
    marks = np.array([[90, 105], [150, 105], [120, 135], [98, 165], [142, 165]], float)
    for x, y in marks[:2]:
        cv2.circle(img, (int(x), int(y)), 9, (20, 20, 20), -1)
    cv2.ellipse(img, (120, 165), (22, 6), 0, 0, 360, (40, 40, 40), -1)
    m = cv2.getRotationMatrix2D((120, 120), tilt, 1.0)
    return cv2.warpAffine(img, m, (240, 240), flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128)), np.c_[marks, np.ones(5)] @ m.T


@pytest.mark.parametrize("tilt", [-25.0, -8.0, 12.0, 25.0])
def test_a_synthetic_rotated_face_comes_out_with_level_eyes(tilt):
    """A drawn face tilted by TILT degrees: in its aligned crop the two eyes (found as dark blobs) are level and centred."""
    img, marks = _synthetic_face(tilt)
    before = eye_angle(marks)
    assert abs(before + tilt) < 1e-6  # counter-clockwise tilt raises the left-hand side: the eye line's angle is -TILT
    crop = aligned_crop(img, marks, 1.0, 0.38)
    side = crop.shape[0]
    dark = (cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) < 80).astype(np.uint8)
    n, _, stats, centres = cv2.connectedComponentsWithStats(dark)
    eyes = sorted((centres[i] for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] > 40 and centres[i][1] < side * 0.5),
                  key=lambda c: c[0])
    assert len(eyes) == 2, eyes
    (lx, ly), (rx, ry) = eyes
    assert abs(ly - ry) < 1.5  # level
    assert abs((lx + rx) / 2 - side / 2) < 1.5 and abs((ly + ry) / 2 - 0.38 * side) < 1.5


@pytest.mark.parametrize("tilt", [-25.0, 15.0])
def test_a_rotated_real_face_is_turned_towards_upright(tilt):
    """A photo rotated by TILT: the aligned crop undoes part of the tilt, never adds to it (YuNet's landmarks under-read roll)."""
    if not PHOTO.is_file():
        pytest.skip(f"shared test photo {PHOTO} is absent")
    detector = from_config(Infer())
    photo = cv2.imread(str(PHOTO))
    (face,) = detector.detect(photo)
    true_tilt = eye_angle(face.landmarks) - tilt  # counter-clockwise by TILT: the eye line's angle drops by TILT
    (face,) = detector.detect(_rotate(photo, tilt))
    applied = eye_angle(face.landmarks)  # what aligned_crop rotates by
    assert np.sign(applied) == np.sign(true_tilt) and abs(applied) > 3
    assert abs(true_tilt - applied) < abs(true_tilt)  # the crop is more upright than the input


def test_the_pipeline_aligns_yunet_faces_and_box_crops_haar_faces():
    """With align on, FacePipeline crops a YuNet face through aligned_crop and a Haar face (no landmarks) by its box."""
    from emod.pipeline import FacePipeline
    from emod.vision.crop import crop_face

    if not PHOTO.is_file():
        pytest.skip(f"shared test photo {PHOTO} is absent")
    frame = _rotate(cv2.imread(str(PHOTO)), 20)
    c = dataclasses.replace(Infer(), align=True, align_scale=0.9, align_eye_y=0.34)
    pipe = FacePipeline.from_config(c, classifier=None)
    (face,) = pipe.detector.detect(frame)
    assert np.array_equal(pipe.crop(frame, face), aligned_crop(frame, face.landmarks, 0.9, 0.34))
    haar = FacePipeline.from_config(dataclasses.replace(c, detector="haar"), classifier=None)
    hface = haar.detector.detect(frame)[0]
    assert hface.landmarks is None and np.array_equal(haar.crop(frame, hface), crop_face(frame, hface.box, c.margin))
    off = FacePipeline.from_config(dataclasses.replace(c, align=False), classifier=None)
    assert np.array_equal(off.crop(frame, face), crop_face(frame, face.box, c.margin))
