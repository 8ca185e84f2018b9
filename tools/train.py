#!/usr/bin/env python3
"""Train MobileNetV2ForImageClassification on FER2013 (7 emotions, canonical label order).

Protocol: train on the cleaned train split (blank images, duplicates and train/test
leaks removed by decoded-pixel hash), select the epoch on PublicTest, and touch
PrivateTest once, at the end, for the report.

Labels: ``--labels fer2013`` (one labeller per image, the folder names) or
``--labels ferplus`` (the FER+ crowd votes in ``<data>/ferplus/votes.csv``; the model
learns the vote distribution over our 7 labels, and images whose majority is not one of
them are left out; rules in :mod:`emod.datasets.ferplus`). Selection and the report use
the chosen label set; the PrivateTest report gives both.

    python tools/train.py --out runs/full --epochs 40
    python tools/train.py --out runs/full --resume          # continue an interrupted run
    python tools/train.py --labels ferplus --pretrained emod/models/zoo/full --out runs/ferplus --epochs 12 --lr 1e-3

Writes OUT/model (Hugging Face directory: config.json, model.safetensors,
preprocessor_config.json), OUT/checkpoint.pt (every epoch; weights and optimiser
state only, loaded with weights_only=True), OUT/metrics.json and OUT/curves.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emod.cli.argtypes import plain  # noqa: E402

import numpy as np
import torch
import torch.nn.functional as F

from emod.datasets import fer2013, ferplus
from emod.labels import LABELS
from emod.models.preprocess import Preprocess
from emod.metrics import classification_report
from emod.training import balance
from emod.training.build import build, load_teachers
from emod.training.loop import class_weights, ema_update_fn, evaluate_logits, train_one_epoch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="FER2013 folder or fer2013.csv (default: $EMOD_FER2013 or ../shared/data/fer2013)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--labels", choices=("fer2013", "ferplus"), default="fer2013", help="training and selection labels (default: fer2013)")
    p.add_argument("--fer2013-votes", type=float, default=0.0, help="with --labels ferplus: the FER2013 label counts as this many extra votes (default 0)")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--width", type=float, default=1.0, help="MobileNetV2 depth multiplier")
    p.add_argument("--pretrained", default=None, help="local checkpoint directory or hub id to fine-tune from")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=None, help="default: 0.1 with fer2013, 0 with ferplus (votes are already soft)")
    p.add_argument("--class-weight-power", type=float, default=None, help="class weight = (1/frequency)^power; 0 disables (default: 0.5 fer2013, 0 ferplus)")
    p.add_argument("--warmup-frac", type=float, default=0.1, help="fraction of steps spent warming up the learning rate")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="mixup: train on pairs of images and targets mixed with weight ~ Beta(ALPHA, ALPHA) (0: off)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="select and save an exponential moving average of the weights and BatchNorm statistics, "
                        "updated every step with this decay, e.g. 0.999 (0: off)")
    p.add_argument("--ema-warmup", action="store_true",
                   help="with --ema: decay min(DECAY, (1 + n) / (10 + n)) after n steps, so the average forgets the "
                        "random start of a run from scratch (fine-tunes start where they mean to)")
    p.add_argument("--time-budget", type=float, default=0.0, metavar="MINUTES",
                   help="fit the schedule into this much wall time (start-up included): after the second epoch, "
                        "--epochs becomes as many as fit, never more than given; metrics.json records the number")
    p.add_argument("--teacher", action="append", default=[], metavar="DIR",
                   help="distil from this model directory (repeat for an ensemble: their probabilities averaged)")
    p.add_argument("--kd-alpha", type=float, default=0.5, help="with --teacher: weight of the distillation term (default 0.5)")
    p.add_argument("--kd-temperature", type=float, default=2.0, help="with --teacher: softmax temperature (default 2)")
    p.add_argument("--logit-adjust", type=float, default=0.0, metavar="TAU",
                   help="train on logits + TAU * log(class prior) (logit-adjusted loss; TAU 1 = balanced softmax); the model "
                        "serves the plain logits, so it learns the classes, not their prior (0: off)")
    p.add_argument("--sampler-power", type=float, default=0.0, metavar="P",
                   help="class-aware sampling: draw each epoch's images with weight (1 / count of their class) ** P "
                        "(1: every class equally often; 0: a plain shuffle)")
    p.add_argument("--select", choices=("accuracy", "balanced"), default="accuracy",
                   help="epoch selection on PublicTest: best accuracy, or best balanced accuracy (mean per-class recall) "
                        "among the epochs within --select-within of the best accuracy (default: accuracy)")
    p.add_argument("--select-within", type=float, default=0.01, help="with --select balanced: accuracy margin (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N cleaned images only (smoke tests)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


PLOT_EVERY_S = 30.0  # curves.png is redrawn after the last epoch and at most this often before it


def save_model_dir(model, prep: Preprocess, path: Path, trained_on: str = "fer2013") -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    (path / "preprocessor_config.json").write_text(
        json.dumps({"emod_preprocess": prep.as_manifest(), "input_size": prep.input_size, "labels": list(LABELS),
                    "trained_on": trained_on}, indent=2) + "\n"
    )


def fit_epochs(cap: int, seconds_left: float, epoch_seconds: float, done: int = 2, margin: float = 0.95) -> int:
    """Epochs in all (``done`` already run) that fit into ``seconds_left`` at ``epoch_seconds`` each; 3..``cap``."""
    return int(min(cap, max(done + 1, done + math.floor(margin * seconds_left / max(epoch_seconds, 1e-3)))))


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train beside PublicTest, under ``title`` (the run and its labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], marker=".", label="train loss")
    a.plot(ep, [h["public_loss"] for h in history], marker=".", label="PublicTest loss")
    a.set_xlabel("epoch"); a.set_ylabel("loss (cross-entropy)"); a.legend(); a.grid(alpha=0.3)
    b.plot(ep, [h["train_acc"] for h in history], marker=".", label="train acc (augmented)")
    b.plot(ep, [h["public_acc"] for h in history], marker=".", label="PublicTest acc")
    b.set_xlabel("epoch"); b.set_ylabel("top-1 accuracy"); b.set_ylim(0, 1); b.legend(); b.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout(); fig.savefig(path, dpi=100); plt.close(fig)


class Targets:
    """Labels for one run: hard FER2013 classes, or FER+ vote distributions (with the votes for scoring)."""

    def __init__(self, kind: str, data: fer2013.FerSplit, root: Path, fer2013_votes: float = 0.0):
        self.fer2013_votes = fer2013_votes
        self.votes = None
        if kind == "ferplus":
            self.joined = ferplus.load(root, data.names)
            self.votes = self.joined.votes

    def usable(self, mask: np.ndarray) -> np.ndarray:
        return mask if self.votes is None else mask & self.joined.usable()[0]

    def train_targets(self, sel: np.ndarray, labels: np.ndarray) -> torch.Tensor:
        if self.votes is None:
            return torch.from_numpy(labels)
        return torch.from_numpy(ferplus.soft_targets(self.votes[sel], labels, self.fer2013_votes))

    def score(self, logits: np.ndarray, sel: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
        """(loss, accuracy, balanced accuracy) of logits for the selected images under this label set."""
        lt = torch.from_numpy(logits)
        pred = logits.argmax(1)
        if self.votes is None:
            bal = classification_report(labels, pred, LABELS)["balanced_accuracy"]
            return float(F.cross_entropy(lt, torch.from_numpy(labels))), float((pred == labels).mean()), bal
        v = self.votes[sel]
        probs = torch.softmax(lt, 1).numpy()
        truth = ferplus.majority_label(v)
        keep = truth >= 0
        bal = classification_report(truth[keep], pred[keep], LABELS)["balanced_accuracy"]
        return ferplus.cross_entropy(probs, v), ferplus.accuracy(pred, v)[0], bal

    def class_labels(self, sel: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(N,) the class of each selected training image: its label, or its FER+ majority label."""
        return labels if self.votes is None else ferplus.majority_label(self.votes[sel])


