#!/usr/bin/env python3
"""Evaluate an emotion model on FER2013's held-out test images, exactly as the daemon runs it.

The model is loaded through :func:`emod.models.classifier.load` (hash-verified, the
manifest's preprocessing, the same ONNX Runtime / PyTorch backend as ``emod run``) and
the 48x48 test faces are fed to ``classifier.classify`` as face crops, in batches.
Nothing here preprocesses images itself.

    python tools/evaluate.py --model full --split private --json runs/eval/full.json
    python tools/evaluate.py --model runs/full/export/quant --split public --limit 500
    python tools/evaluate.py --model quant --split private --json runs/eval/quant.json --write-manifest
    python tools/evaluate.py --model quant --split private --agree-with full --json docs/reports/eval-quant.json

Labels: ``--labels fer2013`` (default) scores against the FER2013 folder labels;
``--labels ferplus`` against the FER+ crowd-vote majority (``<data>/ferplus/votes.csv``):
accuracy, per-class figures and the confusion matrix are then over the images whose
majority is one of our 7 labels (``n`` in the report), and the report adds the mean
cross-entropy against the vote distribution and the accuracy on Barsoum et al.'s test subset
(``accuracy_clear_majority``, ``n_clear_majority``: single votes dropped, a majority of more than
half; how their published figures were scored), rules in :mod:`emod.datasets.ferplus`.

Splits: ``public`` (PublicTest, the model-selection split), ``private`` (PrivateTest,
the one to report) or ``all`` (both). ``--limit N`` evaluates a fixed, seeded random
sample of N images of the split (deterministic, class mix preserved in expectation);
it is for development, and its metrics say ``limit``.

Writes (optional) a JSON report and a confusion-matrix PNG (by default beside the
JSON, ``<json stem>_confusion.png``). ``--write-manifest`` stores
``{accuracy, balanced_accuracy, recall (per class), macro_f1, n, split, labels}`` under ``metrics.<split>`` (``metrics.<split>_ferplus``
with ``--labels ferplus``) of the model's
``manifest.json``, leaving every other key, and so every file hash, untouched.
``--agree-with OTHER`` also classifies the same images with model OTHER and reports
``agreement.OTHER``: the fraction of images on which both give the same top label.
Exit status: 0 on success, 2 for an unusable model or data set (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emod.cli.argtypes import plain  # noqa: E402

import numpy as np

from emod.datasets import fer2013, ferplus
from emod.labels import LABELS
from emod.metrics import classification_report, confusion_matrix, plot_confusion
from emod.models import registry

SPLITS = {"public": ("public",), "private": ("private",), "all": ("public", "private")}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registry model name (e.g. full, quant) or a model directory with manifest.json")
    p.add_argument("--data", type=Path, default=None, help="FER2013 folder or fer2013.csv (default: $EMOD_FER2013 or ../shared/data/fer2013)")
    p.add_argument("--labels", choices=("fer2013", "ferplus"), default="fer2013", help="label set to score against (default: fer2013)")
    p.add_argument("--split", choices=sorted(SPLITS), default="private", help="test split to evaluate (default: private)")
    p.add_argument("--json", type=Path, default=None, help="write the full report here")
    p.add_argument("--confusion", type=Path, default=None, help="confusion-matrix PNG (default: beside --json)")
    p.add_argument("--limit", type=int, default=None, help="evaluate a fixed seeded sample of N images (development only)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads, as the daemon's --threads (default: 1)")
    p.add_argument("--batch", type=int, default=256, help="faces per classify() call (default: 256)")
    p.add_argument("--cache", type=Path, default=REPO / ".cache", help="decoded-FER2013 cache directory (default: .cache)")
    p.add_argument("--agree-with", metavar="MODEL", action="append", default=[],
                   help="also report the share of images with the same top label as MODEL (repeatable)")
    p.add_argument("--write-manifest", action="store_true", help="store the headline metrics in the model's manifest.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    if args.batch < 1:
        p.error("--batch must be >= 1")
    return args


def shown(path: Path) -> str:
    """A path for the report: relative to the checkout when inside it (the same in every clone), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(Path(path).resolve())


