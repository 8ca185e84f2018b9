"""tools/make_clip.py: a labelled FER2013 clip, its sidecar, and the skew check through the daemon's pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from _fixtures import REPO, TINY, base_env, read_video, tiny_models  # noqa: F401
from emod.datasets import fer2013
from emod.labels import LABELS

TOOL = REPO / "tools" / "make_clip.py"
sys.path.insert(0, str(REPO / "tools"))
import make_clip  # noqa: E402


@pytest.fixture(scope="module")
def fer_root() -> Path:
    """The FER2013 root (skips when the data set is absent)."""
    root = fer2013.default_root()
    if not (root / "test").is_dir() and not (root / "fer2013.csv").is_file():
        pytest.skip(f"FER2013 not found at {root} (set EMOD_FER2013)")
    return root


@pytest.fixture(scope="module")
def clip(tmp_path_factory, fer_root) -> tuple[Path, Path]:
    """A 30-frame clip at 10 fps and its sidecar, made by the tool's command line."""
    d = tmp_path_factory.mktemp("clip")
    out, truth = d / "clip.mp4", d / "clip.json"
    r = subprocess.run([sys.executable, str(TOOL), "--out", str(out), "--truth", str(truth), "--n", "30", "--fps", "10",
                        "--size", "640x480", "--seed", "3", "--data", str(fer_root), "-q"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "30 frames" in r.stdout
    return out, truth


def test_match_rule() -> None:
    """A detection matches when its centre is inside the truth rect and its width is 0.3..1.2 of it, one-to-one."""
    truth = [[100, 100, 120, 120], [300, 100, 100, 100]]
    assert make_clip.matches(truth, [(120, 120, 80, 80)]) == [(0, 0)]  # a face inside the padded image
    assert make_clip.matches(truth, [(120, 120, 20, 20)]) == []  # too small (ratio 0.17)
    assert make_clip.matches(truth, [(90, 90, 150, 150)]) == []  # too large (ratio 1.25)
    assert make_clip.matches(truth, [(230, 120, 60, 60)]) == []  # centre (260, 150) outside both
    assert sorted(make_clip.matches(truth, [(310, 110, 80, 80), (110, 110, 100, 100)])) == [(0, 1), (1, 0)]
    assert make_clip.matches([[0, 0, 100, 100]], [(10, 10, 80, 80), (20, 20, 60, 60)]) == [(0, 0)]  # one detection per face


def test_clip_decodes_and_matches_its_sidecar(clip, fer_root) -> None:
    """The video has the sidecar's frame count and size; every truth box holds the upscaled FER face on mid-grey."""
    out, truth = clip
    side = json.loads(truth.read_text())
    assert side["n_frames"] == 30 and len(side["frames"]) == 30 and side["fps"] == 10 and side["size"] == [640, 480]
    assert side["split"] == "private" and side["labels"] == list(LABELS)
    frames = read_video(out)
    assert len(frames) == 30 and frames[0].shape == (480, 640, 3)
    reopened = cv2.VideoCapture(str(out))
    assert abs(reopened.get(cv2.CAP_PROP_FPS) - 10) < 0.01
    reopened.release()
    names = sorted({f["file"] for fr in side["frames"] for f in fr["faces"]})
    images = make_clip.load_named(fer_root, names)
    shots: dict[int, list] = {}
    for fr, img in zip(side["frames"], frames):
        assert 1 <= len(fr["faces"]) <= 2
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
        mask = np.ones(gray.shape, bool)
        for face in fr["faces"]:
            x, y, w, h = face["box"]
            assert w == h and 96 <= w <= 160 and x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480
            assert face["label"] in LABELS and "PrivateTest_" in face["file"] and f"/{face['label']}/" in face["file"]
            interp = cv2.INTER_CUBIC if face["interp"] == "cubic" else cv2.INTER_LINEAR
            expect = cv2.resize(images[face["file"]], (w, h), interpolation=interp).astype(np.float32)
            assert np.abs(gray[y : y + h, x : x + w] - expect).mean() < 12  # the right face (mp4v is lossy)
            mask[y : y + h, x : x + w] = False
            shots.setdefault(face["shot"], []).append(face["file"])
        assert abs(np.median(gray[mask]) - 128) <= 3  # plain mid-grey background
    assert len(shots) >= 30 // 6  # faces are held 3..6 frames per shot
    if len(side["frames"][0]["faces"]) == 2:
        a, b = (f["box"] for f in side["frames"][0]["faces"])
        assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]


def test_same_seed_same_clip(tmp_path, fer_root) -> None:
    """The composition is deterministic in the seed."""
    images, labels, names = make_clip.load_faces(fer_root, "private")
    a = [faces for _, faces in make_clip.compose(images, labels, names, 12, (640, 480), seed=5, progress=False)]
    b = [faces for _, faces in make_clip.compose(images, labels, names, 12, (640, 480), seed=5, progress=False)]
    c = [faces for _, faces in make_clip.compose(images, labels, names, 12, (640, 480), seed=6, progress=False)]
    assert a == b and a != c


def test_check_mode_reports_recall_and_skew(clip, tiny_models, tmp_path) -> None:
    """--check runs the clip through FacePipeline with the tiny model and writes a report whose recall shows Haar finding most faces and whose rates add up from its counts."""
    out, truth = clip
    report_path = tmp_path / "report.json"
    r = subprocess.run([sys.executable, str(TOOL), "--check", str(out), "--truth", str(truth), "--model", TINY,
                        "--json", str(report_path), "-q"], capture_output=True, text=True, timeout=300,
                       env=base_env(tiny_models))
    assert r.returncode == 0, r.stderr
    assert "detection recall" in r.stdout and "skew gap" in r.stdout
    rep = json.loads(report_path.read_text())
    for key in ("model", "detector", "margin", "match_rule", "frames", "faces", "detected", "recall", "precision",
                "false_positives", "pipeline_accuracy", "direct_accuracy", "direct_accuracy_on_detected", "skew_gap",
                "agreement", "per_label"):
        assert key in rep, key
    side = json.loads(truth.read_text())
    assert rep["model"] == TINY and rep["detector"] == "yunet" and rep["frames"] == 30
    assert rep["faces"] == sum(len(f["faces"]) for f in side["frames"])
    # the default detector finds most faces on these clips (Haar about three in four); a matcher that finds
    # nothing, or one that matches every box, fails here
    assert rep["recall"] >= 0.5 and rep["precision"] >= 0.8, (rep["recall"], rep["precision"])
    assert rep["recall"] == pytest.approx(rep["detected"] / rep["faces"], abs=1e-3)
    assert rep["precision"] == pytest.approx(rep["detected"] / rep["detections"], abs=1e-3)
    assert set(rep["per_label"]) == set(LABELS)
    per = rep["per_label"].values()
    assert sum(v["faces"] for v in per) == rep["faces"] and sum(v["detected"] for v in per) == rep["detected"]
    # the accuracies are counts of this clip's faces, not free numbers
    assert rep["direct_accuracy"] == pytest.approx(sum(v["direct_correct"] for v in per) / rep["faces"], abs=1e-3)
    assert rep["pipeline_accuracy"] == pytest.approx(sum(v["pipeline_correct"] for v in per) / rep["detected"], abs=1e-3)


def test_check_mode_takes_the_daemons_config(clip, tiny_models, tmp_path) -> None:
    """--check --config FILE builds the pipeline from the file's [infer] section; a bad file exits 78."""
    out, truth = clip
    cfg = tmp_path / "haar.toml"
    cfg.write_text('[infer]\ndetector = "haar"\nhaar_neighbors = 3\n')
    report_path = tmp_path / "report.json"
    r = subprocess.run([sys.executable, str(TOOL), "--check", str(out), "--truth", str(truth), "--model", TINY,
                        "--config", str(cfg), "--json", str(report_path), "-q"], capture_output=True, text=True,
                       timeout=300, env=base_env(tiny_models))
    assert r.returncode == 0, r.stderr
    rep = json.loads(report_path.read_text())
    assert rep["detector"] == "haar" and rep["infer"]["haar_neighbors"] == 3
    cfg.write_text('[infer]\ndetector = "nosuch"\n')
    r = subprocess.run([sys.executable, str(TOOL), "--check", str(out), "--truth", str(truth), "--model", TINY,
                        "--config", str(cfg), "-q"], capture_output=True, text=True, timeout=300, env=base_env(tiny_models))
    assert r.returncode == 78 and "infer.detector" in r.stderr


def test_tilt_rotates_each_face_within_the_range(fer_root) -> None:
    """--tilt 25 rotates each face by its recorded angle (|angle| <= 25): the pixels equal the rotated FER image."""
    images, labels, names = make_clip.load_faces(fer_root, "private")
    idx = {n: i for i, n in enumerate(names)}
    angles = []
    for frame, faces in make_clip.compose(images, labels, names, 40, (640, 480), seed=4, progress=False, tilt=25.0):
        for face in faces:
            x, y, w, h = face["box"]
            angles.append(face["tilt"])
            interp = cv2.INTER_CUBIC if face["interp"] == "cubic" else cv2.INTER_LINEAR
            up = cv2.resize(images[idx[face["file"]]], (w, h), interpolation=interp)
            m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), face["tilt"], 1.0)
            expect = cv2.warpAffine(up, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=make_clip.BACKGROUND)
            assert np.array_equal(frame[y : y + h, x : x + w, 0], expect)
    assert all(abs(a) <= 25 for a in angles) and max(abs(a) for a in angles) > 10
    upright = [f for _, faces in make_clip.compose(images, labels, names, 12, (640, 480), seed=4, progress=False)
               for f in faces]
    assert all(f["tilt"] == 0.0 for f in upright)


def test_crop_framing_compares_the_box_crop_with_aligned_framings(clip, tiny_models, tmp_path) -> None:
    """tools/crop_framing.py scores the box crop and each aligned framing on the same detected faces of a clip."""
    out, truth = clip
    report_path = tmp_path / "framing.json"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "crop_framing.py"), "--clip", str(out), "--truth", str(truth),
                        "--model", TINY, "--scales", "0.9", "1.1", "--eye-y", "0.34", "--json", str(report_path)],
                       capture_output=True, text=True, timeout=300, env=base_env(tiny_models))
    assert r.returncode == 0, r.stderr
    rep = json.loads(report_path.read_text())
    (c,) = rep["clips"]
    assert [(f["align"], f.get("align_scale")) for f in c["framings"]] == [(False, None), (True, 0.9), (True, 1.1)]
    assert 0 < c["detected"] <= c["faces"] and c["shots"] >= 5
    assert all(0.0 <= f["accuracy"] <= 1.0 for f in c["framings"])
    assert rep["best"] in [dict(f, accuracy=rep["best"]["accuracy"]) for f in c["framings"]]
