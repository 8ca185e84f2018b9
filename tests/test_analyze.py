"""`emod analyze` (the CLI) and the image-folder source, on the bundled demo clip with the shipped `quant` model."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest

from _fixtures import DEMO, EMOD, Daemon, base_env, read_video, short_tmp, tiny_models  # noqa: F401
from emod.labels import LABELS
from emod.sources.base import SourceError
from emod.sources.folder import FolderSource


def _records_with_faces(node) -> list[dict]:
    """The per-frame objects of analyze's JSON: those with a ``faces`` list, inside a ``frames`` list where there is one."""
    if isinstance(node, dict):
        if isinstance(node.get("frames"), list):
            return _records_with_faces(node["frames"])
        return [node] if isinstance(node.get("faces"), list) else []
    if isinstance(node, list):
        return [r for v in node for r in _records_with_faces(v)]
    return []


@pytest.fixture(scope="module")
def frame_jpg(tmp_path_factory):
    """Frame 0 of the demo clip as a JPEG, and the decoded image."""
    path = tmp_path_factory.mktemp("analyze") / "frame0.jpg"
    frame = read_video(DEMO)[0]
    assert cv2.imwrite(str(path), frame)
    return path, cv2.imread(str(path), cv2.IMREAD_COLOR)


def analyze(*args) -> subprocess.CompletedProcess:
    """``emod analyze ARGS`` with the shipped models (no EMOD_MODELS_DIR)."""
    env = {k: v for k, v in base_env(DEMO.parent).items() if k != "EMOD_MODELS_DIR"}
    return subprocess.run([str(EMOD), "analyze", *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def test_analyze_json_matches_the_daemon_pipeline(frame_jpg):
    """`emod analyze --json` on an image gives the faces, labels and probabilities the daemon's FacePipeline gives."""
    from emod import config
    from emod.cli.analyze import build_pipeline

    path, img = frame_jpg
    r = analyze(path, "--json", "--model", "quant")
    assert r.returncode == 0, r.stderr
    objs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert [o["labels"] for o in objs] == [list(LABELS)]  # the order of every face's probs
    records = _records_with_faces(objs)
    assert len(records) == 1
    faces = records[0]["faces"]
    assert faces, "no face found on the demo frame"
    expect, _, _ = build_pipeline(config.Config(), "quant").process(img)
    assert [tuple(f["box"]) for f in faces] == [tuple(f.box) for f in expect]
    for got, want in zip(faces, expect):
        assert len(got["probs"]) == len(LABELS) and abs(sum(got["probs"]) - 1) < 1e-3
        assert got["label"] == LABELS[int(np.argmax(got["probs"]))] == want.label
        assert np.allclose(got["probs"], want.probs, atol=1e-4)


def test_analyze_video_plain_output_and_a_missing_file(frame_jpg, tmp_path):
    """A video is analysed every Nth frame, plain output names box and label, and a missing file exits non-zero
    naming it while the other inputs are still analysed."""
    path, _ = frame_jpg
    r = analyze(DEMO, "--json", "--every", "20", "--model", "quant")
    assert r.returncode == 0, r.stderr
    records = _records_with_faces([json.loads(line) for line in r.stdout.splitlines() if line.strip()])
    assert len(records) == 4  # frames 0, 20, 40 and 60 of 62
    assert sum(len(rec["faces"]) > 0 for rec in records) >= 3

    missing = tmp_path / "nosuch.jpg"
    r = analyze(missing, path, "--model", "quant")
    assert r.returncode != 0
    assert str(missing) in r.stdout + r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith(str(path))]
    assert lines and all(" box " in line and any(label in line for label in LABELS) for line in lines), r.stdout


def test_analyze_unknown_model_exits_2(frame_jpg):
    """An unknown --model is refused with exit 2, naming it."""
    r = analyze(frame_jpg[0], "--model", "nosuch")
    assert r.returncode == 2 and "nosuch" in r.stderr


def _write(folder, name: str, shape, value: int) -> None:
    assert cv2.imwrite(str(folder / name), np.full(shape, value, np.uint8))


def test_folder_source_reads_images_in_name_order(tmp_path):
    """A folder source yields each decodable image once, in name order, skipping other and broken files."""
    _write(tmp_path, "b.jpg", (20, 30, 3), 200)
    _write(tmp_path, "a.png", (10, 12, 3), 50)
    _write(tmp_path, "c.bmp", (8, 8, 3), 120)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    src = FolderSource(str(tmp_path))
    src.open()
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    src.close()
    assert [f.shape for f in frames] == [(10, 12, 3), (20, 30, 3), (8, 8, 3)]
    assert [int(np.median(f)) for f in frames] == [pytest.approx(50, abs=2), pytest.approx(200, abs=2), 120]


def test_folder_source_refuses_a_missing_or_empty_folder(tmp_path):
    """A missing folder, or one without images, is a SourceError naming it."""
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "nosuch", tmp_path / "empty"):
        with pytest.raises(SourceError, match=str(folder.name)):
            FolderSource(str(folder)).open()


