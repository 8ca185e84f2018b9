"""``emod analyze PATH... [--json] [--model NAME] [--summary] [--annotate DIR]``: offline analysis
of images and videos through the daemon's own detection and classification path.

Per face: the box, the detection score, the label and each label's probability; ``--json``
also gives each frame's detector, ``detect_ms`` and ``classify_ms``.

``--summary`` prints, per file, one line (or JSON object) per face track instead: its frames,
time span (video seconds) and time share per smoothed label, through the daemon's own tracker
and smoother (with the config's ``[display]`` settings).
``--annotate DIR`` writes every analysed frame with the daemon's overlay (tracks, smoothed
labels, probability bars) as ``DIR/NAME.jpg`` (images) or ``DIR/NAME_FRAME.jpg`` (videos), NAME
made unique in the run (``x``, ``x-2``...) when inputs share a name; alone, it prints per file
how many frames it wrote and under which name.

A folder is analysed file by file (recursively, links followed but never in a loop). Each
file's format comes from its content, not its name: images give
one frame, videos and GIF animations every frame (``--every N`` to sample), each with its
media time in seconds; a phone video's rotation (its display matrix) is applied. Found in a
folder, a file that is neither an image nor a video FFmpeg can open (a text file, a
playlist) and special files (named pipes, sockets, devices) are skipped with the reason;
named on the command line, they are errors.

``--crops`` takes each image (or video frame) as one face: no detection, the whole picture is
classified (researchers' face crops, such as FER2013's 48x48 images). Without it, an image under
96 px a side that gives no face gets a ``hint`` naming ``--crops``: the detector misses many faces
that fill so small a picture.

``--json`` prints one JSON object per input: ``path``, ``format``, ``model``, ``frames``
(``index``, ``time``, ``faces``, ``faces_dropped``), ``rotation`` where a video's frames were
turned for display, plus ``error`` where it failed, ``warning`` where the input looks truncated,
``hint`` (see ``--crops``), or ``skipped`` (with the reason) for a file met in a folder that is not
an image or video. An empty folder is an error (nothing to analyse).
Exit 0 when every input was read, 2 otherwise
(see ``emod --help``); a closed pipe (``| head``) ends it quietly with 0. Text output escapes
what the terminal's encoding cannot show (``PYTHONIOENCODING=ascii``: ``\\xe9``), never fails on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from emod import config, protocol
from emod.cli.argtypes import plain, positive_int
from emod.cli.pipe import reader_gone, safe_stdio
from emod.labels import LABELS
from emod.sources.base import NotMedia, SourceError
from emod.sources.media import VIDEO_FORMATS, MediaFile

SMALL_FRAME_PX = 96  # FER2013 test crops found alone: 72 % at 48 px, 88 % at 64, 97 % at 96 (210 crops, YuNet)


def build_pipeline(cfg: config.Config, model: str):
    from emod.models.classifier import load
    from emod.pipeline import FacePipeline

    c = cfg.infer
    return FacePipeline.from_config(c, load(model, c.threads, cfg.daemon.state_dir or None))


def analyze_file(pipe, path, every: int = 1, crops: bool = False):
    """One input: ``(MediaFile, [(index, time_s, faces, faces_dropped, detect_ms, classify_ms)])``.

    CROPS: each frame is taken as one face (no detection). Raises SourceError when the file is unreadable.
    """
    media = MediaFile(path)
    frames = []
    for i, t, frame in media.frames(every):
        faces, dms, cms = pipe.classify_whole(frame) if crops else pipe.process(frame)
        frames.append((i, t, faces, 0 if crops else pipe.faces_dropped, dms, cms))
    return media, frames


def small_hint(frame_shape, faces) -> str | None:
    """A hint for an image that gave no face and is under :data:`SMALL_FRAME_PX` a side (most likely a face crop), else None."""
    h, w = frame_shape[:2]
    if faces or min(h, w) >= SMALL_FRAME_PX:
        return None
    return (f"no face found in a {w}x{h} image: the detector misses many faces that fill an image under "
            f"{SMALL_FRAME_PX} px a side; if each image is one face crop, use --crops")


def _print_text(name: str, media: MediaFile, frames, hint: str | None) -> None:
    video = media.format in VIDEO_FORMATS
    for idx, t, faces, dropped, _, _ in frames:
        where = f"{name}#{idx}" + (f" ({t:.3f} s)" if t is not None else "") if video else name
        if not faces:
            print(f"{where}: no face")
        for f in faces:
            top = sorted(zip(LABELS, f.probs), key=lambda t: -t[1])[:3]
            score = f" score {f.score:.2f}" if f.score is not None else ""
            print(f"{where}: box {f.box}{score} {f.label} ({', '.join(f'{l} {p:.2f}' for l, p in top)})")
        if dropped:
            print(f"{where}: {dropped} more face(s) not classified (infer.max_faces)")
    if media.rotation:
        print(f"{name}: frames turned for display ({media.rotation}, the file's rotation)")
    if hint:
        print(f"emod analyze: {name}: hint: {hint}", file=sys.stderr)
    if media.warning:
        print(f"emod analyze: {name}: warning: {media.warning}", file=sys.stderr)


def run(args) -> int:
    try:
        cfg = config.load(args.config)
    except config.ConfigError as e:
        print(f"emod analyze: config error: {e}", file=sys.stderr)
        return config.EXIT_CONFIG
    from emod.models.registry import ModelError
    from emod.sources.files import walk

    try:
        pipe = build_pipeline(cfg, args.model or cfg.infer.model)
    except ModelError as e:
        print(f"emod analyze: {e}", file=sys.stderr)
        return protocol.EXIT_USAGE
    status = protocol.EXIT_OK
    paths = [os.fsencode(p) for p in args.paths]  # bytes: any file name, UTF-8 or not
    try:
        for top in paths:
            status = max(status, _run_one(top, walk([top]), pipe, cfg, args))
    except _AnnotateError as e:  # --annotate could not write: every later file would fail the same way
        print(f"emod analyze: {e}", file=sys.stderr)
        return protocol.EXIT_FAILURE
    return status


def _run_one(top: bytes, entries, pipe, cfg: config.Config, args) -> int:
    """Every file under one command-line PATH; returns the worst exit status it met."""
    status, seen = protocol.EXIT_OK, 0
    for entry in entries:
        seen += 1
        name = entry.name
        out: dict = {"path": name}
        try:
            if entry.skip is not None:
                raise NotMedia(entry.skip)
            if args.summary or args.annotate is not None:
                _track_file(entry.path, name, pipe, cfg, args)
                continue
            media, frames = analyze_file(pipe, entry.path, args.every, args.crops)
        except _AnnotateError:
            raise
        except BrokenPipeError:  # our reader went away, not this input: main() ends quietly
            raise
        except NotMedia as e:
            if entry.top:  # named on the command line: an error
                status = max(status, _report_error(out, name, str(e), args))
            elif args.json:  # found in a folder: skipped with the reason, not a failure
                print(json.dumps({**out, "skipped": e.reason}), flush=True)
            else:
                print(f"emod analyze: {name}: skipped: {e.reason}", file=sys.stderr)
            continue
        except (SourceError, ValueError, OSError) as e:
            status = max(status, _report_error(out, name, str(e), args))
            continue
        hint = None if args.crops or not media.is_image else small_hint(media.shape, frames[0][2])
        if args.json:
            out.update(format=media.format, model=pipe.classifier.name, labels=list(LABELS),
                       frames=[{"index": i, "time": t, "faces": [f.as_dict() for f in faces], "faces_dropped": d,
                                "detector": None if args.crops else pipe.detector.name, "detect_ms": round(dms, 3),
                                "classify_ms": round(cms, 3)}
                               for i, t, faces, d, dms, cms in frames])
            for key, value in (("rotation", media.rotation), ("warning", media.warning), ("hint", hint)):
                if value:
                    out[key] = value
            print(json.dumps(out), flush=True)
        else:
            _print_text(name, media, frames, hint)
    if not seen:  # an empty folder: nothing analysed is an answer the user should see
        status = _report_error({"path": os.fsdecode(top)}, os.fsdecode(top), "empty folder: nothing to analyse", args)
    return status


def _report_error(out: dict, name: str, msg: str, args) -> int:
    """Print one input's error (a JSON object or a line on stderr); the exit status it gives."""
    if args.json:
        print(json.dumps({**out, "error": msg}), flush=True)
    else:
        print(f"emod analyze: {name}: {msg}" if name not in msg else f"emod analyze: {msg}", file=sys.stderr)
    return protocol.EXIT_USAGE


