#!/usr/bin/env python3
"""Compose a labelled test clip from FER2013 faces, and measure the daemon's train/serve skew on it.

Make a clip (each frame: one, sometimes two, FER2013 test faces upscaled to 96..160 px on a
plain mid-grey background at random positions, each shot held for a few frames) and its
ground truth sidecar:

    python tools/make_clip.py --out clip.mp4 --truth clip.json [--n 300] [--fps 10] [--size 640x480]
                              [--seed 0] [--data DIR] [--split private] [--tilt DEG]

``--tilt DEG`` rotates each face by a random angle in -DEG..DEG about its centre (the corners
the rotation uncovers are background), as a head tilted in the camera's plane looks; the
same seed without ``--tilt`` gives the same clip as before.

Check a model on it, through the daemon's own path (``emod.pipeline.FacePipeline`` built from
the ``[infer]`` section of ``--config FILE``, else the defaults, as ``emod run`` builds it),
against classifying the same FER images directly (``Classifier.classify`` on the 48x48 originals):

    python tools/make_clip.py --check clip.mp4 --truth clip.json --model quant [--config FILE] [--json report.json]

Sidecar (``--truth``): ``frames[i].faces[j]`` = ``{"box": [x, y, w, h], "label", "file", "shot"}``,
where ``box`` is the rectangle the upscaled 48x48 FER image occupies and ``file`` the FER name
(relative to the data root; ``csv:ROW`` for the csv layout).

Match rule (the truth box is the padded FER image, the detector's box the face inside it,
usually smaller, so IoU is the wrong test): a detection matches a truth face when the
detection's centre lies inside the truth rectangle and its width is 0.3..1.2 times the
truth width. Each truth face takes at most one detection (the nearest centre), each
detection at most one face. Recall = matched / truth faces; pipeline accuracy = correct
labels / matched; the skew gap = direct accuracy on the matched faces - pipeline accuracy.
``agreement`` (pipeline label == direct label on matched faces) measures the skew without
needing a trained model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emod.cli.argtypes import plain  # noqa: E402

import cv2
import numpy as np

from emod.datasets import fer2013
from emod.labels import LABEL_INDEX, LABELS
from emod.sources.video import VideoSource

SPLIT_PREFIX = {"private": "PrivateTest_", "public": "PublicTest_"}
MATCH_RULE = "detection centre inside the truth rectangle and detection width 0.3..1.2 x truth width"
SIZE_RATIO = (0.3, 1.2)
BACKGROUND = 128
FACE_PX = (96, 160)
HOLD = (3, 6)  # frames per shot, inclusive
TWO_FACES = 0.2  # probability of a two-face shot


# --- FER faces ---------------------------------------------------------------------------------------------
def load_faces(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, 48, 48) uint8, labels (N,), names) of one FER2013 split: private, public or train."""
    root = Path(root)
    if root.is_file() or ((root / "fer2013.csv").is_file() and not (root / "train").is_dir()):
        data = fer2013.load_csv(root if root.is_file() else root / "fer2013.csv").subset(split)
        return data.images, data.labels, [str(n) for n in data.names]
    folder = "train" if split == "train" else "test"
    prefix = SPLIT_PREFIX.get(split, "")
    paths = [(label, p) for label in LABELS for p in sorted((root / folder / label).glob(f"{prefix}*.jpg"))]
    if not paths:
        raise FileNotFoundError(f"no {split} images under {root / folder} (FER2013 image-folder layout expected)")
    images = np.stack([_read48(p) for _, p in paths])
    return images, np.array([LABEL_INDEX[l] for l, _ in paths]), [f"{folder}/{l}/{p.name}" for l, p in paths]


def _read48(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot decode {path}")
    return img if img.shape == (48, 48) else cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)


