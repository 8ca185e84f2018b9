#!/usr/bin/env python3
"""Face detectors on the shared real media, through ``emod analyze --json``: the figures of docs/detectors.md.

    python tools/detect_report.py [--detectors yunet haar] [--config FILE] [--media ../shared/media]
                                  [--model quant] [--json docs/reports/detect-media.json] [--annotate DIR]

For each detector, one ``emod analyze --json`` run (the product's own command, with
``EMOD_INFER_DETECTOR`` set and ``--config FILE`` passed when given) over every video in
``MEDIA/video`` and every photo in ``MEDIA/photos``. Per video: frames, how many frames hold
0, 1, 2... faces, frames with exactly the number of people the clip shows (:data:`PEOPLE`),
frames with at least one face, and the median / p95 detection time per frame (reports key
videos and photos by file stem). Per photo: the
boxes, their scores and labels. ``--annotate DIR`` draws every photo's boxes into DIR (one
PNG per detector) for counting by eye; the photos are test fixtures, so keep DIR outside the
repository.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT_MEDIA = REPO.parent / "shared" / "media"
PEOPLE = {"head-pose-face-detection-male": 1, "face-demographics-walking-and-pause": 3}  # people in view, every frame
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def analyze(paths: list[Path], detector: str, model: str, config: str | None) -> list[dict]:
    """One record per analysed frame (``path``, ``faces``, ``detect_ms``...) from ``emod analyze --json --model MODEL
    PATHS`` with the given detector; raises on failure."""
    env = dict(os.environ, EMOD_INFER_DETECTOR=detector)
    cmd = [str(BIN / "emod"), "analyze", "--json", "--model", model, *(["--config", config] if config else []), *map(str, paths)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    out = []
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        # one object per input with a "frames" list (older emod: one object per frame)
        for fr in obj.get("frames", [obj]):
            out.append(dict(fr, path=obj["path"]))
    return out


def summarise_video(name: str, lines: list[dict]) -> dict:
    counts = [len(x["faces"]) for x in lines]
    ms = [x["detect_ms"] for x in lines]
    out = {"frames": len(lines), "faces_per_frame": {str(k): v for k, v in sorted(collections.Counter(counts).items())},
           "frames_with_a_face": sum(c >= 1 for c in counts), "frames_with_2_or_more": sum(c >= 2 for c in counts),
           "detect_ms_p50": round(float(np.percentile(ms, 50)), 2), "detect_ms_p95": round(float(np.percentile(ms, 95)), 2)}
    if name in PEOPLE:
        out["people"] = PEOPLE[name]
        out["frames_with_exactly_the_people"] = sum(c == PEOPLE[name] for c in counts)
    return out


def annotate(photos: list[Path], lines: list[dict], out: Path) -> None:
    """One PNG: every photo at 480 px height with its boxes, scores and labels drawn on, side by side in rows."""
    import cv2

    tiles = []
    for p in photos:
        img = cv2.imread(str(p))
        faces = next(x["faces"] for x in lines if x["path"] == str(p))
        for i, f in enumerate(faces):
            x, y, w, h = f["box"]
            t = max(2, img.shape[0] // 200)
            cv2.rectangle(img, (x, y), (x + w, y + h), (0, 255, 0), t)
            cv2.putText(img, f"{i + 1}: {f['label']} {f['score']:.2f}", (x, max(20, y - 8)), cv2.FONT_HERSHEY_SIMPLEX,
                        img.shape[0] / 700, (0, 255, 0), t)
        tiles.append(cv2.resize(img, (round(img.shape[1] * 480 / img.shape[0]), 480), interpolation=cv2.INTER_AREA))
    rows, row, width = [], [], 0
    for t in tiles:
        if row and width + t.shape[1] > 2000:
            rows.append(row)
            row, width = [], 0
        row.append(t)
        width += t.shape[1]
    rows.append(row)
    W = max(sum(t.shape[1] for t in r) for r in rows)
    canvas = np.full((480 * len(rows), W, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        x = 0
        for t in r:
            canvas[i * 480 : (i + 1) * 480, x : x + t.shape[1]] = t
            x += t.shape[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), canvas)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from emod.cli.argtypes import plain

    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detectors", nargs="+", default=["yunet", "haar"], choices=["yunet", "haar"])
    p.add_argument("--config", help="emod TOML config for every run (other [infer] settings)")
    p.add_argument("--media", type=Path, default=DEFAULT_MEDIA, help="folder with video/ and photos/ (default ../shared/media)")
    p.add_argument("--model", default="quant")
    p.add_argument("--json", type=Path, help="write the report here (e.g. docs/reports/detect-media.json)")
    p.add_argument("--annotate", type=Path, metavar="DIR", help="draw the photos' boxes into DIR/photos-DETECTOR.png")
    args = p.parse_args(argv)
    videos = sorted(q for q in (args.media / "video").glob("*") if q.suffix.lower() in VIDEO_SUFFIXES)
    photos = sorted(q for q in (args.media / "photos").glob("*") if q.suffix.lower() in PHOTO_SUFFIXES)
    if not videos and not photos:
        print(f"detect_report: no videos or photos under {args.media}", file=sys.stderr)
        return 2
    report = {"command": "tools/detect_report.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "via": "emod analyze --json (EMOD_INFER_DETECTOR set per detector)", "model": args.model,
              "config": args.config, "detectors": {}}
    for det in args.detectors:
        t0 = time.perf_counter()
        try:
            lines = analyze(videos + photos, det, args.model, args.config)
        except RuntimeError as e:
            print(f"detect_report: {e}", file=sys.stderr)
            return 1
        by_path = collections.defaultdict(list)
        for x in lines:
            by_path[x["path"]].append(x)
        vids = {v.stem: summarise_video(v.stem, by_path[str(v)]) for v in videos}  # stems: report keys hold no dots
        phs = {q.stem: [{"box": f["box"], "score": f["score"], "label": f["label"]} for f in by_path[str(q)][0]["faces"]]
               for q in photos}
        report["detectors"][det] = {"videos": vids, "photos": phs, "photo_boxes": sum(len(v) for v in phs.values()),
                                    "seconds": round(time.perf_counter() - t0, 1)}
        if args.annotate and photos:
            annotate(photos, lines, args.annotate / f"photos-{det}.png")
        print(f"{det}:")
        for name, v in vids.items():
            extra = f", exactly {v['people']}: {v['frames_with_exactly_the_people']}" if "people" in v else ""
            print(f"  {name}: {v['frames']} frames, faces per frame {v['faces_per_frame']}, with a face "
                  f"{v['frames_with_a_face']}{extra}; detect p50 {v['detect_ms_p50']} ms")
        print(f"  photos: {report['detectors'][det]['photo_boxes']} boxes "
              + ", ".join(f"{k} {len(v)}" for k, v in phs.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
