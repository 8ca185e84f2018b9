"""Where to prune: each block's measured sensitivity, and a compute budget spent where it costs least.

Pruning every block by the same share treats a block that barely shapes the output like one
that carries it. Here each inverted-residual block is pruned alone, to a few candidate widths;
the BatchNorms downstream are re-estimated, and the cost of that width is the KL divergence of
the pruned network's predictions from the unpruned one's, on held-out training images. A greedy
allocation then removes, step by step, the width step with the least added divergence per
multiply-accumulate saved, until the requested share of the network's MACs is gone. A budget of
parameters (which set the int8 file's size) can be given too: the early blocks, which see the
largest feature maps, do many MACs per parameter and the late, wide ones few, so a step is then
judged by its saving as a share of each budget not yet met.

The score is the cost of the whole change, the downstream re-estimation included: that part
alone grows with the number of BatchNorms downstream, so it weighs on early blocks more, and for
most late blocks the score hardly varies with width. The scores are treated as additive, which
they are only roughly. For the shipped ``quant`` (budgets: at most 74 % of the MACs and 70 % of
the parameters kept) the allocation took the three 960-channel blocks and one of the 576 to 25 %,
halved the first expansion layer and left the rest (but one) whole (docs/training.md has the figures).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from emod.training.prune import _blocks, downstream_bns, keep_counts, prune_hidden, recalibrate_bn


@dataclass(frozen=True)
class Option:
    """One candidate width of one block: channels kept, MACs and parameters saved against the unpruned block,
    measured KL cost."""

    keep: int
    macs_saved: int
    kl: float
    params_saved: int = 0


def block_sensitivity(model: nn.Module, importance: list[torch.Tensor], ratios: Iterable[float],
                      recal_batches: Callable[[], Iterable[torch.Tensor]], logits: Callable[[nn.Module], torch.Tensor],
                      count_macs: Callable[[nn.Module], int], round_to: int = 8,
                      progress: bool = True) -> list[list[Option]]:
    """Per block, the options of pruning it (alone) by each of RATIOS, judged by LOGITS(model): its logits on
    held-out images (tools/optimize.py passes ``emod.training.loop.evaluate_logits``).

    Options keep strictly fewer channels one after the other: a ratio that rounds to the width of
    the one before (or to the whole block) is left out.
    """
    ratios = sorted(set(ratios))
    reference = F.softmax(logits(model), 1)
    macs0 = count_macs(model)
    params0 = n_params(model)
    n_blocks = len(importance)
    table: list[list[Option]] = [[] for _ in range(n_blocks)]
    bar = tqdm(total=n_blocks * len(ratios), desc="sensitivity", disable=not progress, leave=False)
    for b in range(n_blocks):
        for r in ratios:
            keep = keep_counts(importance[b : b + 1], r, round_to)[0]
            if keep >= (table[b][-1].keep if table[b] else len(importance[b])):
                bar.update()
                continue  # rounding left this width where the previous option already was: nothing saved
            counts = [len(imp) for imp in importance]
            counts[b] = keep
            trial = copy.deepcopy(model)
            widths = prune_hidden(trial, importance, counts)
            recalibrate_bn(trial, recal_batches, only=downstream_bns(trial, widths))
            kl = F.kl_div(F.log_softmax(logits(trial), 1), reference, reduction="batchmean")
            table[b].append(Option(keep, macs0 - count_macs(trial), max(0.0, float(kl)), params0 - n_params(trial)))
            bar.update()
    bar.close()
    return table


def allocate(table: list[list[Option]], hidden: list[int], macs_to_save: int, params_to_save: int = 0) -> list[int]:
    """Channels each block keeps: the cheapest steps until MACS_TO_SAVE MACs and PARAMS_TO_SAVE parameters are saved.

    A step's cost is its added KL divergence; what it buys is its saving as a share of each budget
    not yet met (a budget met counts for nothing), so with one budget this is KL per MAC (or per
    parameter) saved. Raises ValueError when even the deepest option of every block does not save
    enough.
    """
    level = [-1] * len(table)  # -1: unpruned; i: table[b][i]

    def option(b: int, lv: int) -> Option:
        return Option(hidden[b], 0, 0.0) if lv < 0 else table[b][lv]

    def saved() -> tuple[int, int]:
        chosen = [option(b, lv) for b, lv in enumerate(level)]
        return sum(o.macs_saved for o in chosen), sum(o.params_saved for o in chosen)

    macs, params = saved()
    while macs < macs_to_save or params < params_to_save:
        best = None
        for b, lv in enumerate(level):
            if lv + 1 < len(table[b]):
                now, nxt = option(b, lv), option(b, lv + 1)
                gain = 0.0
                for need, have, step in ((macs_to_save, macs, nxt.macs_saved - now.macs_saved),
                                         (params_to_save, params, nxt.params_saved - now.params_saved)):
                    if have < need and step > 0:
                        gain += step / need
                if gain <= 0:
                    continue
                rate = (nxt.kl - now.kl) / gain
                if best is None or rate < best[0]:
                    best = (rate, b)
        if best is None:
            want = f"{macs_to_save} MACs" + (f" and {params_to_save} parameters" if params_to_save > 0 else "")
            got = f"{macs}" + (f" and {params}" if params_to_save > 0 else "")
            raise ValueError(f"cannot save {want} by pruning hidden channels (reached {got})")
        level[best[1]] += 1
        macs, params = saved()
    return [option(b, lv).keep for b, lv in enumerate(level)]


def n_params(model: nn.Module) -> int:
    """The model's number of parameters (BatchNorm running statistics not counted)."""
    return sum(p.numel() for p in model.parameters())


def hidden_widths(model: nn.Module) -> list[int]:
    """Each inverted-residual block's current number of hidden (expansion) channels."""
    return [b.expand_1x1.convolution.out_channels for b in _blocks(model)]
