"""Face detection: the bundled YuNet (default) and Haar on real photos, the model's integrity check, and sane boxes."""

import dataclasses
import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import emod
from _fixtures import HAMILTON
from emod.config import Infer
from emod.models.registry import ModelError
from emod.vision import yunet_model
from emod.vision.detect import HaarDetector, YuNetDetector, from_config, sanitize

PHOTOS = HAMILTON.parents[1] / "photos"
HAAR = dataclasses.replace(Infer(), detector="haar")
ROOT = Path(__file__).resolve().parents[1]
BUNDLED = "face_detection_yunet_2023mar_anysize.onnx"
ORIGINAL = HAMILTON.parents[2] / "models" / "face_detection_yunet_2023mar.onnx"  # the model zoo's file, in ../shared


def _photo(name: str):
    p = PHOTOS / name
    if not p.is_file():
        pytest.skip(f"shared test photo {p} is absent")
    return cv2.imread(str(p))


def _sane(dets, frame) -> bool:
    H, W = frame.shape[:2]
    return all(x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= W and y + h <= H and math.isfinite(d.score)
               for d in dets for x, y, w, h in [d.box])


def test_min_score_is_a_floor_on_the_cascade_confidence():
    """Haar: haar_min_score drops exactly the windows whose cascade confidence is not above it, and keeps every other one."""
    img = _photo("kit_with_rose.jpg")  # one lone window here (on a neck) has a negative confidence
    found = {s: from_config(dataclasses.replace(HAAR, haar_min_score=s)).detect(img) for s in (-100.0, 0.0, 1e6)}
    assert len(found[0.0]) >= 2  # the two faces (and a chin)
    assert found[1e6] == []
    assert any(d.score <= 0.0 for d in found[-100.0]), "the photo no longer shows the floor at work"
    assert {d.box for d in found[0.0]} == {d.box for d in found[-100.0] if d.score > 0.0}


def test_config_reaches_the_detector():
    """Every [infer] detector key reaches the detector object; an unknown detector is refused by name."""
    c = dataclasses.replace(HAAR, haar_neighbors=4, haar_min_score=-1.5, haar_scale=1.2, detect_width=200,
                            haar_cascades="default,alt2")
    d = from_config(c)
    assert isinstance(d, HaarDetector)
    assert (d.min_neighbors, d.min_score, d.scale_factor, d.detect_width, len(d.cascades)) == (4, -1.5, 1.2, 200, 2)
    y = from_config(dataclasses.replace(Infer(), yunet_score=0.95, detect_width=400))
    assert isinstance(y, YuNetDetector) and y.detect_width == 400
    assert all(f.score >= 0.95 for f in y.detect(_photo("obama_and_biden.jpg")))
    with pytest.raises(ValueError, match="unknown detector"):
        from_config(dataclasses.replace(Infer(), detector="nosuch"))


def test_bundled_yunet_is_the_default_and_loads_offline():
    """The default config builds YuNet from the file inside the package and finds both portraits with landmarks."""
    d = from_config(Infer())
    assert isinstance(d, YuNetDetector)
    assert d.model_path == yunet_model.BUNDLED_DIR / BUNDLED and d.fixed is None
    assert (yunet_model.BUNDLED_DIR / "LICENSE").is_file()
    faces = d.detect(_photo("two_people.jpg"))
    assert len(faces) == 2
    assert all(f.landmarks is not None and len(f.landmarks) == 5 for f in faces)
    for f in faces:  # the eyes lie inside the face box, in its upper half
        x, y, w, h = f.box
        assert all(x <= px <= x + w and y <= py <= y + h / 2 + h * 0.1 for px, py in f.landmarks[:2])


