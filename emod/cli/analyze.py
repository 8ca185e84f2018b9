"""``emod analyze PATH... [--json] [--model NAME] [--summary] [--annotate DIR]``: offline analysis
of images and videos through the daemon's own detection and classification path
(:class:`emod.pipeline.FacePipeline`).

Per face: the box, the detection score, the label and the probabilities in :data:`emod.labels.LABELS`
order; ``--json`` also gives each frame's detector, ``detect_ms`` and ``classify_ms``.
Videos are analysed frame by frame (``--every N`` to sample).

``--summary`` prints, per file, one line (or JSON object) per face track instead: its frames,
time span (video seconds) and time share per smoothed label, through the daemon's own tracker
and smoother (:func:`emod.vision.emotions.from_config`, ``[display]`` settings).
``--annotate DIR`` writes every analysed frame with the daemon's overlay (tracks, smoothed
labels, probability bars) as ``DIR/NAME.jpg`` (images) or ``DIR/NAME_FRAME.jpg`` (videos).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emod import config
from emod.labels import LABELS

from emod.sources.base import SourceError
from emod.sources.folder import IMAGE_SUFFIXES
from emod.sources.video import VideoSource


def build_pipeline(cfg: config.Config, model: str):
    from emod.models.classifier import load
    from emod.pipeline import FacePipeline

    c = cfg.infer
    return FacePipeline.from_config(c, load(model, c.threads, cfg.daemon.state_dir or None))


def _frames(path: Path, every: int, fps: list | None = None):
    """(index, BGR frame) of an image or a video; appends the video's frame rate (or None) to FPS."""
    import cv2

    if path.suffix.lower() in IMAGE_SUFFIXES:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot decode image {path}")
        yield 0, img
        return
    i = 0
    with VideoSource(str(path)) as video:  # the capture stage's own reader
        if fps is not None:
            fps.append(getattr(video, "fps", None))
        while (frame := video.read()) is not None:
            if i % every == 0:
                yield i, frame
            i += 1
    if i == 0:
        raise ValueError(f"no frames decoded from {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emod analyze", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, help="images or videos")
    p.add_argument("--model", default=None, help="model name or directory (default: the config's infer.model)")
    p.add_argument("--config", help="TOML config (detector settings)")
    p.add_argument("--json", action="store_true", help="print JSON lines, one per frame")
    p.add_argument("--every", type=int, default=1, help="analyse every Nth video frame")
    p.add_argument("--summary", action="store_true", help="per face track: frames, time span and time share per label")
    p.add_argument("--annotate", type=Path, metavar="DIR", help="write each analysed frame with the overlay into DIR")
    args = p.parse_args(argv)
    if args.annotate is not None:
        try:
            args.annotate.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"emod analyze: --annotate {args.annotate}: {e.strerror or e}", file=sys.stderr)
            return 2
    try:
        cfg = config.load(args.config)
    except config.ConfigError as e:
        print(f"emod analyze: config error: {e}", file=sys.stderr)
        return config.EXIT_CONFIG
    from emod.models.registry import ModelError

    try:
        pipe = build_pipeline(cfg, args.model or cfg.infer.model)
    except ModelError as e:
        print(f"emod analyze: {e}", file=sys.stderr)
        return 2
    status = 0
    for path in args.paths:
        if not path.exists():
            print(f"emod analyze: {path}: no such file", file=sys.stderr)
            status = 2
            continue
        try:
            if args.summary or args.annotate is not None:
                _track_file(path, pipe, cfg, args)
                continue
            for idx, frame in _frames(path, max(1, args.every)):
                faces, dms, cms = pipe.process(frame)
                if args.json:
                    print(json.dumps({"path": str(path), "frame": idx, "model": pipe.classifier.name,
                                      "detector": pipe.detector.name, "detect_ms": round(dms, 3), "classify_ms": round(cms, 3),
                                      "faces": [f.as_dict() for f in faces]}))
                else:
                    where = f"{path}" + (f"#{idx}" if path.suffix.lower() not in IMAGE_SUFFIXES else "")
                    if not faces:
                        print(f"{where}: no face")
                    for f in faces:
                        top = sorted(zip(LABELS, f.probs), key=lambda t: -t[1])[:3]
                        print(f"{where}: box {f.box} score {f.score:.2f} {f.label} ({', '.join(f'{l} {p:.2f}' for l, p in top)})")
        except (ValueError, SourceError) as e:
            print(f"emod analyze: {e}", file=sys.stderr)
            status = 2
        except OSError as e:  # --annotate could not write
            print(f"emod analyze: {e}", file=sys.stderr)
            return 1
    return status


def _track_file(path: Path, pipe, cfg: config.Config, args) -> None:
    """--summary / --annotate for one file: every analysed frame through the daemon's tracker and smoother."""
    from emod.vision.emotions import from_config

    stream = from_config(cfg.display)
    stream.keep_ended = True
    fps: list = []
    frames, last_t = 0, 0.0
    image = path.suffix.lower() in IMAGE_SUFFIXES
    for idx, frame in _frames(path, max(1, args.every), fps):
        faces, dms, cms = pipe.process(frame)
        rate = fps[0] if fps and fps[0] else 30.0  # video time in seconds; 30 fps when the file does not say
        last_t = idx / rate
        stream.update([(f.box, f.probs) for f in faces], last_t, last_t, idx, pipe.classifier.name)
        frames += 1
        if args.annotate is not None:
            _write_annotated(args.annotate, path, idx, image, frame, stream.visible,
                             {"fps": None, "infer_ms": dms + cms, "model": pipe.classifier.name, "watts": None})
    tracks = [{k: v for k, v in t.items() if k not in ("start", "end")} | {"start_s": t["start"], "end_s": t["end"]}
              for t in sorted(stream.ended_so_far + stream.finish(), key=lambda t: t["track"])]
    if not args.summary:
        return
    if args.json:
        print(json.dumps({"path": str(path), "model": pipe.classifier.name, "frames": frames, "fps": fps[0] if fps else None,
                          "duration_s": round(last_t, 3), "tracks": tracks}, allow_nan=False))
        return
    if not tracks:
        print(f"{path}: no face in {frames} frames")
    from emod.launcher.emotion_tally import format_shares

    for t in tracks:
        shares = format_shares(t["shares"], None).split(" (")[0]
        print(f"{path}: track {t['track']}  {t['start_s']:.2f}-{t['end_s']:.2f} s  {t['frames']} frames  {shares}")


def _write_annotated(out: Path, path: Path, idx: int, image: bool, frame, tracks, info: dict) -> None:
    import cv2

    from emod.vision import overlay

    canvas = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    overlay.draw(canvas, tracks, info)
    name = out / (f"{path.stem}.jpg" if image else f"{path.stem}_{idx:06d}.jpg")
    if not cv2.imwrite(str(name), canvas):
        raise OSError(f"cannot write {name}")


if __name__ == "__main__":
    sys.exit(main())
