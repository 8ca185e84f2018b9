#!/usr/bin/env python3
"""Count identity switches of the face tracker on the shared clips (and a labelled FER clip), per strategy.

A track must stay one person. Each strategy runs the daemon's own tracking path
(:class:`emod.vision.emotions.EmotionStream`: the ``[display]`` tracker and smoother, plus
:mod:`emod.vision.cuts`) over the detections of the daemon's pipeline (``[infer]`` defaults,
``--model``), at every frame and at every 3rd frame (a Pi's daemon processes about 10 of a
camera's 30 fps):

* ``iou``: box overlap and the centroid fallback only (before this tool);
* ``cut T``: plus a cut between shots ends every track (thumbnail difference > T grey levels);
* ``look G``: plus the appearance gate G (normalised correlation of 16x16 face crops);
* ``cut + look G``: both.

Ground truth, hand-labelled from the frames (:data:`TRUTH`):

* ``short_hamilton_clip.mp4``: hard cuts at frames 20, 82 and 211 (wide shot, profile close-up,
  medium shot, audience). A track holding detections on both sides of a cut is a ``cut_span``.
  People by shot and place (:func:`_hamilton`): the performer and the pianist (0..19), the
  performer (82..210), five audience members by x band (211..274); the profile close-up 20..81,
  with a moving crowd behind, is not labelled.
* ``face-demographics-walking-and-pause.mp4``: three people who never cross; a detection's
  person is its centre's x band (< 160, 160..300, >= 300 px).
* ``head-pose-face-detection-male.mp4``: one man.
* ``--clip/--truth`` (``tools/make_clip.py``): each face's FER file; a detection is a truth face
  when its centre lies inside the truth rectangle (make_clip's match rule). Every new shot
  teleports a new face onto a grey background: the hard case for the cut rule, the easy one for looks.

Per video and strategy: ``tracks``, ``switches`` (changes of the person under one track),
``cut_spans``, ``extra_tracks`` (tracks beyond one per person: the price of a strict rule) and
``false_cuts`` (cuts the detector found where none is annotated).

The labelled clip of the report: ``python tools/make_clip.py --out clip.mp4 --truth clip.json --n 300 --seed 0``.
Chosen (emod's default, :data:`CHOSEN`): the appearance gate 0.5 alone: no identity switch and no
track across a cut on any clip at every frame, every 3rd and every 4th; the cut detector adds
nothing to it, misses a new face on an unchanged background (the FER clip) and, at every 4th
frame, takes fast motion for a cut.

    python tools/identity_switches.py [--media DIR] [--clip clip.mp4 --truth clip.json] [--model quant]
                                      [--json docs/reports/identity-switches.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from emod import config  # noqa: E402
from emod.cli.argtypes import plain  # noqa: E402
from emod.vision import cuts  # noqa: E402
from emod.vision.emotions import EmotionStream, from_config  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "video"
STRATEGIES = {"iou": (0.0, 0.0), "cut 20": (20.0, 0.0), "cut 24": (24.0, 0.0), "look 0.4": (0.0, 0.4),
              "look 0.5": (0.0, 0.5), "look 0.6": (0.0, 0.6), "cut 24 + look 0.5": (24.0, 0.5)}
CHOSEN = "look 0.5"  # emod's default (emod.vision.cuts.APPEARANCE_GATE, no cut detector): see the module docstring
STRIDES = (1, 3, 4)


def _band(edges):
    def person(frame: int, box) -> str:
        cx = box[0] + box[2] / 2
        return f"x<{edges[0]}" if cx < edges[0] else (f"x>={edges[1]}" if cx >= edges[1] else f"{edges[0]}<=x<{edges[1]}")
    return person


def _hamilton(frame: int, box) -> str | None:
    """Who a detection of short_hamilton_clip.mp4 is, by shot and place (None: the crowded profile shot 20..81)."""
    cx, w = box[0] + box[2] / 2, box[2]
    if frame < 20:  # wide shot: the performer (right) and the pianist (left)
        return "performer" if cx > 300 else "pianist"
    if frame < 82:
        return None
    if frame < 211:  # medium shot of the performer; a smaller detection below his face is his hand
        return "performer" if w >= 72 else None
    for edge, who in ((100, "audience 1"), (250, "audience 2"), (350, "audience 3"), (500, "audience 4")):
        if cx < edge:
            return who
    return "audience 5"


TRUTH = {
    "short_hamilton_clip.mp4": {"cuts": [20, 82, 211], "person": _hamilton},
    "face-demographics-walking-and-pause.mp4": {"cuts": [], "person": _band((160, 300))},
    "head-pose-face-detection-male.mp4": {"cuts": [], "person": lambda frame, box: "man"},
}


def _fer_truth(path: Path):
    frames = {f["index"]: f["faces"] for f in json.loads(path.read_text())["frames"]}

    def person(frame: int, box) -> str | None:
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        for f in frames.get(frame, []):
            x, y, w, h = f["box"]
            if x <= cx <= x + w and y <= cy <= y + h and 0.3 * w <= box[2] <= 1.2 * w:
                return f["file"]
        return None
    return person


def detect(path: Path, pipe) -> list[tuple[np.ndarray, list]]:
    """(grey frame, [(box, probs), ...]) per frame, through the daemon's pipeline."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            img = f.to_ndarray(format="bgr24")
            faces, _, _ = pipe.process(img)
            out.append((cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), [(tuple(map(float, x.box)), x.probs) for x in faces]))
    return out