class _AnnotateError(OSError):
    """--annotate could not write a frame."""


def _track_file(raw_path, name: str, pipe, cfg: config.Config, args) -> None:
    """--summary / --annotate for one file: every analysed frame through the daemon's tracker and smoother."""
    from emod.vision.emotions import from_config

    path = Path(name)

    stream = from_config(cfg.display)
    stream.keep_ended = True
    frames, last_t = 0, 0.0
    media = MediaFile(raw_path)
    image = media.is_image
    if args.annotate is not None:
        stem = _annotated_stem(path, args.annotated_stems)
        written = args.annotate / (f"{stem}.jpg" if image else f"{stem}_NNNNNN.jpg")
    for idx, _, frame in media.frames(args.every):
        faces, dms, cms = pipe.classify_whole(frame) if args.crops else pipe.process(frame)
        rate = media.fps or 30.0  # video time in seconds; 30 fps when the file does not say
        last_t = idx / rate
        stream.update([(f.box, f.probs) for f in faces], last_t, last_t, idx, pipe.classifier.name, frame=frame)
        frames += 1
        if args.annotate is not None:
            _write_annotated(args.annotate, stem, idx, image, frame, stream.visible,
                             {"fps": None, "infer_ms": dms + cms, "model": pipe.classifier.name, "watts": None})
    tracks = [{k: v for k, v in t.items() if k not in ("start", "end")} | {"start_s": t["start"], "end_s": t["end"]}
              for t in sorted(stream.ended_so_far + stream.finish(), key=lambda t: t["track"])]
    if not args.summary:  # --annotate alone: say what was written where
        if args.json:
            print(json.dumps({"path": str(path), "model": pipe.classifier.name, "frames": frames,
                              "annotated": str(written)}), flush=True)
        else:
            print(f"{path}: {frames} frame{'s' if frames != 1 else ''} annotated: {written}", flush=True)
        return
    if args.json:
        print(json.dumps({"path": str(path), "model": pipe.classifier.name, "frames": frames, "fps": media.fps,
                          "duration_s": round(last_t, 3), "tracks": tracks}, allow_nan=False))
        return
    if not tracks:
        print(f"{path}: no face in {frames} frame{'s' if frames != 1 else ''}")
    from emod.launcher.emotion_tally import format_shares

    for t in tracks:
        shares = format_shares(t["shares"], None).split(" (")[0]
        print(f"{path}: track {t['track']}  {t['start_s']:.2f}-{t['end_s']:.2f} s  {t['frames']} frame{'s' if t['frames'] != 1 else ''}  {shares}")