def main(argv=None) -> int:
    t_start = time.time()
    args = parse_args(argv)
    if args.label_smoothing is None:
        args.label_smoothing = 0.1 if args.labels == "fer2013" else 0.0
    if args.class_weight_power is None:
        args.class_weight_power = 0.5 if args.labels == "fer2013" else 0.0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.no_progress:  # transformers' own bars (loading, "Writing model shards") too
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    teacher = None
    if args.teacher:  # checked before anything is loaded or written
        if not (0.0 <= args.kd_alpha <= 1.0 and args.kd_temperature > 0):
            print(f"error: --kd-alpha must be in [0, 1] and --kd-temperature > 0, got {args.kd_alpha} and {args.kd_temperature}",
                  file=sys.stderr)
            return 2
        try:
            teacher = load_teachers(args.teacher, args.input_size, Preprocess(args.input_size, args.channels).as_manifest())
            teacher = teacher.to(device).to(memory_format=torch.channels_last)
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"distilling from {len(args.teacher)} teacher(s): kd-alpha {args.kd_alpha:g}, temperature {args.kd_temperature:g}",
              flush=True)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    if args.resume and not ckpt_path.is_file():
        print(f"error: --resume but {ckpt_path} does not exist", file=sys.stderr)
        return 2

    data_root = Path(args.data) if args.data is not None else fer2013.default_root()
    data = fer2013.load(data_root, cache_dir=Path(".cache"), progress=not args.no_progress)
    try:
        targets = Targets(args.labels, data, data_root, args.fer2013_votes)
    except ferplus.VoteFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    train, report = fer2013.clean_training_set(data)
    name_index = {n: i for i, n in enumerate(data.names.tolist())}
    rows = lambda split: np.array([name_index[n] for n in split.names.tolist()], np.int64)  # noqa: E731
    if targets.votes is not None:  # FER+: joined by path; images whose majority is not ours are dropped (counted)
        usable, vote_report = targets.joined.usable()
        print(f"FER+ votes: {vote_report.as_dict()}", flush=True)
        train = train.select(usable[rows(train)])
    public_mask = targets.usable(data.usage == "public")
    public, private = data.select(public_mask), data.subset("private")
    if args.limit:
        pick = np.zeros(len(train), bool)
        pick[np.random.default_rng(args.seed).permutation(len(train))[: args.limit]] = True
        train = train.select(pick)
    print(f"train {len(train)} (dropped {report.as_dict()}), public {len(public)}, private {len(private)}", flush=True)

    prep = Preprocess(args.input_size, args.channels)
    xt = np.stack([prep.resize(im) for im in train.images])
    xp = np.stack([prep.resize(im) for im in public.images])
    train_rows, public_rows = rows(train), rows(public)
    yt = targets.train_targets(train_rows, train.labels)

    model = build(args.input_size, args.channels, args.width, pretrained=args.pretrained).to(device)
    model = model.to(memory_format=torch.channels_last)
    class_w = class_weights(train.labels if targets.votes is None else ferplus.majority_label(targets.votes[train_rows]),
                            args.class_weight_power)

    prior = balance.class_prior(yt.numpy())
    logit_bias = torch.tensor(args.logit_adjust * np.log(prior), dtype=torch.float32) if args.logit_adjust else None
    sample_p = balance.sample_weights(targets.class_labels(train_rows, train.labels), args.sampler_power) if args.sampler_power else None
    print("class prior of the training targets: " + ", ".join(f"{l} {p:.3f}" for l, p in zip(LABELS, prior)), flush=True)
    steps_per_epoch = math.ceil(len(xt) / args.batch_size)
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    one_cycle = lambda total: torch.optim.lr_scheduler.OneCycleLR(  # noqa: E731
        opt, max_lr=args.lr, total_steps=total, pct_start=args.warmup_frac, div_factor=20, final_div_factor=200)
    sched = one_cycle(total)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    if not 0.0 <= args.ema < 1.0:
        print(f"error: --ema must be in [0, 1), got {args.ema}", file=sys.stderr)
        return 2
    ema = (torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema_update_fn(args.ema, args.ema_warmup), use_buffers=True)
           if args.ema else None)
    served = ema.module if ema is not None else model  # what is scored, selected and saved
    start_epoch, best, history = 0, -1.0, []
    fitted = False  # --time-budget: whether the schedule was fitted yet (after the second epoch)
    if args.resume:
        st = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        if ema is not None:
            if "ema" not in st:
                print(f"error: --ema but {ckpt_path} was written without it", file=sys.stderr)
                return 2
            ema.load_state_dict(st["ema"])
        start_epoch, best = st["epoch"], st["best"]
        if st.get("epochs", args.epochs) != args.epochs:  # a --time-budget run keeps the length it was fitted to
            print(f"--resume: {st['epochs']} epochs, as the checkpoint was fitted to (not --epochs {args.epochs})", flush=True)
        args.epochs = st.get("epochs", args.epochs)
        if "epochs_asked" in st:
            args.epochs_asked = st["epochs_asked"]
        fitted = st.get("fitted", False)
        t_start -= st.get("seconds_used", 0.0)  # the budget counts the time before the interruption too
        history = json.loads(st["history"])
        torch.set_rng_state(st["rng"])
        print(f"resumed at epoch {start_epoch}, best PublicTest {best:.4f}", flush=True)

    gen = torch.Generator().manual_seed(args.seed + start_epoch)
    curves_title = f"{out.name}: {args.labels} labels, from {args.pretrained or 'scratch'}, lr {args.lr:g}, {args.epochs} epochs"
    last_plot = 0.0
    epoch = start_epoch
    while epoch < args.epochs:
        t0 = time.time()
        train_loss, train_acc = train_one_epoch(model, xt, yt, prep, opt, sched, gen, device, args.batch_size, class_w,
                                                args.label_smoothing, scaler, ema=ema, desc=f"epoch {epoch + 1}/{args.epochs}",
                                                progress=not args.no_progress, mixup=args.mixup, teacher=teacher,
                                                kd_temperature=args.kd_temperature, kd_alpha=args.kd_alpha,
                                                logit_bias=logit_bias, sample_p=sample_p)
        lp = evaluate_logits(served, xp, prep, device)
        pub_loss, pub_acc, pub_bal = targets.score(lp, public_rows, public.labels)
        h = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "public_loss": pub_loss,
             "public_acc": pub_acc, "public_balanced_acc": pub_bal, "lr": sched.get_last_lr()[0],
             "seconds": round(time.time() - t0, 1)}
        history.append(h)
        if args.select == "balanced":  # every epoch kept; the rule is applied once the run is over
            save_model_dir(served, prep, out / "epochs" / f"{epoch + 1:03d}", args.labels)
            improved = balance.select_balanced(history, args.select_within) == len(history) - 1
        else:
            improved = pub_acc > best
        if improved:
            best = pub_acc
            save_model_dir(served, prep, out / "model", args.labels)
        print(json.dumps(h) + ("  *best*" if improved else ""), flush=True)
        if args.time_budget and epoch + 1 >= 2 and not fitted and args.epochs > epoch + 1:
            fitted = True
            fit = fit_epochs(args.epochs, args.time_budget * 60 - (time.time() - t_start), h["seconds"], done=epoch + 1)
            if fit != args.epochs:  # the same one-cycle schedule, shorter, continued from the steps already taken
                print(f"--time-budget {args.time_budget:g} min: {fit} epochs fit (of {args.epochs}) at {h['seconds']:.1f} s each",
                      flush=True)
                args.epochs_asked, args.epochs = args.epochs, fit  # both in metrics.json's args
                sched = one_cycle(steps_per_epoch * fit)
                for _ in range(steps_per_epoch * (epoch + 1)):
                    sched.step()
                curves_title = curves_title.rsplit(",", 1)[0] + f", {fit} epochs (fitted to {args.time_budget:g} min)"
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch + 1,
                 "epochs": args.epochs, "fitted": fitted, "seconds_used": time.time() - t_start, "best": best,
                 "history": json.dumps(history), "rng": torch.get_rng_state(),
                 **({"epochs_asked": args.epochs_asked} if hasattr(args, "epochs_asked") else {})}
        if ema is not None:
            state["ema"] = ema.state_dict()
        torch.save(state, out / "checkpoint.tmp"); os.replace(out / "checkpoint.tmp", ckpt_path)
        if epoch + 1 == args.epochs or time.time() - last_plot >= PLOT_EVERY_S:  # fast (GPU) epochs: not every one
            plot_curves(history, out / "curves.png", curves_title)
            last_plot = time.time()
        epoch += 1

    selected = None
    if args.select == "balanced" and history:  # the rule over the whole run (an earlier epoch may win once all are in)
        i = balance.select_balanced(history, args.select_within)
        selected = history[i]["epoch"]
        import shutil

        shutil.rmtree(out / "model", ignore_errors=True)
        shutil.copytree(out / "epochs" / f"{selected:03d}", out / "model")
        best = history[i]["public_acc"]
        print(f"selected epoch {selected} by the balanced rule: PublicTest accuracy {best:.4f}, balanced accuracy "
              f"{history[i]['public_balanced_acc']:.4f} (best accuracy {max(h['public_acc'] for h in history):.4f}, "
              f"within {args.select_within:g})", flush=True)
    # the last weights compete with the selected ones on PublicTest (e.g. after --resume of a finished run)
    last_acc = targets.score(evaluate_logits(served, xp, prep, device), public_rows, public.labels)[1]
    if selected is None and last_acc > best:
        print(f"last epoch's weights beat the selected ones on PublicTest: {last_acc:.4f} > {best:.4f}", flush=True)
        best = last_acc
        save_model_dir(served, prep, out / "model", args.labels)

    metrics = {
        "labels": list(LABELS), "input_size": args.input_size, "width": args.width, "args": {k: str(v) for k, v in vars(args).items()},
        "data_cleaning": report.as_dict(), "n_train": len(train), "best_public_acc": best,
        "label_set": args.labels, "n_private": len(private), "history": history,
        "class_prior": dict(zip(LABELS, prior.round(5).tolist())), "select": args.select,
        **({"selected_epoch": selected} if selected is not None else {}),
    }
    if len(private) == 0:  # e.g. a copy of the data made to train elsewhere: the report is made where PrivateTest is
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"wrote {out / 'metrics.json'}")
        print(f"PublicTest best {best:.4f} ({args.labels}); no PrivateTest images in {data_root}: report it where they are, "
              f"with tools/package.py {out / 'model'} DIR, then tools/evaluate.py --model DIR --split private --labels {args.labels}",
              flush=True)
        return 0

    # PrivateTest, once, on the selected model
    from emod.training.build import load_dir

    final = load_dir(out / "model").to(device).to(memory_format=torch.channels_last)
    xq = np.stack([prep.resize(im) for im in private.images])
    lq = evaluate_logits(final, xq, prep, device)
    metrics["private_acc_fer2013"] = float((lq.argmax(1) == private.labels).mean())
    metrics["private_balanced_acc_fer2013"] = classification_report(private.labels, lq.argmax(1), LABELS)["balanced_accuracy"]
    if targets.votes is not None or (data_root / ferplus.VOTES_FILE).is_file():
        pv = (targets.votes if targets.votes is not None else ferplus.load(data_root, data.names).votes)[rows(private)]
        metrics["private_acc_ferplus"], metrics["n_private_ferplus"] = ferplus.accuracy(lq.argmax(1), pv)
        tq = ferplus.majority_label(pv)
        metrics["private_balanced_acc_ferplus"] = classification_report(tq[tq >= 0], lq.argmax(1)[tq >= 0], LABELS)["balanced_accuracy"]
    metrics["private_acc"] = metrics["private_acc_ferplus" if args.labels == "ferplus" else "private_acc_fer2013"]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {out / 'metrics.json'}")
    print(f"PublicTest best {best:.4f} ({args.labels}); PrivateTest {args.labels} {metrics['private_acc']:.4f}; "
          f"fer2013 {metrics['private_acc_fer2013']:.4f} (n={len(private)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