def test_daemon_serves_an_image_folder(short_tmp, tiny_models):
    """`emod run --source FOLDER --loop` classifies the folder's images and reports the folder as its source."""
    folder = short_tmp / "images"
    folder.mkdir()
    for i, frame in enumerate(read_video(DEMO)[::10]):
        assert cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame)
    d = Daemon(short_tmp, tiny_models, folder)
    try:
        s = d.wait_processing()
        assert s["source"]["name"] == str(folder) and s["source"]["error"] is None
    finally:
        d.kill()


def test_analyze_summary_tracks_the_demo_face_like_the_daemon(frame_jpg, tmp_path):
    """`--summary --json` gives per track its frames, time span and label shares through the daemon's tracker and smoother,
    and `--annotate DIR` writes one overlaid picture per analysed frame (and per image)."""
    from emod import config
    from emod.cli.analyze import build_pipeline
    from emod.vision.emotions import from_config

    path, _ = frame_jpg
    out = tmp_path / "annotated"
    r = analyze(DEMO, path, "--summary", "--json", "--model", "quant", "--annotate", out)
    assert r.returncode == 0, r.stderr
    video, image = [json.loads(line) for line in r.stdout.splitlines()]
    frames = read_video(DEMO)
    assert video["frames"] == len(frames) and video["tracks"] and image["frames"] == 1 and image["tracks"]
    longest = max(video["tracks"], key=lambda t: t["frames"])
    assert longest["frames"] > len(frames) // 2 and longest["end_s"] > longest["start_s"]
    for t in video["tracks"] + image["tracks"]:
        assert abs(sum(t["shares"].values()) - 1) <= 1e-3 and t["label"] == max(t["shares"], key=t["shares"].get)
    # the same frames through the daemon's own stream object give the same tracks
    pipe, stream = build_pipeline(config.Config(), "quant"), from_config(config.Config().display)
    stream.keep_ended = True
    rate = video["fps"] or 30.0
    for i, frame in enumerate(frames):
        faces, _, _ = pipe.process(frame)
        stream.update([(f.box, f.probs) for f in faces], i / rate, i / rate, i, "quant")
    daemon = sorted(stream.ended_so_far + stream.finish(), key=lambda t: t["track"])
    assert [(t["track"], t["frames"], t["label"]) for t in daemon] == [(t["track"], t["frames"], t["label"]) for t in video["tracks"]]
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == len(frames) + 1 and "frame0.jpg" in written and f"demo_{len(frames) - 1:06d}.jpg" in written
    assert cv2.imread(str(out / "frame0.jpg")).shape == cv2.imread(str(path)).shape
    plain = analyze(DEMO, "--summary", "--model", "quant")
    assert plain.returncode == 0 and f"track {longest['track']} " in plain.stdout and "frames" in plain.stdout


def test_analyze_annotate_into_an_unwritable_place_exits_2(frame_jpg, tmp_path):
    """`--annotate` naming a path below a file fails at once with exit 2 and the reason."""
    path, _ = frame_jpg
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = analyze(path, "--annotate", blocker / "sub")
    assert r.returncode == 2 and "--annotate" in r.stderr


@pytest.mark.parametrize("mode", ["--summary", "--json"])
def test_a_closed_pipe_ends_analyze_quietly(frame_jpg, mode):
    """`emod analyze --summary A B | head`: a reader gone before the first line is not a failure of every input (exit 0, no errors)."""
    path, _ = frame_jpg
    env = {k: v for k, v in base_env(DEMO.parent).items() if k != "EMOD_MODELS_DIR"}
    r = subprocess.run(["bash", "-c", f'"{EMOD}" analyze {mode} --every 30 "{path}" "{DEMO}" | true; echo "rc=${{PIPESTATUS[0]}}" >&2'],
                       capture_output=True, text=True, timeout=180, env=env)
    assert "rc=0" in r.stderr and "Broken pipe" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_annotate_alone_says_what_it_wrote_and_an_empty_folder_is_an_error(frame_jpg, tmp_path):
    """`--annotate DIR` without `--summary` names each file and its frame count; an empty folder exits 2 by name,
    after the other inputs were analysed."""
    path, _ = frame_jpg
    out, empty = tmp_path / "annotated", tmp_path / "empty"
    empty.mkdir()
    r = analyze(path, empty, "--annotate", out, "--model", "quant")
    assert r.returncode == 2
    assert r.stdout.splitlines() == [f"{path}: 1 frame annotated: {out / path.name}"] and (out / path.name).is_file()
    assert f"emod analyze: {empty}: empty folder: nothing to analyse" in r.stderr
    j = analyze(path, "--annotate", out, "--json", "--model", "quant")
    # a second run into the same folder starts its names afresh (overwrites, as a rerun should)
    assert j.returncode == 0 and json.loads(j.stdout) == {"path": str(path), "model": "quant", "frames": 1,
                                                          "annotated": str(out / path.name)}
    e = analyze(empty, "--json")
    assert e.returncode == 2 and json.loads(e.stdout) == {"path": str(empty), "error": "empty folder: nothing to analyse"}


