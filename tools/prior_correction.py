#!/usr/bin/env python3
"""The post-hoc prior correction of a trained model, measured on PublicTest and folded into its bias.

A model scores ``log p - TAU * log(prior)`` instead of ``log p`` (Menon et al., ICLR 2021;
:mod:`emod.training.balance`): TAU > 0 takes the class prior out (more disgust and fear, less
neutral), TAU < 0 puts some back (for a model trained with a logit-adjusted loss). Because it is
exactly a shift of the final layer's bias, ``--fold TAU`` writes a model directory that serves the
corrected probabilities at no run-time cost, with no new code path in the daemon.

    python tools/prior_correction.py --model runs/balanced/model --taus -0.5 -0.25 0 0.25 0.5 --json docs/reports/prior-tau.json
    python tools/prior_correction.py --model runs/balanced/model --fold -0.25 --out runs/balanced/folded

The sweep scores PublicTest only (the selection split) against the FER+ majority, with the mirror
averaging the model is served with (``--no-tta`` for none), and picks TAU by the same rule as
``tools/train.py --select balanced``: the best balanced accuracy among the TAUs whose accuracy is within
``--within`` (default one point) of the best, or with ``--min-accuracy A`` the best balanced accuracy
among the TAUs whose accuracy reaches A. The prior is the share of each label among the FER+ votes
of the training images, the one ``tools/train.py`` prints (``--prior FILE``: a train.py ``metrics.json``
whose ``class_prior`` to use).

Exit status: 0; 2 for a model or data set that cannot be used (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emod.cli.argtypes import plain  # noqa: E402

import numpy as np  # noqa: E402

from emod.labels import LABELS  # noqa: E402


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def served_probs(logits: np.ndarray, logits_flip: np.ndarray | None, shift: np.ndarray) -> np.ndarray:
    """(N, 7) probabilities a model with ``shift`` added to its bias serves: softmax of the shifted logits,
    averaged with its mirror image's when ``logits_flip`` is given (the daemon's ``tta = "hflip"``)."""
    p = softmax(logits + shift)
    return p if logits_flip is None else 0.5 * (p + softmax(logits_flip + shift))


def sweep(logits, logits_flip, truth: np.ndarray, prior: np.ndarray, taus, within: float,
          min_accuracy: float | None = None) -> tuple[list[dict], int]:
    """Scores per TAU on images with TRUTH >= 0, and the index of the TAU the rule picks: with MIN_ACCURACY, the best
    balanced accuracy among the TAUs whose accuracy reaches it (the most accurate TAU if none does); else the
    balanced rule of :func:`emod.training.balance.select_balanced` with WITHIN."""
    from emod.metrics import classification_report
    from emod.training.balance import select_balanced

    keep = truth >= 0
    rows = []
    for tau in taus:
        pred = served_probs(logits, logits_flip, -tau * np.log(prior)).argmax(1)
        r = classification_report(truth[keep], pred[keep], LABELS)
        rows.append({"tau": float(tau), "accuracy": r["accuracy"], "balanced_accuracy": r["balanced_accuracy"],
                     "recall": {k: round(c["recall"], 4) for k, c in r["per_class"].items()}})
    if min_accuracy is not None:
        ok = [i for i, r in enumerate(rows) if r["accuracy"] >= min_accuracy]
        if not ok:
            return rows, max(range(len(rows)), key=lambda i: rows[i]["accuracy"])
        return rows, max(ok, key=lambda i: rows[i]["balanced_accuracy"])
    return rows, select_balanced(rows, within, acc_key="accuracy", bal_key="balanced_accuracy")


def fold(model_dir: Path, out: Path, prior: np.ndarray, tau: float) -> None:
    """Copy MODEL_DIR (a train.py / Hugging Face model directory) to OUT with ``-tau * log(prior)`` added to the
    classifier's bias."""
    from emod.training.balance import fold_prior
    from emod.training.build import load_dir

    model = load_dir(model_dir)
    fold_prior(model.classifier, prior, tau)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    for extra in ("preprocessor_config.json",):
        if (model_dir / extra).is_file():
            shutil.copy2(model_dir / extra, out / extra)


