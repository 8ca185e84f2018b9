"""The shared training step (emod.training.loop): distillation with frozen BatchNorm statistics."""

import numpy as np
import pytest
import torch

from emod.models.preprocess import Preprocess
from emod.training.loop import train_one_epoch
from test_prune import _model


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_running_statistics_while_weights_learn(freeze):
    student, teacher = _model(5), _model(6)
    prep = Preprocess(32)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 32), dtype=np.uint8)
    y = torch.from_numpy(rng.integers(0, 7, 32))
    bns = [m for m in student.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = [(b.running_mean.clone(), b.running_var.clone(), int(b.num_batches_tracked)) for b in bns]
    affine = [b.weight.detach().clone() for b in bns]
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
    train_one_epoch(student, x, y, prep, opt, sched, torch.Generator().manual_seed(0), torch.device("cpu"), 16,
                    torch.ones(7), 0.0, torch.amp.GradScaler("cuda", enabled=False), teacher=teacher.eval(),
                    kd_alpha=1.0, kd_temperature=1.0, progress=False, freeze_bn=freeze)
    unchanged = [torch.equal(b.running_mean, m) and torch.equal(b.running_var, v) and int(b.num_batches_tracked) == n
                 for b, (m, v, n) in zip(bns, stats)]
    assert all(unchanged) if freeze else not any(unchanged)
    assert any(not torch.equal(b.weight, w) for b, w in zip(bns, affine))  # the affine parameters still train


def test_soft_targets_train_towards_the_vote_distribution():
    """With (N, 7) soft targets (FER+ votes), a few epochs lower the (eval-mode) cross-entropy to those distributions."""
    torch.manual_seed(0)  # dropout draws from the global generator: the same run whichever test ran before
    student = _model(5)
    prep = Preprocess(32)
    rng = np.random.default_rng(1)
    cls = rng.integers(0, 7, 32)
    x = np.clip(cls[:, None, None] * 36 + rng.integers(0, 20, (32, 32, 32)), 0, 255).astype(np.uint8)  # learnable
    votes = rng.integers(0, 2, (32, 7)).astype(np.float32) + np.eye(7, dtype=np.float32)[cls] * 6
    y = torch.from_numpy(votes / votes.sum(1, keepdims=True))

    def ce() -> float:
        student.eval()
        with torch.no_grad():
            logits = student(pixel_values=torch.from_numpy(prep.normalize(x))).logits
        return float(-(y * torch.log_softmax(logits, 1)).sum(1).mean())

    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
    before = ce()
    for _ in range(12):  # five were too few to be sure on one thread (eval-mode BatchNorm statistics still settling)
        loss, acc = train_one_epoch(student, x, y, prep, opt, sched, torch.Generator().manual_seed(0), torch.device("cpu"),
                                    8, torch.ones(7), 0.0, torch.amp.GradScaler("cuda", enabled=False), progress=False)
    assert ce() < before and 0.0 <= acc <= 1.0


def test_mixup_batch_mixes_each_image_with_one_partner():
    """mixup_batch returns lam * x + (1 - lam) * x[partner], partner a permutation, lam in [0, 1]; seeded, it repeats."""
    from emod.training.loop import mixup_batch

    x = torch.randn(16, 1, 8, 8)
    mixed, partner, lam = mixup_batch(x, 0.2, torch.Generator().manual_seed(3))
    assert 0.0 <= lam <= 1.0 and sorted(partner.tolist()) == list(range(16))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[partner])
    again = mixup_batch(x, 0.2, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], mixed) and again[2] == lam
    with pytest.raises(ValueError, match="alpha"):
        mixup_batch(x, 0.0, torch.Generator())


def test_mixup_and_ema_train_and_average():
    """With mixup, soft targets still train (loss finite, weights move); the EMA model follows the weights but lags."""
    student = _model(5)
    prep = Preprocess(32)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 32), dtype=np.uint8)
    y = torch.from_numpy(np.eye(7, dtype=np.float32)[rng.integers(0, 7, 32)])
    ema = torch.optim.swa_utils.AveragedModel(student, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9),
                                              use_buffers=True)
    before = [p.detach().clone() for p in student.parameters()]
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
    loss, acc = train_one_epoch(student, x, y, prep, opt, sched, torch.Generator().manual_seed(0), torch.device("cpu"), 8,
                                torch.ones(7), 0.0, torch.amp.GradScaler("cuda", enabled=False), ema=ema, progress=False,
                                mixup=0.4)
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0
    after = list(student.parameters())
    averaged = list(ema.module.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
    lag = [(av - a).abs().max() for av, a in zip(averaged, after)]
    assert int(ema.n_averaged) == 4 and max(lag) > 0  # 4 steps of 8, and the average is not the last weights


def test_ema_warmup_forgets_the_random_start_and_plain_ema_matches_torch():
    """--ema-warmup: decay min(DECAY, (1 + n) / (10 + n)); without it, torch's own EMA numbers exactly."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from emod.training.loop import ema_update_fn

    def run(fn, steps=60):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
        avg = AveragedModel(net, multi_avg_fn=fn, use_buffers=True)
        for t in range(steps):  # weights and BatchNorm statistics that move like a run from scratch: far from the start
            with torch.no_grad():
                for p in net.parameters():
                    p.fill_(float(t))
                net[1].running_var.fill_(1.0 + t)
            avg.update_parameters(net)
        return avg.module

    plain, theirs, warm = run(ema_update_fn(0.999)), run(get_ema_multi_avg_fn(0.999)), run(ema_update_fn(0.999, warmup=True))
    for a, b in zip(plain.state_dict().values(), theirs.state_dict().values()):
        if a.is_floating_point():
            assert torch.allclose(a, b)
    # expected, by the rule: the first update copies (value 0), update n (1..59) lerps towards n with 1 - d(n)
    expect_warm, expect_plain = 0.0, 0.0
    for n in range(1, 60):
        expect_warm += (1 - min(0.999, (1 + n) / (10 + n))) * (n - expect_warm)
        expect_plain += (1 - 0.999) * (n - expect_plain)
    assert float(warm[0].weight.detach().mean()) == pytest.approx(expect_warm, rel=1e-5) and expect_warm > 40  # near the last (59)
    assert float(plain[0].weight.detach().mean()) == pytest.approx(expect_plain, rel=1e-5) and expect_plain < 2  # still the start
    assert float(warm[1].running_var.mean()) == pytest.approx(1 + expect_warm, rel=1e-5)
