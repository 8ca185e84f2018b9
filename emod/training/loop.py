"""The training step shared by tools/train.py and tools/optimize.py."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from emod.labels import LABELS
from emod.models.preprocess import Preprocess
from emod.training.augment import augment


def evaluate_logits(model, x_u8: np.ndarray, prep: Preprocess, device, bs: int = 512) -> np.ndarray:
    """Logits of uint8 (N, S, S) images, already resized to the model's input size."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x_u8), bs):
            xb = torch.from_numpy(prep.normalize(x_u8[i : i + bs])).to(device).contiguous(memory_format=torch.channels_last)
            out.append(model(pixel_values=xb).logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(LABELS)), np.float32)


def class_weights(labels: np.ndarray, power: float) -> torch.Tensor:
    """(1 / frequency) ** power, normalised to mean 1: power 0.5 softens the imbalance without inverting it."""
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float64)
    w = (counts.sum() / (len(LABELS) * np.maximum(counts, 1))) ** power
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def ema_update_fn(decay: float, warmup: bool = False):
    """``multi_avg_fn`` for ``torch.optim.swa_utils.AveragedModel``: an exponential moving average.

    Without ``warmup``, torch's own (``get_ema_multi_avg_fn(decay)``). With it, each update moves the
    average towards the current weights by ``1 - d``, ``d = min(decay, (1 + n) / (10 + n))`` after
    ``n`` updates (TensorFlow's ``ExponentialMovingAverage(num_updates=...)``), so a run from scratch
    does not carry its random start in the average for thousands of steps: at 0.999 alone,
    ``0.999 ** 1656`` = 19 % of the average is still the weights and BatchNorm statistics of the first
    step after 1,656 steps. Integer buffers (``num_batches_tracked``, unused with a set BatchNorm
    momentum) then take the current value.
    """
    if not warmup:
        return torch.optim.swa_utils.get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:
            for a, c in zip(averaged, current):
                a.copy_(c)

    return update


def mixup_batch(x: torch.Tensor, alpha: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al., ICLR 2018) of a batch X (N, C, S, S) with a shuffled copy of itself.

    Returns (mixed, partner, lam): ``mixed = lam * x + (1 - lam) * x[partner]``, with ``lam`` drawn
    from Beta(ALPHA, ALPHA) (numpy's sampler, seeded from GEN, so a seeded run repeats) and ``partner`` a
    permutation of range(N). The loss is then ``lam * L(y) + (1 - lam) * L(y[partner])``.
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    partner = torch.randperm(x.shape[0], generator=gen)
    return lam * x + (1 - lam) * x[partner], partner, lam


def train_one_epoch(model, xt: np.ndarray, yt: torch.Tensor, prep: Preprocess, opt, sched, gen: torch.Generator,
                    device, batch_size: int, class_w: torch.Tensor, label_smoothing: float, scaler, ema=None,
                    teacher=None, kd_temperature: float = 4.0, kd_alpha: float = 0.5, desc: str = "", progress: bool = True,
                    freeze_bn: bool = False, mixup: float = 0.0, logit_bias: torch.Tensor | None = None,
                    sample_p: np.ndarray | None = None):
    """One pass over the training set; returns (mean loss, accuracy on augmented batches).

    ``yt`` is (N,) int64 class indices, or (N, 7) float soft targets (e.g. FER+ vote
    distributions); accuracy is then against each target's top class.
    With a ``teacher``, the loss mixes hard-label cross-entropy with the KL divergence
    to the teacher's softened predictions (knowledge distillation). ``freeze_bn`` keeps every
    BatchNorm's running statistics as they are (the layers normalise with them while training).
    ``mixup`` > 0 trains on :func:`mixup_batch` pairs (its Beta alpha). ``ema`` (a
    ``torch.optim.swa_utils.AveragedModel``) is updated after every step.
    ``logit_bias`` (7,) is added to the logits in the cross-entropy terms only (logit adjustment, see
    :mod:`emod.training.balance`); accuracy and distillation use the plain logits. ``sample_p`` (N,) draws the
    epoch's N images with replacement with these probabilities (class-aware sampling) instead of a permutation.
    """
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    steps = (len(xt) + batch_size - 1) // batch_size
    if sample_p is None:
        perm = torch.randperm(len(xt), generator=gen)
    else:
        perm = torch.multinomial(torch.as_tensor(sample_p, dtype=torch.float64), len(xt), replacement=True, generator=gen)
    lb = None if logit_bias is None else logit_bias.to(device)
    tot_loss = tot_ok = seen = 0
    class_w = class_w.to(device)
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for s in bar:
        idx = perm[s * batch_size : (s + 1) * batch_size]
        xb = torch.from_numpy(prep.normalize(xt[idx.numpy()]))
        xb = augment(xb, generator=gen).to(device, non_blocking=True)
        yb = yt[idx].to(device)
        lam, partner = 1.0, None
        if mixup > 0:
            xb, partner, lam = mixup_batch(xb, mixup, gen)
            partner = partner.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = model(pixel_values=xb).logits.float()
            z = logits if lb is None else logits + lb
            loss = F.cross_entropy(z, yb, weight=class_w, label_smoothing=label_smoothing)
            if partner is not None:
                loss = lam * loss + (1 - lam) * F.cross_entropy(z, yb[partner], weight=class_w,
                                                                 label_smoothing=label_smoothing)
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(pixel_values=xb).logits.float()
                T = kd_temperature
                kd = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(t_logits / T, 1), reduction="batchmean") * T * T
                loss = (1 - kd_alpha) * loss + kd_alpha * kd
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        tot_loss += float(loss.detach()) * len(idx)
        tot_ok += int((logits.argmax(1) == (yb if yb.ndim == 1 else yb.argmax(1))).sum())
        seen += len(idx)
        bar.set_postfix(loss=f"{tot_loss / seen:.3f}", acc=f"{tot_ok / seen:.3f}")
    return tot_loss / seen, tot_ok / seen