def train_prior(data_root: Path, cache: Path) -> np.ndarray:
    """The FER+ vote share per label over the training images (no votes for non-emotions counted)."""
    from emod.datasets import fer2013, ferplus
    from emod.training.balance import class_prior

    data = fer2013.load(data_root, cache_dir=cache)
    train = data.subset("train")
    t = ferplus.soft_targets(ferplus.load(data_root, train.names, strict=False).votes)
    return class_prior(t[t.sum(1) > 0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a model directory of tools/train.py (config.json, model.safetensors)")
    p.add_argument("--data", type=Path, default=None, help="FER2013 folder (default: $EMOD_FER2013 or ../shared/data/fer2013)")
    p.add_argument("--taus", type=float, nargs="+", default=[-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--within", type=float, default=0.01, help="accuracy margin of the selection rule (default 0.01)")
    p.add_argument("--min-accuracy", type=float, default=None,
                   help="pick the best balanced accuracy among the taus whose accuracy reaches this (instead of --within)")
    p.add_argument("--prior", type=Path, default=None, help="a train.py metrics.json whose class_prior to use")
    p.add_argument("--no-tta", action="store_true", help="score without mirror averaging")
    p.add_argument("--json", type=Path, default=None, help="write the sweep here")
    p.add_argument("--fold", type=float, default=None, metavar="TAU", help="write the model with this correction folded in")
    p.add_argument("--out", type=Path, default=None, help="with --fold: the new model directory")
    args = p.parse_args(argv)
    if (args.fold is None) != (args.out is None):
        p.error("--fold and --out go together")

    from emod.datasets import fer2013, ferplus

    data_root = args.data or fer2013.default_root()
    try:
        prior = (np.array([json.loads(args.prior.read_text())["class_prior"][k] for k in LABELS]) if args.prior
                 else train_prior(data_root, REPO / ".cache"))
    except (OSError, KeyError, ValueError, ferplus.VoteFileError) as e:
        print(f"prior_correction: cannot get the class prior: {e}", file=sys.stderr)
        return 2
    print("class prior: " + ", ".join(f"{k} {v:.3f}" for k, v in zip(LABELS, prior)))
    if args.fold is not None:
        try:
            fold(args.model, args.out, prior, args.fold)
        except (OSError, ValueError) as e:
            print(f"prior_correction: cannot fold into {args.model}: {e}", file=sys.stderr)
            return 2
        print(f"folded tau {args.fold:g} into the classifier bias: {args.out}")
        return 0

    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    from emod.models.preprocess import Preprocess
    from emod.training.build import load_dir, model_meta
    from emod.training.loop import evaluate_logits

    try:
        meta = model_meta(args.model)
        model = load_dir(args.model)
    except (OSError, ValueError) as e:
        print(f"prior_correction: {args.model}: {e}", file=sys.stderr)
        return 2
    pp = meta["emod_preprocess"]
    prep = Preprocess(meta["input_size"], pp.get("channels", 1))
    data = fer2013.load(data_root, cache_dir=REPO / ".cache")
    public = data.subset("public")
    truth = ferplus.majority_label(ferplus.load(data_root, public.names, strict=False).votes)
    x = np.stack([prep.resize(im) for im in public.images])
    dev = torch.device("cpu")
    logits = evaluate_logits(model, x, prep, dev)
    logits_flip = None if args.no_tta else evaluate_logits(model, np.ascontiguousarray(x[..., ::-1]), prep, dev)
    rows, pick = sweep(logits, logits_flip, truth, prior, args.taus, args.within, args.min_accuracy)
    print(f"{'tau':>6} {'accuracy':>9} {'balanced':>9}  " + " ".join(f"{k[:7]:>7}" for k in LABELS))
    for i, r in enumerate(rows):
        print(f"{r['tau']:>6g} {r['accuracy']:>9.4f} {r['balanced_accuracy']:>9.4f}  "
              + " ".join(f"{r['recall'][k]:>7.3f}" for k in LABELS) + ("   <- rule" if i == pick else ""))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "split": "public", "labels": "ferplus",
                                         "tta": not args.no_tta, "prior": dict(zip(LABELS, prior.round(5).tolist())),
                                         "within": args.within, "min_accuracy": args.min_accuracy,
                                         "rule": (f"best balanced accuracy among the taus whose accuracy is at least "
                                                  f"{args.min_accuracy}" if args.min_accuracy is not None else
                                                  "best balanced accuracy among the taus whose accuracy is within "
                                                  "`within` of the best"), "selected_tau": rows[pick]["tau"],
                                         "rows": rows}, indent=2) + "\n")
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