def load_named(root: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The 48x48 images of the FER NAMES listed in a sidecar."""
    root = Path(root)
    out: dict[str, np.ndarray] = {}
    csv_rows = [n for n in names if n.startswith("csv:")]
    if csv_rows:
        data = fer2013.load_csv(root if root.is_file() else root / "fer2013.csv")
        for n in csv_rows:
            out[n] = data.images[int(n[4:])]
    for n in names:
        if n not in out:
            out[n] = _read48(root / n)
    return out


# --- composing ---------------------------------------------------------------------------------------------
def _place(rng: np.random.Generator, sizes: list[int], W: int, H: int, tries: int = 200) -> list[tuple[int, int]]:
    """Top-left corners for squares of SIZES inside W x H without overlap (rejection sampling)."""
    for _ in range(tries):
        spots = [(int(rng.integers(0, W - s + 1)), int(rng.integers(0, H - s + 1))) for s in sizes]
        if all(x1 + s1 <= x2 or x2 + s2 <= x1 or y1 + s1 <= y2 or y2 + s2 <= y1
               for i, ((x1, y1), s1) in enumerate(zip(spots, sizes)) for (x2, y2), s2 in zip(spots[i + 1:], sizes[i + 1:])):
            return spots
    raise ValueError(f"cannot place faces of {sizes} px without overlap in {W}x{H}")


def compose(images: np.ndarray, labels: np.ndarray, names: list[str], n: int, size: tuple[int, int], seed: int = 0,
            progress: bool = True, tilt: float = 0.0):
    """Yield (frame BGR uint8, faces) for N frames; faces = [{"box", "label", "file", "shot", "interp", "tilt"}].

    TILT > 0 rotates each face by a uniform random angle in -TILT..TILT degrees (positive: counter-clockwise).
    """
    W, H = size
    if min(W, H) < FACE_PX[1] * 2:
        raise ValueError(f"frame {W}x{H} too small for two {FACE_PX[1]} px faces")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))  # every face once before any repeats
    next_face = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="compose", unit="frame")
    done, shot = 0, 0
    while done < n:
        k = 2 if rng.random() < TWO_FACES else 1
        idx = []
        for _ in range(k):
            idx.append(int(order[next_face % len(order)]))
            next_face += 1
        sizes = [int(rng.integers(FACE_PX[0], FACE_PX[1] + 1)) for _ in idx]
        spots = _place(rng, sizes, W, H)
        frame = np.full((H, W, 3), BACKGROUND, np.uint8)
        faces = []
        for i, s, (x, y) in zip(idx, sizes, spots):
            interp = "cubic" if rng.random() < 0.5 else "linear"
            up = cv2.resize(images[i], (s, s), interpolation=cv2.INTER_CUBIC if interp == "cubic" else cv2.INTER_LINEAR)
            angle = round(float(rng.uniform(-tilt, tilt)), 2) if tilt else 0.0  # no draw without tilt: same clips as before
            if angle:
                m = cv2.getRotationMatrix2D(((s - 1) / 2, (s - 1) / 2), angle, 1.0)
                up = cv2.warpAffine(up, m, (s, s), flags=cv2.INTER_LINEAR, borderValue=BACKGROUND)
            frame[y : y + s, x : x + s] = up[:, :, None]
            faces.append({"box": [x, y, s, s], "label": LABELS[int(labels[i])], "file": names[i], "shot": shot,
                          "interp": interp, "tilt": angle})
        hold = min(int(rng.integers(HOLD[0], HOLD[1] + 1)), n - done)
        for _ in range(hold):
            yield frame, faces
        done += hold
        shot += 1
        if bar is not None:
            bar.update(hold)
    if bar is not None:
        bar.close()


def make_clip(out: Path, truth: Path, n: int = 300, fps: float = 10.0, size: tuple[int, int] = (640, 480), seed: int = 0,
              data: Path | None = None, split: str = "private", progress: bool = True, tilt: float = 0.0) -> dict:
    """Write the clip OUT (mp4v) and its sidecar TRUTH; returns the sidecar dict."""
    root = Path(data) if data else fer2013.default_root()
    images, labels, names = load_faces(root, split)
    out, truth = Path(out), Path(truth)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {out} with the mp4v codec")
    frames = []
    try:
        for i, (frame, faces) in enumerate(compose(images, labels, names, n, size, seed, progress, tilt)):
            writer.write(frame)
            frames.append({"index": i, "faces": faces})
    finally:
        writer.release()
    side = {"version": 1, "clip": out.name, "fps": fps, "size": list(size), "n_frames": len(frames), "seed": seed,
            "split": split, "tilt": tilt, "data": str(root), "labels": list(LABELS), "background": BACKGROUND,
            "box": "placement rectangle of the upscaled 48x48 FER image: x, y, w, h", "match_rule": MATCH_RULE,
            "frames": frames}
    truth.write_text(json.dumps(side, indent=1) + "\n")
    return side


# --- checking ----------------------------------------------------------------------------------------------
def matches(truth_boxes: list, det_boxes: list) -> list[tuple[int, int]]:
    """(truth index, detection index) pairs under :data:`MATCH_RULE`, nearest centre first, one-to-one."""
    cands = []
    for ti, (x, y, w, h) in enumerate(truth_boxes):
        for di, (dx, dy, dw, dh) in enumerate(det_boxes):
            cx, cy = dx + dw / 2, dy + dh / 2
            if x <= cx <= x + w and y <= cy <= y + h and SIZE_RATIO[0] <= dw / w <= SIZE_RATIO[1]:
                cands.append(((cx - x - w / 2) ** 2 + (cy - y - h / 2) ** 2, ti, di))
    used_t, used_d, out = set(), set(), []
    for _, ti, di in sorted(cands):
        if ti not in used_t and di not in used_d:
            used_t.add(ti), used_d.add(di)
            out.append((ti, di))
    return out


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def check_clip(clip: Path, truth: Path, model: str, data: Path | None = None, state_dir: str | None = None,
               progress: bool = True, infer=None, shots: bool = False) -> dict:
    """Run CLIP through the daemon's FacePipeline and compare with direct classification; the report dict.

    INFER is the ``[infer]`` config section (``emod.config.Infer``) that builds the detector and crop;
    None: the defaults. SHOTS: check only the first frame of each shot (each face appearance once).
    """
    from emod.config import Infer
    from emod.models import classifier as clf_mod
    from emod.pipeline import FacePipeline

    side = json.loads(Path(truth).read_text())
    c = infer if infer is not None else Infer()
    clf = clf_mod.load(model, c.threads, state_dir)
    pipe = FacePipeline.from_config(c, clf)
    detector = pipe.detector
    root = Path(data) if data else Path(side["data"])
    files = sorted({f["file"] for fr in side["frames"] for f in fr["faces"]})
    fer = load_named(root, files)
    direct = dict(zip(files, (LABELS[int(i)] for i in np.argmax(clf.classify([fer[f] for f in files]), axis=1))))
    per_label = {l: {"faces": 0, "detected": 0, "pipeline_correct": 0, "direct_correct": 0, "direct_correct_detected": 0}
                 for l in LABELS}
    tot = {"faces": 0, "detected": 0, "pipeline_correct": 0, "direct_correct": 0, "direct_correct_detected": 0,
           "agree": 0, "detections": 0, "false_positives": 0}
    cap = VideoSource(str(clip))  # the daemon's own reader: the same pixels as emod run and emod analyze
    cap.open()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(side["frames"]), desc=f"check {clf.name}", unit="frame")
    decoded, checked, ms = 0, 0, []
    t0 = time.perf_counter()
    try:
        seen_shots: set = set()
        for fr in side["frames"]:
            frame = cap.read()
            if frame is None:
                break
            decoded += 1
            if shots:  # only the first frame of each shot: the others show the same picture
                shot = fr["faces"][0]["shot"] if fr["faces"] else None
                if shot in seen_shots:
                    if bar is not None:
                        bar.update(1)
                    continue
                seen_shots.add(shot)
            checked += 1
            faces, det_ms, cls_ms = pipe.process(frame)
            ms.append(det_ms + cls_ms)
            truth_faces = fr["faces"]
            pairs = matches([f["box"] for f in truth_faces], [f.box for f in faces])
            tot["detections"] += len(faces)
            tot["false_positives"] += len(faces) - len(pairs)
            matched = {ti: di for ti, di in pairs}
            for ti, tf in enumerate(truth_faces):
                lab = tf["label"]
                row = per_label[lab]
                d_ok = direct[tf["file"]] == lab
                for dct in (row, tot):
                    dct["faces"] += 1
                    dct["direct_correct"] += d_ok
                if ti in matched:
                    p_label = faces[matched[ti]].label
                    for dct in (row, tot):
                        dct["detected"] += 1
                        dct["pipeline_correct"] += p_label == lab
                        dct["direct_correct_detected"] += d_ok
                    tot["agree"] += p_label == direct[tf["file"]]
            if bar is not None:
                bar.update(1)
    finally:
        cap.close()
        if bar is not None:
            bar.close()
    pipeline_acc = _ratio(tot["pipeline_correct"], tot["detected"])
    direct_det = _ratio(tot["direct_correct_detected"], tot["detected"])
    return {
        "clip": str(clip), "truth": str(truth), "model": clf.name, "detector": detector.name, "margin": c.margin,
        "infer": dataclasses.asdict(c),
        "detect_width": c.detect_width, "min_face": c.min_face, "match_rule": MATCH_RULE,
        "frames": decoded, "frames_checked": checked, "shots_only": shots, "truth_frames": len(side["frames"]), "faces": tot["faces"], "detected": tot["detected"],
        "recall": _ratio(tot["detected"], tot["faces"]),
        "detections": tot["detections"], "false_positives": tot["false_positives"],
        "precision": _ratio(tot["detected"], tot["detections"]),
        "pipeline_accuracy": pipeline_acc,
        "direct_accuracy": _ratio(tot["direct_correct"], tot["faces"]),
        "direct_accuracy_on_detected": direct_det,
        "skew_gap": round(direct_det - pipeline_acc, 4) if pipeline_acc is not None and direct_det is not None else None,
        "agreement": _ratio(tot["agree"], tot["detected"]),
        "unique_images": len(files),
        "pipeline_ms_mean": round(float(np.mean(ms)), 2) if ms else None,
        "seconds": round(time.perf_counter() - t0, 2),
        "per_label": {l: dict(v, recall=_ratio(v["detected"], v["faces"]),
                              pipeline_accuracy=_ratio(v["pipeline_correct"], v["detected"]),
                              direct_accuracy=_ratio(v["direct_correct"], v["faces"]))
                      for l, v in per_label.items()},
    }


def render(r: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = [
        f"{r['clip']}: {r['frames']}/{r['truth_frames']} frames"
        + (f" ({r['frames_checked']} checked: the first of each shot)" if r.get("shots_only") else "")
        + f", {r['faces']} faces ({r['unique_images']} FER images), "
        f"model {r['model']}, detector {r['detector']}, margin {r['margin']}",
        f"detection recall {pct(r['recall'])} ({r['detected']}/{r['faces']}), precision {pct(r['precision'])}, "
        f"{r['false_positives']} false positives   [{r['match_rule']}]",
        f"label accuracy: pipeline {pct(r['pipeline_accuracy'])} on detected faces; direct (48x48 FER) "
        f"{pct(r['direct_accuracy_on_detected'])} on the same faces, {pct(r['direct_accuracy'])} on all",
        f"train/serve skew gap {pct(r['skew_gap'])}   pipeline/direct label agreement {pct(r['agreement'])}",
        f"{'label':<9} {'faces':>6} {'recall':>7} {'pipeline':>9} {'direct':>7}",
    ]
    for l, v in r["per_label"].items():
        lines.append(f"{l:<9} {v['faces']:>6} {pct(v['recall']):>7} {pct(v['pipeline_accuracy']):>9} {pct(v['direct_accuracy']):>7}")
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT") from None
    return w, h


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="clip to write (.mp4, mp4v codec)")
    p.add_argument("--truth", type=Path, required=True, help="ground truth sidecar JSON (written, or read by --check)")
    p.add_argument("--n", type=int, default=300, help="frames (default 300)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate (default 10)")
    p.add_argument("--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, help="FER2013 root (default: emod.datasets.fer2013.default_root())")
    p.add_argument("--split", choices=("private", "public", "train"), default="private")
    p.add_argument("--tilt", type=float, default=0.0, metavar="DEG",
                   help="rotate each face by a random angle in -DEG..DEG (default 0: upright)")
    p.add_argument("--check", type=Path, metavar="CLIP", help="check mode: run CLIP through the daemon's pipeline")
    p.add_argument("--model", help="check mode: model name or directory")
    p.add_argument("--state-dir", help="check mode: state directory searched for user models")
    p.add_argument("--config", type=Path, help="check mode: emod TOML config whose [infer] section builds the pipeline "
                   "(detector, crop), as in the daemon; default: the built-in defaults")
    p.add_argument("--shots", action="store_true", help="check mode: only the first frame of each shot (the others "
                   "repeat it; several times faster, each shown face counted once)")
    p.add_argument("--json", type=Path, help="check mode: write the report here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.check:
        if not args.model:
            p.error("--check needs --model")
        from emod import config

        cfg = config.load_or_exit(args.config, "make_clip")
        report = check_clip(args.check, args.truth, args.model, args.data, args.state_dir, progress=not args.quiet,
                            infer=cfg.infer, shots=args.shots)
        print(render(report))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {args.json}")
        return 0
    if not args.out:
        p.error("give --out CLIP.mp4 (or --check CLIP.mp4)")
    if args.n <= 0 or args.fps <= 0:
        p.error("--n and --fps must be positive")
    if not 0 <= args.tilt <= 90:
        p.error("--tilt must be 0..90 degrees")
    side = make_clip(args.out, args.truth, args.n, args.fps, args.size, args.seed, args.data, args.split,
                     progress=not args.quiet, tilt=args.tilt)
    faces = sum(len(f["faces"]) for f in side["frames"])
    print(f"wrote {args.out} ({side['n_frames']} frames, {faces} faces) and {args.truth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