def test_annotate_keeps_inputs_of_the_same_name_apart(frame_jpg, tmp_path):
    """a/x.jpg and b/x.jpg in one folder, and x.png beside them: three annotated files, each named in the output."""
    path, image = frame_jpg
    src, out = tmp_path / "src", tmp_path / "out"
    for sub, ext, img in (("a", ".jpg", image), ("b", ".jpg", cv2.flip(image, 1)), ("b", ".png", image[:, ::-1][::-1].copy())):
        (src / sub).mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(src / sub / f"x{ext}"), img)
    r = analyze(src, "--annotate", out, "--model", "quant")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{src / 'a' / 'x.jpg'}: 1 frame annotated: {out / 'x.jpg'}",
                                     f"{src / 'b' / 'x.jpg'}: 1 frame annotated: {out / 'x-2.jpg'}",
                                     f"{src / 'b' / 'x.png'}: 1 frame annotated: {out / 'x-3.jpg'}"]
    written = [cv2.imread(str(out / n)) for n in ("x.jpg", "x-2.jpg", "x-3.jpg")]
    assert all(w is not None and w.shape == image.shape for w in written)
    assert not np.array_equal(written[0], written[1])  # three pictures, not one written three times


FER_TEST = DEMO.parents[3].parent / "shared" / "data" / "fer2013" / "test"


def _fer_crops(folder) -> list:
    """One FER2013 test crop (48 x 48 grey JPEG) per label, copied into FOLDER; skips the test without FER2013."""
    import shutil

    if not FER_TEST.is_dir():
        pytest.skip(f"{FER_TEST} is absent")
    out = []
    for label in LABELS:
        src = sorted((FER_TEST / label).iterdir())[0]
        out.append(folder / f"{label}.jpg")
        shutil.copy(src, out[-1])
    return out


def test_crops_takes_each_image_as_one_face_and_small_images_get_a_hint(tmp_path):
    """Issue 29 kind 7: `--crops` gives exactly one face per 48x48 FER2013 crop (the whole image, the classifier's own
    probabilities, no detection); without it, every crop that gives no face carries a hint naming --crops, and so
    does a 64x40 crop (a sibling); a 320x240 photo with no face gets no hint."""
    from emod.models.classifier import load

    crops = _fer_crops(tmp_path)
    odd = tmp_path / "wide.png"
    assert cv2.imwrite(str(odd), cv2.resize(cv2.imread(str(crops[3])), (64, 40)))
    blank = tmp_path / "blank.png"
    assert cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    r = analyze("--json", "--crops", "--model", "quant", tmp_path)
    assert r.returncode == 0, r.stderr
    out = {o["path"]: o for o in map(json.loads, r.stdout.splitlines())}
    quant = load("quant")
    for p in [*crops, odd]:
        (frame,) = out[str(p)]["frames"]
        (face,) = frame["faces"]
        img = cv2.imread(str(p))
        assert face["box"] == [0, 0, img.shape[1], img.shape[0]] and face["score"] is None and frame["detector"] is None
        assert np.allclose(face["probs"], quant.classify([img])[0], atol=1e-4) and "hint" not in out[str(p)]
    r = analyze("--json", "--model", "quant", tmp_path)
    assert r.returncode == 0, r.stderr
    out = {o["path"]: o for o in map(json.loads, r.stdout.splitlines())}
    missed = [p for p in [*crops, odd] if not out[str(p)]["frames"][0]["faces"]]
    assert missed, "every crop found: the hint is untested"
    assert all("--crops" in out[str(p)]["hint"] for p in missed)
    assert all("hint" not in out[str(p)] for p in [*crops, odd] if p not in missed)
    assert not out[str(blank)]["frames"][0]["faces"] and "hint" not in out[str(blank)]
    r = analyze("--model", "quant", odd)  # text mode: the hint on stderr
    assert "hint:" in r.stderr or " box " in r.stdout