def say(text: str = "") -> None:
    """Print to stdout; once stdout is a closed pipe (``evaluate.py ... | head``), stay quiet and go on, so
    the report, the confusion PNG and the manifest are still written."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")


def fail(msg: str) -> int:
    print(f"evaluate: {msg}", file=sys.stderr)
    return 2


def select(data: fer2013.FerSplit, split: str, limit: int | None, seed: int = 0) -> fer2013.FerSplit:
    """The split's images; with ``limit``, a seeded random sample of them kept in file order."""
    sub = data.subset(*SPLITS[split])
    if limit is not None and limit < len(sub):
        keep = np.sort(np.random.default_rng(seed).permutation(len(sub))[:limit])
        sub = sub.select(keep)
    return sub


def predict(clf, images: np.ndarray, batch: int, progress: bool) -> np.ndarray:
    """(N, 7) probabilities per image, through ``clf.classify`` (the daemon's preprocessing and runtime)."""
    out = np.empty((len(images), len(LABELS)), np.float32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), desc=f"evaluate {clf.name}", unit="img")
    for i in range(0, len(images), batch):
        probs = clf.classify(images[i : i + batch])
        out[i : i + len(probs)] = probs
        if bar is not None:
            bar.update(len(probs))
    if bar is not None:
        bar.close()
    return out