def run(frames, fps: float, stride: int, cut_threshold: float, gate: float, display) -> tuple[dict[int, list], list[int]]:
    """(track id -> [(frame, box), ...], frames where a cut ended the tracks) for one strategy."""
    base = from_config(display)
    base.tracker.appearance_gate = gate
    stream = EmotionStream(base.tracker, cuts.CutDetector(cut_threshold) if cut_threshold > 0 else None)
    tracks: dict[int, list] = defaultdict(list)
    cut_frames = []
    for i in range(0, len(frames), stride):
        grey, faces = frames[i]
        seen = stream.cuts_seen
        msg = stream.update(faces, i / fps, i / fps, i, "m", frame=grey)
        if stream.cuts_seen > seen:
            cut_frames.append(i)
        for f in msg["faces"]:
            tracks[f["track"]].append((i, f["box"]))
    return tracks, cut_frames


def score(tracks: dict[int, list], truth: dict, cut_frames: list[int], stride: int) -> dict:
    spans = [c for c in truth["cuts"] for hits in tracks.values() if hits[0][0] < c <= hits[-1][0]]
    switches = 0
    real = {i for c in truth["cuts"] for i in range(c, c + stride)}  # the first processed frame of the new shot
    per_person: dict[str, set] = defaultdict(set)
    if truth["person"] is not None:
        for tid, hits in tracks.items():
            people = [p for i, box in hits if (p := truth["person"](i, box)) is not None]
            switches += sum(1 for a, b in zip(people, people[1:]) if a != b)
            for p in people:
                per_person[p].add(tid)
    return {"tracks": len(tracks), "switches": switches, "cut_spans": len(spans), "cuts_found": len(cut_frames),
            "false_cuts": sum(1 for i in cut_frames if i not in real),
            "extra_tracks": sum(len(t) - 1 for t in per_person.values()) if per_person else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--media", type=Path, default=MEDIA, help=f"folder of the shared clips (default {MEDIA})")
    p.add_argument("--clip", type=Path, help="a labelled clip of tools/make_clip.py")
    p.add_argument("--truth", type=Path, help="its truth sidecar")
    p.add_argument("--model", default="quant")
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args(argv)
    from emod.cli.analyze import build_pipeline

    cfg = config.Config()
    pipe = build_pipeline(cfg, args.model)
    videos = [(args.media / name, truth) for name, truth in TRUTH.items()]
    if args.clip:
        if not args.truth:
            p.error("--clip needs --truth")
        videos.append((args.clip, {"cuts": [], "person": _fer_truth(args.truth)}))
    report = {"tool": "tools/identity_switches.py", "model": args.model, "chosen": CHOSEN,
              "defaults": {"appearance_gate": cuts.APPEARANCE_GATE, "cut_detector": "off"},
              "strategies": {k: {"cut_threshold": c, "appearance_gate": g} for k, (c, g) in STRATEGIES.items()},
              "videos": {}, "totals": {}}
    for path, truth in videos:
        if not path.is_file():
            print(f"identity_switches: {path} is missing", file=sys.stderr)
            return 2
        t0 = time.monotonic()
        frames = detect(path, pipe)
        with av.open(str(path)) as c:
            fps = float(c.streams.video[0].average_rate or 30)
        diffs = []
        det = cuts.CutDetector(1e9)
        for grey, _ in frames:
            det.update(grey)
            diffs.append(round(det.last_diff, 2))
        entry = {"frames": len(frames), "fps": round(fps, 3), "annotated_cuts": truth["cuts"],
                 "largest_thumbnail_diffs": sorted(((d, i) for i, d in enumerate(diffs)), reverse=True)[:6],
                 "results": {}}
        for stride in STRIDES:
            for name, (cut_t, gate) in STRATEGIES.items():
                tracks, cut_frames = run(frames, fps, stride, cut_t, gate, cfg.display)
                entry["results"][f"{name} @1/{stride}"] = score(tracks, truth, cut_frames, stride)
        report["videos"][path.name] = entry
        print(f"{path.name}: {len(frames)} frames in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    for key in next(iter(report["videos"].values()))["results"]:
        rows = [v["results"][key] for v in report["videos"].values()]
        report["totals"][key] = {k: sum(r[k] or 0 for r in rows)
                                 for k in ("tracks", "switches", "cut_spans", "extra_tracks", "false_cuts")}
    print(f"{'strategy':<22} {'switches':>8} {'cut spans':>9} {'extra tracks':>12} {'false cuts':>10} {'tracks':>6}")
    for key, t in report["totals"].items():
        print(f"{key:<22} {t['switches']:>8} {t['cut_spans']:>9} {t['extra_tracks']:>12} {t['false_cuts']:>10} {t['tracks']:>6}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
