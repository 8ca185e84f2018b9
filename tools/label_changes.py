#!/usr/bin/env python3
"""How often labels change per face track: raw top labels against the smoothed labels the daemon publishes.

Each video is decoded by the capture stage's own reader, every frame goes through the daemon's detector,
classifier, tracker and smoother (``[infer]`` and ``[display]`` defaults, or ``--config``), and per track
it counts the frames where the raw top label differs from the track's previous frame (``raw``) and where
the smoothed label changes (the ``changed`` flag of an ``emotions`` message, ``smoothed``). Rates are per
track-minute: the changes over the summed track lifetimes (video time), so a clip with two faces counts
both. A smoother that follows its input adds nothing; one that never changes hides real changes: the
rates are read side by side, per model.

    python tools/label_changes.py --models quant full --json docs/reports/label-changes.json
    python tools/label_changes.py --models quant --videos ../shared/media/video/short_hamilton_clip.mp4

Writes the JSON report named by ``--json`` (and says so); exit 0, or 2 for a model or video that cannot be
opened (named on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emod.cli.argtypes import plain  # noqa: E402

DEFAULT_VIDEOS = sorted((REPO.parent / "shared" / "media" / "video").glob("*.mp4"))


def count_changes(frames, pipe, stream) -> dict:
    """Run FRAMES (iterable of (media time s, BGR frame)) through PIPE and STREAM; returns
    ``{"frames", "tracks", "track_minutes", "raw_changes", "smoothed_changes"}`` (plus the per-minute rates)."""
    last_raw: dict[int, str] = {}
    raw = smoothed = frames_n = 0
    seconds: dict[int, float] = {}
    for t, frame in frames:
        faces, _, _ = pipe.process(frame)
        msg = stream.update([(f.box, f.probs) for f in faces], t, t, frames_n, pipe.classifier.name, frame=frame)
        frames_n += 1
        for face in msg["faces"]:
            tid = face["track"]
            if tid in last_raw and face["raw_label"] != last_raw[tid]:
                raw += 1
            last_raw[tid] = face["raw_label"]
            smoothed += bool(face["changed"])
            seconds[tid] = face["age_s"]
    minutes = sum(seconds.values()) / 60.0
    per_min = lambda n: round(n / minutes, 2) if minutes > 0 else None  # noqa: E731
    return {"frames": frames_n, "tracks": len(seconds), "track_minutes": round(minutes, 4), "raw_changes": raw,
            "smoothed_changes": smoothed, "raw_per_track_minute": per_min(raw), "smoothed_per_track_minute": per_min(smoothed)}


def video_frames(path: Path):
    """(media time s, BGR frame) of every frame of PATH, by the capture stage's reader (30 fps when untagged)."""
    from emod.sources.video import VideoSource

    with VideoSource(path) as video:
        i = 0
        while (frame := video.read()) is not None:
            t = video.t_media if video.t_media is not None else i / (video.fps or 30.0)
            yield float(t), frame
            i += 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["quant"], help="registry model names or model directories (default: quant)")
    p.add_argument("--videos", nargs="+", type=Path, default=DEFAULT_VIDEOS, help="video files (default: the shared videos)")
    p.add_argument("--config", type=Path, default=None, help="an emod.toml whose [infer] and [display] to use")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    args = p.parse_args(argv)

    from emod import config
    from emod.cli.analyze import build_pipeline
    from emod.models.registry import ModelError
    from emod.vision.emotions import from_config

    cfg = config.load(args.config, env={})
    report: dict = {"config": str(args.config) if args.config else "defaults",
                    "smoothing": {k: getattr(cfg.display, k) for k in ("smoothing", "hysteresis_frames", "vote_window")
                                  if hasattr(cfg.display, k)}, "models": {}}
    for name in args.models:
        try:
            pipe = build_pipeline(cfg, name)
        except ModelError as e:
            print(f"label_changes: {e}", file=sys.stderr)
            return 2
        per_video = {}
        for video in args.videos:
            t0 = time.perf_counter()
            try:
                r = count_changes(video_frames(video), pipe, from_config(cfg.display))
            except (OSError, ValueError) as e:
                print(f"label_changes: {video}: {e}", file=sys.stderr)
                return 2
            r["seconds"] = round(time.perf_counter() - t0, 1)
            per_video[video.name] = r
            print(f"{name:>8}  {video.name:<42} tracks {r['tracks']:>3}  track-min {r['track_minutes']:6.2f}  "
                  f"raw {r['raw_per_track_minute']}/min  smoothed {r['smoothed_per_track_minute']}/min", flush=True)
        report["models"][name] = per_video
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
