"""``emod analyze PATH... [--json] [--model NAME]``: offline analysis of images and videos
through the daemon's own detection and classification path (:class:`emod.pipeline.FacePipeline`).

Per face: the box, the label and the probabilities in :data:`emod.labels.LABELS` order.
Videos are analysed frame by frame (``--every N`` to sample).
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
    from emod.vision import detect

    c = cfg.infer
    detector = detect.from_config(c)
    return FacePipeline(detector, load(model, c.threads, cfg.daemon.state_dir or None), c.margin)


def _frames(path: Path, every: int):
    import cv2

    if path.suffix.lower() in IMAGE_SUFFIXES:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot decode image {path}")
        yield 0, img
        return
    i = 0
    with VideoSource(str(path)) as video:  # the capture stage's own reader
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
    args = p.parse_args(argv)
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
            for idx, frame in _frames(path, max(1, args.every)):
                faces, dms, cms = pipe.process(frame)
                if args.json:
                    print(json.dumps({"path": str(path), "frame": idx, "model": pipe.classifier.name,
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
    return status


if __name__ == "__main__":
    sys.exit(main())
