#!/usr/bin/env python3
"""Face detection recall against face size, and detection time, at each ``detect_width``: what the defaults miss.

    python tools/face_size_report.py [--widths 320 400 640] [--frame 1280x720] [--json docs/reports/face-size.json]
                                     [--media ../shared/media] [--fer ../shared/data/fer2013]

Through the daemon's own detector (``emod.vision.detect.from_config`` on the ``[infer]``
defaults, ``detect_width`` and ``max_faces`` changed), four measurements:

- ``grid`` (and ``grid_min_face_0``, without the ``min_face`` floor: the detector's own limit): real faces from the shared photos (each cut with its surroundings, one face
  height of context on every side) and FER2013 test faces (the labelled clip's look: the
  48x48 face, upscaled, on mid-grey) scaled to face heights of 16..128 px and laid out in a
  grid on a FRAME-sized mid-grey picture; recall = faces found / faces placed, per face height
  (frame pixels, and the detector's pixels after the whole-factor shrink). A detection is a
  match when its centre is inside a placed face's box and its height is 0.5..2 times it.
- ``example``: issue 29's 4x3 grid of ``obama_small.jpg`` in 1280x720: faces found and faces
  classified (``max_faces``).
- ``media``: faces found on every frame of the shared videos and photos at each width
  (no ground truth: a face found at a wider width and not at a narrower one is a miss).
- ``time``: the fastest of 15 ``detect`` calls per frame at each width on FRAME-sized and 640x480
  frames, and of the classifier for 1, 8 and 16 faces, on this machine (the fastest: the run least
  disturbed by other work on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from emod.cli.argtypes import plain  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEIGHTS = (16, 20, 24, 28, 32, 40, 48, 64, 96, 128)
GREY = 128


def detector(width: int, max_faces: int = 100, min_face: float | None = None):
    """The daemon's detector with the ``[infer]`` defaults but WIDTH, MAX_FACES and MIN_FACE (None: the default)."""
    from emod import config
    from emod.vision import detect

    c = config.Config().infer
    c.detect_width, c.max_faces = width, max_faces
    if min_face is not None:
        c.min_face = min_face
    return detect.from_config(c)


