#!/usr/bin/env python3
"""Choose the aligned crop's framing by measurement on labelled clips from ``tools/make_clip.py``.

    python tools/crop_framing.py --clip clip.mp4 --truth clip.json [--clip tilted.mp4 --truth tilted.json]
                                 --model quant [--config FILE] [--scales 0.9 1.0 1.1] [--eye-y 0.34 0.38 0.42]
                                 [--json docs/reports/crop-framing.json]

Each clip's shots are held for several identical frames, so the first frame of each shot is
enough: it is decoded once and run through the daemon's detector once (the ``[infer]``
section of ``--config``, else the defaults). Then every framing crops the matched faces
through :meth:`emod.pipeline.FacePipeline.crop`, the daemon's own crop, and classifies them:
the box crop (``align = false``, ``margin`` from the config) and the aligned crop for each
``align_scale`` x ``align_eye_y``. Reported per clip and framing: label accuracy on the
detected faces, and the accuracy of the 48x48 originals of the same faces (the ceiling).
Faces are matched to the truth by ``make_clip``'s rule.
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

import numpy as np

from emod.sources.video import VideoSource
from make_clip import load_named, matches  # noqa: E402  (tools/ is on the path when run as a script)


def shot_faces(clip: Path, truth: dict, pipe) -> list[tuple[np.ndarray, object, dict]]:
    """(frame, detection, truth face) for every truth face matched in the first frame of each shot."""
    cap = VideoSource(str(clip))  # the daemon's own reader: the same pixels as emod run and emod analyze
    cap.open()
    out, seen = [], set()
    try:
        for fr in truth["frames"]:
            frame = cap.read()
            if frame is None:
                break
            shot = fr["faces"][0]["shot"] if fr["faces"] else None
            if shot is None or shot in seen:
                continue
            seen.add(shot)
            dets = pipe.detector.detect(frame)
            for ti, di in matches([f["box"] for f in fr["faces"]], [d.box for d in dets]):
                out.append((frame, dets[di], fr["faces"][ti]))
    finally:
        cap.close()
    return out


def evaluate(clip: Path, truth_path: Path, model: str, infer, scales, eye_ys, state_dir=None) -> dict:
    """The report for one clip: faces, detected, direct accuracy on them, and each framing's label accuracy."""
    from emod.labels import LABELS
    from emod.models import classifier as clf_mod
    from emod.pipeline import FacePipeline

    truth = json.loads(Path(truth_path).read_text())
    clf = clf_mod.load(model, infer.threads, state_dir)
    base = FacePipeline.from_config(dataclasses.replace(infer, align=False), clf)
    found = shot_faces(clip, truth, base)
    first = {}  # shot -> its faces
    for f in truth["frames"]:
        if f["faces"]:
            first.setdefault(f["faces"][0]["shot"], f["faces"])
    shots, n_faces = len(first), sum(len(v) for v in first.values())
    labels = [t["label"] for _, _, t in found]
    files = sorted({t["file"] for _, _, t in found})
    fer = load_named(Path(truth["data"]), files)
    direct = dict(zip(files, (LABELS[int(i)] for i in np.argmax(clf.classify([fer[f] for f in files]), axis=1))))
    direct_acc = float(np.mean([direct[t["file"]] == t["label"] for _, _, t in found])) if found else None

    def accuracy(pipe) -> float:
        probs = clf.classify([pipe.crop(frame, d) for frame, d, _ in found])
        return round(float(np.mean([LABELS[int(i)] == lab for i, lab in zip(np.argmax(probs, axis=1), labels)])), 4)

    framings = [{"align": False, "margin": infer.margin, "accuracy": accuracy(base)}]
    for s in scales:
        for y in eye_ys:
            pipe = FacePipeline(base.detector, clf, infer.margin, (s, y))
            framings.append({"align": True, "align_scale": s, "align_eye_y": y, "accuracy": accuracy(pipe)})
    return {"clip": str(clip), "truth": str(truth_path), "tilt": truth.get("tilt", 0.0), "split": truth.get("split"),
            "shots": shots, "faces": n_faces, "detected": len(found), "model": clf.name, "detector": base.detector.name,
            "direct_accuracy_on_detected": None if direct_acc is None else round(direct_acc, 4), "framings": framings}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", type=Path, action="append", required=True, help="clip from make_clip.py (repeatable)")
    p.add_argument("--truth", type=Path, action="append", required=True, help="its sidecar (one per --clip)")
    p.add_argument("--model", required=True)
    p.add_argument("--config", type=Path, help="emod TOML config whose [infer] section builds the detector")
    p.add_argument("--scales", type=float, nargs="+", default=[0.9, 1.0, 1.1, 1.2])
    p.add_argument("--eye-y", type=float, nargs="+", default=[0.34, 0.38, 0.42])
    p.add_argument("--state-dir")
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args(argv)
    if len(args.clip) != len(args.truth):
        p.error("give one --truth per --clip")
    from emod import config

    cfg = config.load_or_exit(args.config, "crop_framing")
    if cfg.infer.detector != "yunet":
        p.error("aligned crops need landmarks: use the yunet detector")
    t0 = time.perf_counter()
    clips = [evaluate(c, t, args.model, cfg.infer, args.scales, args.eye_y, args.state_dir) for c, t in zip(args.clip, args.truth)]
    # the framing with the best mean accuracy over the clips
    means = [float(np.mean([c["framings"][i]["accuracy"] for c in clips])) for i in range(len(clips[0]["framings"]))]
    best = int(np.argmax(means))
    report = {"command": "tools/crop_framing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "clips": clips, "mean_accuracy": [round(m, 4) for m in means], "best": clips[0]["framings"][best] | {"accuracy": round(means[best], 4)},
              "seconds": round(time.perf_counter() - t0, 1)}
    for c in clips:
        print(f"{c['clip']} (tilt {c['tilt']}): {c['detected']} of {c['faces']} shot faces detected; 48x48 originals "
              f"{100 * c['direct_accuracy_on_detected']:.1f}%")
    print(f"{'framing':<28}" + "".join(f"{Path(c['clip']).name:>16}" for c in clips) + f"{'mean':>8}")
    for i, f in enumerate(clips[0]["framings"]):
        name = f"box, margin {f['margin']}" if not f["align"] else f"aligned {f['align_scale']} / {f['align_eye_y']}"
        print(f"{name:<28}" + "".join(f"{100 * c['framings'][i]['accuracy']:>15.1f}%" for c in clips) + f"{100 * means[i]:>7.1f}%")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
