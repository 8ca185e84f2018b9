"""Faces beyond max_faces: the same ones are kept every time (largest first, ties by position), the rest are
counted as faces_dropped in results, stats and analyze, and identical crops get identical probabilities (issue 14, kind 7)."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from _fixtures import EMOD, Daemon, base_env, short_tmp, tiny_models, wait_for  # noqa: F401
from emod import config
from emod.vision.detect import Detector

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "media" / "photos"


def _grid(name: str = "obama_small.jpg", box=(94, 42, 136, 136), rows: int = 3, cols: int = 4) -> np.ndarray:
    img = cv2.imread(str(PHOTOS / name))
    if img is None:
        pytest.skip(f"{PHOTOS / name} is absent")
    x, y, w, h = box
    m = int(w * 0.6)
    tile = cv2.resize(img[max(0, y - m): y + h + m, max(0, x - m): x + w + m], (160, 160))
    return np.vstack([np.hstack([tile] * cols)] * rows)


@pytest.fixture(scope="module")
def pipe():
    from emod.cli.analyze import build_pipeline

    return build_pipeline(config.load(None, env={}), "quant")


def test_a_grid_of_twelve_faces_keeps_the_same_eight_and_counts_the_rest_dropped(pipe) -> None:
    """12 copies of one face with max_faces 8: 8 faces, faces_dropped = found - 8, the same 8 boxes on every run, largest first."""
    grid = _grid()
    pipe.detector.max_faces = 100
    found = len(pipe.detector.detect(grid))
    pipe.detector.max_faces = 8
    assert found >= 10, f"the detector finds only {found} of the 12 faces"
    runs = []
    for _ in range(4):
        faces, _, _ = pipe.process(grid)
        assert len(faces) == 8 and pipe.faces_dropped == found - 8
        runs.append([f.box for f in faces])
    assert all(r == runs[0] for r in runs)
    keys = [(-w * h, y, x) for x, y, w, h in runs[0]]
    assert keys == sorted(keys)


def test_the_choice_does_not_depend_on_the_order_the_detector_found_faces() -> None:
    """Whatever order the detector reports equal-sized faces in, the same ones are kept, top-left first."""
    boxes = [((float(x), float(y), 40.0, 40.0), 1.0, None) for y in (0, 50, 100) for x in (0, 50, 100, 150)]

    class Shuffled(Detector):
        def _detect(self, small):
            out = list(boxes)
            random.shuffle(out)
            return out

    det = Shuffled(detect_width=1000, max_faces=5)
    frame = np.zeros((200, 300), np.uint8)
    chosen = {tuple(d.box for d in det.detect(frame)) for _ in range(20)}
    assert len(chosen) == 1 and det.dropped == 7
    assert list(next(iter(chosen))) == [(0, 0, 40, 40), (50, 0, 40, 40), (100, 0, 40, 40), (150, 0, 40, 40), (0, 50, 40, 40)]


def test_identical_crops_get_identical_probabilities(pipe) -> None:
    """A face classified alone and the same crop in a batch of others get the same probabilities."""
    gray = cv2.cvtColor(_grid(), cv2.COLOR_BGR2GRAY)
    from emod.vision.crop import crop_face

    crops = [crop_face(gray, (194 + 160 * k % 480, 28, 94, 94), 0.0) for k in range(3)]
    other = crop_face(gray, (30, 180, 100, 100), 0.0)
    alone = pipe.classifier.classify([crops[0]])
    batch = pipe.classifier.classify([other, *crops, other])
    for row in batch[1:4]:
        assert np.array_equal(np.round(row, 5), np.round(alone[0], 5))


def test_faces_dropped_reaches_stats_and_analyze(short_tmp, tiny_models, pipe) -> None:
    """The daemon's stats and `emod analyze --json` both report faces_dropped for a frame with too many faces."""
    d_img = short_tmp / "imgs"
    d_img.mkdir()
    cv2.imwrite(str(d_img / "grid.png"), _grid())
    r = subprocess.run([str(EMOD), "analyze", "--json", "--model", "tiny", str(d_img / "grid.png")],
                       env=base_env(tiny_models, EMOD_INFER_MAX_FACES="5"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    entry = json.loads(r.stdout.splitlines()[0])
    pipe.detector.max_faces = 100
    found = len(pipe.detector.detect(_grid()))
    pipe.detector.max_faces = 8
    frame = entry["frames"][0]
    assert len(frame["faces"]) == 5 and frame["faces_dropped"] == found - 5
    d = Daemon(short_tmp, tiny_models, d_img, loop=False)
    try:
        s = wait_for(lambda: (s := d.stats()) and s["frames"]["processed"] == 1 and s, 90, 0.5, "the grid to be processed")
        assert s["faces_dropped"] == found - 8
    finally:
        d.stop()