def photo_tiles(media: Path) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Each face of the shared photos (found at full resolution) with one face height of context around it:
    ``(tile, face box in the tile)``."""
    det = detector(4096)
    tiles = []
    for p in sorted((media / "photos").glob("*.jpg")):
        img = cv2.imread(str(p))
        for d in det.detect(img):
            x, y, w, h = d.box
            if h < 60:  # too small to scale up as a real face
                continue
            x0, y0 = max(0, x - h), max(0, y - h)
            x1, y1 = min(img.shape[1], x + w + h), min(img.shape[0], y + 2 * h)
            tiles.append((img[y0:y1, x0:x1], (x - x0, y - y0, w, h)))
    return tiles


def fer_tiles(fer: Path, n: int = 24) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """FER2013 test faces as the labelled clip shows them: the 48x48 image on mid-grey, half its size around it."""
    files = []
    for label_dir in sorted((fer / "test").iterdir()) if (fer / "test").is_dir() else []:
        files += sorted(label_dir.iterdir())[: max(1, n // 7)]
    tiles = []
    for f in files[:n]:
        face = cv2.imread(str(f))
        tile = np.full((96, 96, 3), GREY, np.uint8)
        tile[24:72, 24:72] = face
        tiles.append((tile, (24, 24, 48, 48)))
    return tiles


def grid_frame(tiles, face_h: int, size: tuple[int, int]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """TILES scaled to faces FACE_H px high, laid out row by row on a SIZE (w, h) mid-grey frame (as many as fit)."""
    W, H = size
    frame = np.full((H, W, 3), GREY, np.uint8)
    boxes, x, y, row_h = [], 0, 0, 0
    for tile, (fx, fy, fw, fh) in tiles:
        s = face_h / fh
        t = cv2.resize(tile, (max(1, round(tile.shape[1] * s)), max(1, round(tile.shape[0] * s))), interpolation=cv2.INTER_AREA)
        if x + t.shape[1] > W:
            x, y, row_h = 0, y + row_h, 0
        if y + t.shape[0] > H:
            break
        frame[y : y + t.shape[0], x : x + t.shape[1]] = t
        boxes.append((x + round(fx * s), y + round(fy * s), round(fw * s), round(fh * s)))
        x, row_h = x + t.shape[1], max(row_h, t.shape[0])
    return frame, boxes


def recall(found, placed) -> int:
    """How many PLACED boxes one detection of FOUND matches (centre inside, height 0.5..2x; one each)."""
    used, hit = set(), 0
    for bx, by, bw, bh in placed:
        for i, d in enumerate(found):
            x, y, w, h = d.box
            cx, cy = x + w / 2, y + h / 2
            if i not in used and bx <= cx <= bx + bw and by <= cy <= by + bh and 0.5 <= h / bh <= 2.0:
                used.add(i)
                hit += 1
                break
    return hit


def measure_grid(tiles_by_kind: dict, widths, size, min_face: float | None = None) -> dict:
    out = {}
    for kind, tiles in tiles_by_kind.items():
        rows = []
        for face_h in HEIGHTS:
            per_width = {}
            for w in widths:
                det = detector(w, min_face=min_face)
                placed = found = i = 0
                while i < len(tiles):  # as many frames as it takes to place every face once
                    frame, boxes = grid_frame(tiles[i:], face_h, size)
                    if not boxes:
                        break
                    placed += len(boxes)
                    found += recall(det.detect(frame), boxes)
                    i += len(boxes)
                factor = max(1, size[0] // w)
                per_width[str(w)] = {"recall": round(found / placed, 3) if placed else None, "faces": placed,
                                     "detector_px": round(face_h / factor, 1)}
            rows.append({"face_px": face_h, "widths": per_width})
        out[kind] = rows
    return out


def measure_example(media: Path, widths) -> dict:
    from emod import config
    from emod.models.classifier import load
    from emod.pipeline import FacePipeline

    tile = cv2.imread(str(media / "photos" / "obama_small.jpg"))
    frame = np.vstack([np.hstack([tile] * 4)] * 3)  # 1280 x 720, 12 faces
    out = {}
    classifier = load("quant")
    for w in widths:
        c = config.Config().infer
        c.detect_width = w
        pipe = FacePipeline.from_config(c, classifier)
        faces, _, _ = pipe.process(frame)
        out[str(w)] = {"found": len(faces) + pipe.faces_dropped, "classified": len(faces), "max_faces": c.max_faces}
    return out


def measure_media(media: Path, widths) -> dict:
    from emod.sources.video import VideoSource

    frames: dict[str, list[np.ndarray]] = {}
    for p in sorted((media / "video").glob("*.mp4")):
        with VideoSource(str(p)) as v:
            fs, i = [], 0
            while (f := v.read()) is not None:
                if i % 3 == 0:
                    fs.append(f)
                i += 1
            frames[p.name] = fs
    for p in sorted((media / "photos").glob("*.jpg")):
        frames[p.name] = [cv2.imread(str(p))]
    out = {}
    for name, fs in frames.items():
        out[name] = {"frames": len(fs), "frame_size": f"{fs[0].shape[1]}x{fs[0].shape[0]}"}
        for w in widths:
            det = detector(w)
            counts = [len(det.detect(f)) for f in fs]
            out[name][str(w)] = {"faces": sum(counts), "frames_with_a_face": sum(c > 0 for c in counts)}
    return out


def measure_time(widths, size, repeats: int = 15) -> dict:
    """Milliseconds per call, the fastest of REPEATS (see the module doc)."""
    from emod.models.classifier import load

    rng = np.random.default_rng(0)
    out = {}
    for W, H in (size, (640, 480)):
        frame = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (5, 5), 0)
        for w in widths:
            det = detector(w)
            det.detect(frame)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                det.detect(frame)
                ts.append((time.perf_counter() - t0) * 1e3)
            out[f"detect_ms_{W}x{H}_at_{w}"] = round(min(ts), 2)  # the least disturbed run (a shared machine)
    classifier = load("quant")
    crop = np.full((96, 96, 3), GREY, np.uint8)
    for n in (1, 8, 16):
        classifier.classify([crop] * n)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            classifier.classify([crop] * n)
            ts.append((time.perf_counter() - t0) * 1e3)
        out[f"classify_ms_{n}_faces"] = round(min(ts), 2)
    return out


def render(r: dict) -> str:
    widths = r["widths"]
    lines = [f"recall by face height, {r['frame']} frames (detector px in brackets)"]
    for kind, rows in [*r["grid"].items(), *((f"{k}, min_face 0", v) for k, v in r["grid_min_face_0"].items())]:
        lines.append(f"  {kind}: " + "face px | " + " | ".join(f"width {w}" for w in widths))
        for row in rows:
            cells = [f"{row['widths'][str(w)]['recall']:.2f} ({row['widths'][str(w)]['detector_px']:g})" for w in widths]
            lines.append(f"    {row['face_px']:>4} | " + " | ".join(cells))
    lines.append("4x3 grid of obama_small.jpg, 1280x720: " + ", ".join(
        f"width {w}: {v['found']} found, {v['classified']} classified" for w, v in r["example"].items()))
    lines.append("shared media, faces found (frames with a face): ")
    for name, v in r["media"].items():
        lines.append(f"  {name} ({v['frame_size']}, {v['frames']} frames): " + ", ".join(
            f"{w}: {v[str(w)]['faces']} ({v[str(w)]['frames_with_a_face']})" for w in widths))
    lines.append("time on " + r["machine"] + ": " + ", ".join(f"{k} {v}" for k, v in r["time"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=int, nargs="+", default=[320, 400, 640], help="detect widths (1280 px frames: "
                   "shrunk 4, 3 and 2 times)")
    p.add_argument("--frame", default="1280x720", help="WIDTHxHEIGHT of the grid frames (default 1280x720)")
    p.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    p.add_argument("--fer", type=Path, default=REPO.parent / "shared" / "data" / "fer2013")
    p.add_argument("--json", type=Path, help="write the report here (docs/reports/face-size.json)")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.frame.lower().split("x"))
    tiles = {"photos": photo_tiles(args.media)}
    if (fer := fer_tiles(args.fer)):
        tiles["fer"] = fer
    r = {"frame": args.frame, "widths": args.widths, "machine": f"{platform.machine()} ({platform.processor() or 'cpu'})",
         "match_rule": "detection centre inside the placed face box, height 0.5..2 x",
         "grid": measure_grid(tiles, args.widths, size), "grid_min_face_0": measure_grid(tiles, args.widths, size, 0.0),
         "example": measure_example(args.media, args.widths),
         "media": measure_media(args.media, args.widths), "time": measure_time(args.widths, size)}
    print(render(r))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