def test_corrupted_bundled_copy_is_refused_by_name(tmp_path):
    """A bundled copy whose bytes differ from its manifest's SHA-256 is refused, naming the file; a missing user file too."""
    copy = tmp_path / "yunet"
    shutil.copytree(yunet_model.BUNDLED_DIR, copy)
    model = copy / BUNDLED
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"face_detection_yunet_2023mar_anysize\.onnx is corrupted"):
        yunet_model.load_bytes("", copy)
    with pytest.raises(ModelError, match="nosuch.onnx"):
        YuNetDetector(str(tmp_path / "nosuch.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        YuNetDetector(str(junk))
    with pytest.raises(ModelError, match="not a YuNet 2023mar model"):  # a valid ONNX file, but the classifier
        YuNetDetector(str(Path(emod.__file__).parent / "models" / "zoo" / "quant" / "model.onnx"))


def test_a_user_supplied_fixed_size_yunet_still_works(tmp_path):
    """infer.yunet_model naming the model zoo's original file (declared 640 x 640) loads it; frames are padded (or
    shrunk) to that size. Its faces are faces the bundled any-size copy finds, within 2 px (the wider zero padding
    moves scores a little, so a weak face may drop out)."""
    if not ORIGINAL.is_file():
        pytest.skip(f"{ORIGINAL} is absent")
    own = tmp_path / "my-yunet.onnx"
    shutil.copy(ORIGINAL, own)
    d = from_config(dataclasses.replace(Infer(), yunet_model=str(own)))
    assert d.model_path == own and d.fixed == (640, 640)
    bundled = from_config(Infer())
    for name in ("obama_small.jpg", "obama_and_biden.jpg"):
        mine, ref = d.detect(_photo(name)), bundled.detect(_photo(name))
        assert len(mine) >= 1
        assert all(any(max(abs(a - b) for a, b in zip(m.box, r.box)) <= 2 for r in ref) for m in mine), name
    big = YuNetDetector(str(own), detect_width=1280)  # a 1280-wide frame is shrunk to fit 640 x 640
    assert len(big.detect(_photo("obama_small.jpg"))) == 1 and len(big.detect(_photo("obama_and_biden.jpg"))) >= 1


def test_onnx_runtime_yunet_finds_what_opencv_finds():
    """Decoding YuNet's outputs ourselves under ONNX Runtime gives OpenCV's cv2.FaceDetectorYN faces on every shared
    photo: the same count, scores within 1e-4, boxes and landmarks within 0.01 px."""
    _, buf = yunet_model.load_bytes()
    d = YuNetDetector(score_threshold=0.6)
    ref = cv2.FaceDetectorYN.create("onnx", np.frombuffer(buf, np.uint8), np.empty(0, np.uint8), (320, 320), 0.6, 0.3, 50)
    photos = sorted(PHOTOS.glob("*.jpg"))
    assert len(photos) >= 5
    for p in photos:
        small, _ = d._small(cv2.imread(str(p)))
        ref.setInputSize((small.shape[1], small.shape[0]))
        _, faces = ref.detect(small)
        ours = sorted(d._detect(small), key=lambda f: -f[1])
        theirs = sorted([] if faces is None else faces.tolist(), key=lambda f: -f[14])
        assert len(ours) == len(theirs) >= 1, p.name
        for (box, score, lm), f in zip(ours, theirs):
            assert abs(score - f[14]) < 1e-4, p.name
            assert np.allclose(box, f[:4], atol=0.01) and np.allclose(np.ravel(lm), f[4:14], atol=0.01), p.name


def test_yunet_dynamic_rebuilds_the_bundled_file(tmp_path):
    """tools/yunet_dynamic.py on the model zoo's file writes the bundled copy byte for byte (its manifest's SHA-256)."""
    if not ORIGINAL.is_file():
        pytest.skip(f"{ORIGINAL} is absent")
    r = subprocess.run([sys.executable, "tools/yunet_dynamic.py", str(ORIGINAL), str(tmp_path)], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    m = yunet_model.bundled_manifest()
    assert json.loads(r.stdout)["sha256"] == m["sha256"] == hashlib.sha256((tmp_path / BUNDLED).read_bytes()).hexdigest()
    assert m["derived_from"]["sha256"] == hashlib.sha256(ORIGINAL.read_bytes()).hexdigest()
    bad = subprocess.run([sys.executable, "tools/yunet_dynamic.py", str(Path(emod.__file__).parent / "models" / "zoo"
                                                                         / "quant" / "model.onnx"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "not YuNet 2023mar" in bad.stderr


def test_sanitize_drops_garbage_and_clamps():
    """Non-finite, far-away, degenerate and contained boxes are dropped; a box over the edge is clamped."""
    lm = ((1.0, 1.0),) * 5
    raw = [
        ((math.inf, 2.0, 5.0, 5.0), 1.0, lm),  # infinite coordinate
        ((-1e27, -1e27, 2e27, 2e27), 1.0, lm),  # YuNet's ~1e27 boxes on tiny inputs
        ((2.0, 2.0, 5.0, 5.0), math.nan, lm),  # non-finite score
        ((3.0, 3.0, 0.0, 4.0), 0.9, lm),  # zero width
        ((15.5, 3.0, 4.0, 4.0), 0.9, lm),  # only 0.5 px inside a 16 px image
        ((4.0, -1.0, 10.0, 12.0), 0.9, ((math.nan, 0.0),) * 5),  # y = -1: clamped; NaN landmarks become None
        ((6.0, 4.0, 4.0, 4.0), 0.95, lm),  # mostly inside the larger box: suppressed
    ]
    out = sanitize(raw, 16, 16)
    assert out == [((4.0, 0.0, 10.0, 11.0), 0.9, None)]


@pytest.mark.parametrize("detector", ["yunet", "haar"])
def test_tiny_and_odd_inputs_give_only_sane_boxes(detector):
    """Images of 1 to 16 px (noise, flat, a shrunken photo) and a grey frame never yield a box outside the image."""
    d = from_config(dataclasses.replace(Infer(), detector=detector))
    rng = np.random.default_rng(0)
    photo = _photo("obama_small.jpg")
    for side in (1, 2, 3, 5, 8, 12, 16):
        for img in (rng.integers(0, 256, (side, side + 1, 3), dtype=np.uint8), np.full((side, side, 3), 255, np.uint8),
                    cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)):
            assert _sane(d.detect(img), img), (side, img.mean())
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    faces = d.detect(grey)
    assert _sane(faces, grey) and len(faces) == 1


def test_a_close_up_filling_the_frame_is_found_once():
    """A face cropped to fill a 1280 px frame (far larger than the 320 px detect width can frame) gives one box."""
    img = _photo("obama.jpg")
    d = from_config(Infer())
    (face,) = d.detect(img)
    x, y, w, h = face.box
    cx, cy, s = x + w // 2, y + h // 2, int(0.7 * max(w, h))
    close = cv2.resize(img[cy - s // 2: cy + s // 2, cx - s // 2: cx + s // 2], (1280, 1280), interpolation=cv2.INTER_CUBIC)
    found = d.detect(close)
    assert len(found) == 1 and _sane(found, close)
    assert found[0].box[2] > 0.7 * 1280  # the whole face, not a part of it


def test_analyze_shows_each_faces_detection_score():
    """Plain `emod analyze` prints each face's detection score; --json gives it with the detector and its timing."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    photo = PHOTOS / "two_people.jpg"
    if not photo.is_file():
        pytest.skip(f"shared test photo {photo} is absent")
    emod = str(Path(sys.executable).parent / "emod")
    r = subprocess.run([emod, "analyze", str(photo)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(" score 0.9" in line for line in lines), lines
    r = subprocess.run([emod, "analyze", "--json", str(photo)], capture_output=True, text=True, timeout=120)
    (record,) = [json.loads(line) for line in r.stdout.splitlines()]
    (frame,) = record["frames"]
    assert frame["detector"] == "yunet" and frame["detect_ms"] > 0
    assert [f"{f['score']:.2f}" for f in frame["faces"]] == [line.split(" score ")[1][:4] for line in lines]