def _annotated_stem(path: Path, used: set[str]) -> str:
    """The output name of one input under --annotate: its stem, made unique in this run (x, x-2, x-3...) so that
    inputs of the same name (a/x.jpg and b/x.jpg, x.jpg and x.png) do not overwrite each other."""
    stem, k = path.stem, 2
    while stem in used:
        stem, k = f"{path.stem}-{k}", k + 1
    used.add(stem)
    return stem


def _write_annotated(out: Path, stem: str, idx: int, image: bool, frame, tracks, info: dict) -> None:
    import cv2

    from emod.vision import overlay

    canvas = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    overlay.draw(canvas, tracks, info)
    name = out / (f"{stem}.jpg" if image else f"{stem}_{idx:06d}.jpg")
    if not cv2.imwrite(str(name), canvas):
        raise _AnnotateError(f"cannot write {name}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emod analyze", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="images, videos or folders")
    p.add_argument("--model", default=None, help="model name or directory (default: the config's infer.model)")
    p.add_argument("--config", help="TOML config (detector settings)")
    p.add_argument("--json", action="store_true", help="print one JSON object per input")
    p.add_argument("--every", type=positive_int, default=1, help="analyse every Nth video frame")
    p.add_argument("--summary", action="store_true", help="per face track: frames, time span and time share per label")
    p.add_argument("--annotate", type=Path, metavar="DIR", help="write each analysed frame with the overlay into DIR")
    p.add_argument("--crops", action="store_true", help="each image (or video frame) is one face crop: no detection")
    safe_stdio()
    args = p.parse_args(argv)
    args.annotated_stems = set()  # --annotate output names taken in this run
    if args.annotate is not None:
        try:
            args.annotate.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"emod analyze: --annotate {args.annotate}: {e.strerror or e}", file=sys.stderr)
            return protocol.EXIT_USAGE
    try:
        return run(args)
    except BrokenPipeError:  # the reader went away (| head): not an error
        return reader_gone()


if __name__ == "__main__":
    sys.exit(main())