def format_table(report: dict, title: str) -> str:
    lines = [title, f"accuracy {report['accuracy']:.4f}   balanced accuracy (mean recall) {report['balanced_accuracy']:.4f}   "
                    f"macro-F1 {report['macro_f1']:.4f}   n {report['n']}", ""]
    lines.append(f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for label, c in report["per_class"].items():
        lines.append(f"{label:<10}{c['precision']:>10.4f}{c['recall']:>10.4f}{c['f1']:>10.4f}{c['support']:>10d}")
    return "\n".join(lines)


def update_manifest_metrics(model_dir: Path, split: str, entry: dict) -> dict:
    """Set ``metrics.<split>`` in ``model_dir/manifest.json``, every other key unchanged.

    ``manifest.json`` is not among the hashed ``files``, so the hashes stay valid; the
    write goes to a temporary file and is renamed into place.
    """
    path = model_dir / registry.MANIFEST
    m = registry.read_manifest(model_dir)
    metrics = m.get("metrics") if isinstance(m.get("metrics"), dict) else {}
    metrics[split] = entry
    m["metrics"] = metrics
    tmp = model_dir / f".{registry.MANIFEST}.tmp"
    tmp.write_text(json.dumps(m, indent=2) + "\n")  # same layout as registry.write_manifest
    os.replace(tmp, path)
    return m


def main(argv=None) -> int:
    args = parse_args(argv)
    from emod.models.classifier import load

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' weight-loading bar is noise here
    try:
        clf = load(args.model, threads=args.threads)
        others = [load(name, threads=args.threads) for name in args.agree_with]
    except registry.ModelError as e:
        return fail(str(e))
    data_root = Path(args.data) if args.data is not None else fer2013.default_root()
    if not data_root.exists():
        return fail(f"no FER2013 at {data_root} (pass --data or set $EMOD_FER2013)")
    try:
        data = fer2013.load(data_root, cache_dir=args.cache, progress=not args.no_progress)
    except (OSError, ValueError) as e:
        return fail(f"cannot load FER2013 from {data_root}: {e}")
    test = select(data, args.split, args.limit)
    if len(test) == 0:
        return fail(f"split {args.split!r} of {data_root} holds no images")

    extra: dict = {}
    truth = test.labels
    if args.labels == "ferplus":
        try:
            votes = ferplus.load(data_root, test.names, strict=False).votes
        except ferplus.VoteFileError as e:
            return fail(str(e))
        truth = ferplus.majority_label(votes)
        keep = truth >= 0
        extra["n_left_out"] = int((~keep).sum())
    t0 = time.perf_counter()
    probs = predict(clf, test.images, args.batch, progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    pred = probs.argmax(axis=1)
    agreement = {}
    for other in others:  # over every image of the split, whatever the label set
        agreement[other.name] = float((predict(other, test.images, args.batch, progress=not args.no_progress).argmax(1) == pred).mean())
        say(f"same top label as {other.name}: {100 * agreement[other.name]:.1f} %")
    if args.labels == "ferplus":
        extra["cross_entropy"] = ferplus.cross_entropy(probs[keep], votes[keep])
        extra["accuracy_any_top"] = ferplus.accuracy_any_top(pred, votes)
        extra["accuracy_clear_majority"], extra["n_clear_majority"] = ferplus.accuracy_clear_majority(pred, votes)
        extra["accuracy_fer2013"] = float((pred == test.labels).mean())
        truth, pred = truth[keep], pred[keep]
    cm = confusion_matrix(truth, pred, len(LABELS))
    report = classification_report(truth, pred, LABELS)
    set_name = "FER+ majority" if args.labels == "ferplus" else "FER2013"
    title = f"{clf.name} ({clf.info.format}) on {set_name} {args.split}" + (f" [limit {args.limit}]" if args.limit else "")
    say(format_table(report, title))
    if extra:
        say(f"cross-entropy vs votes {extra['cross_entropy']:.4f}   accuracy (ties count) {extra['accuracy_any_top']:.4f}   "
            f"FER2013-label accuracy {extra['accuracy_fer2013']:.4f}   left out (majority not ours) {extra['n_left_out']}\n"
            f"clear majority (Barsoum et al.'s test subset, n = {extra['n_clear_majority']}): "
            f"accuracy {extra['accuracy_clear_majority']:.4f}")
    say(f"\n{len(test)} images in {seconds:.1f} s ({1000 * seconds / len(test):.2f} ms/img, batch {args.batch}, {args.threads} thread(s))")

    result = {
        "model": clf.name,
        "model_path": shown(clf.info.path),
        "format": clf.info.format,
        "input_size": clf.info.input_size,
        "split": args.split,
        "label_set": args.labels,
        "limit": args.limit,
        "data": shown(data_root),
        **report,
        **extra,
        "labels": list(LABELS),
        "confusion_matrix": cm.tolist(),
        "seconds": round(seconds, 3),
        "threads": args.threads,
        "batch": args.batch,
        **({"agreement": agreement} if agreement else {}),
    }
    png = args.confusion or (args.json.with_name(args.json.stem + "_confusion.png") if args.json else None)
    if png is not None:
        plot_confusion(cm, LABELS, png, title=f"{title}\nacc {report['accuracy']:.3f}, balanced acc {report['balanced_accuracy']:.3f}")
        result["confusion_png"] = str(png)
        say(f"confusion matrix: {png}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        say(f"report: {args.json}")
    if args.write_manifest:
        entry = {"accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"],
                 "recall": {k: round(c["recall"], 4) for k, c in report["per_class"].items()},
                 "support": {k: c["support"] for k, c in report["per_class"].items()},
                 "macro_f1": report["macro_f1"], "n": report["n"], "split": args.split,
                 "labels": args.labels, **({"cross_entropy": extra["cross_entropy"]} if extra else {})}
        if args.limit:
            entry["limit"] = args.limit
            print(f"evaluate: warning: writing metrics of a {args.limit}-image sample to the manifest", file=sys.stderr)
        try:
            update_manifest_metrics(clf.info.path, args.split + ("_ferplus" if args.labels == "ferplus" else ""), entry)
            registry.verify(registry.ModelInfo(clf.name, clf.info.path, registry.read_manifest(clf.info.path)))
        except (OSError, registry.ModelError) as e:
            return fail(f"cannot update {clf.info.path / registry.MANIFEST}: {e}")
        say(f"manifest: {clf.info.path / registry.MANIFEST} metrics.{args.split}{'_ferplus' if args.labels == 'ferplus' else ''} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
