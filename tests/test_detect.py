"""Haar face detection settings on real photos: the confidence floor filters, and the config reaches the detector."""

import dataclasses

import cv2
import pytest

from _fixtures import HAMILTON
from emod.config import Infer
from emod.vision.detect import HaarDetector, from_config

PHOTOS = HAMILTON.parents[1] / "photos"


def _photo(name: str):
    p = PHOTOS / name
    if not p.is_file():
        pytest.skip(f"shared test photo {p} is absent")
    return cv2.imread(str(p))


def test_min_score_is_a_floor_on_the_cascade_confidence():
    """haar_min_score drops exactly the windows whose cascade confidence is not above it, and keeps every other one."""
    img = _photo("obama_and_biden.jpg")  # one lone window here has a negative confidence
    found = {s: from_config(dataclasses.replace(Infer(), haar_min_score=s)).detect(img) for s in (-100.0, 0.0, 1e6)}
    assert len(found[0.0]) >= 2  # the two faces
    assert found[1e6] == []
    assert any(d.score <= 0.0 for d in found[-100.0]), "the photo no longer shows the floor at work"
    assert {d.box for d in found[0.0]} == {d.box for d in found[-100.0] if d.score > 0.0}


def test_config_reaches_the_detector():
    c = dataclasses.replace(Infer(), haar_neighbors=4, haar_min_score=-1.5, haar_scale=1.2, detect_width=200,
                            haar_cascades="default,alt2")
    d = from_config(c)
    assert isinstance(d, HaarDetector)
    assert (d.min_neighbors, d.min_score, d.scale_factor, d.detect_width, len(d.cascades)) == (4, -1.5, 1.2, 200, 2)
    with pytest.raises(ValueError, match="unknown detector"):
        from_config(dataclasses.replace(Infer(), detector="nosuch"))
