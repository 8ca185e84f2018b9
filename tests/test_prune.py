"""Expansion-channel pruning and BatchNorm recalibration (emod.training.prune), on small random MobileNetV2s."""

import pytest
import torch
from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

from emod.training.prune import _blocks, downstream_bns, hidden_importance, keep_counts, prune_hidden, recalibrate_bn


def _model(seed: int = 0):
    torch.manual_seed(seed)
    m = MobileNetV2ForImageClassification(MobileNetV2Config(num_channels=1, image_size=32, depth_multiplier=0.5,
                                                            num_labels=7, tf_padding=False)).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    return m


def test_dead_channels_go_first_and_the_function_is_unchanged():
    """Channels whose depthwise output is always 0 have zero importance; pruning exactly them changes nothing."""
    m = _model()
    x = torch.randn(6, 1, 32, 32)
    dead = {}
    for i, b in enumerate(_blocks(m)):
        n = b.conv_3x3.normalization.num_features
        idx = torch.randperm(n)[: n // 4]  # a quarter of each block's hidden channels output ReLU6(-1) = 0
        b.conv_3x3.normalization.bias.data[:] = 1.0  # the others are clearly alive
        b.conv_3x3.normalization.weight.data[idx] = 0.0
        b.conv_3x3.normalization.bias.data[idx] = -1.0
        dead[i] = set(idx.tolist())
    with torch.no_grad():
        before = m(pixel_values=x).logits
    imp = hidden_importance(m, [x])
    for i, scores in enumerate(imp):
        assert {int(c) for c in torch.nonzero(scores == 0).flatten()} == dead[i]
    widths = prune_hidden(m, imp, 0.25, round_to=1)
    assert [a for _, a in widths] == [n - len(dead[i]) for i, (n, _) in enumerate(widths)]
    with torch.no_grad():
        after = m(pixel_values=x).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_widths_are_multiples_of_round_to_and_ratio_is_checked():
    m = _model(1)
    widths = prune_hidden(m, hidden_importance(m, [torch.randn(2, 1, 32, 32)]), 0.3)
    assert all(a % 8 == 0 and 8 <= a <= n for n, a in widths)
    assert sum(a for _, a in widths) < 0.8 * sum(n for n, _ in widths)
    imp = hidden_importance(m, [torch.randn(2, 1, 32, 32)])
    with pytest.raises(ValueError, match="prune ratio"):
        prune_hidden(m, imp, 1.0)
    with pytest.raises(ValueError, match="importance vectors"):
        prune_hidden(m, imp[:-1], 0.3)


def test_recalibration_sets_statistics_to_the_data():
    """After recalibration the stem's BatchNorm holds the mean and (unbiased) variance of its conv's outputs."""
    m = _model(2)
    bn = m.mobilenet_v2.conv_stem.first_conv.normalization
    conv = m.mobilenet_v2.conv_stem.first_conv.convolution
    batches = [torch.randn(4, 1, 32, 32) * 2 + 1 for _ in range(3)]
    momentum = bn.momentum
    recalibrate_bn(m, lambda: iter(batches))
    with torch.no_grad():
        outs = [conv(b) for b in batches]
    mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.var(dim=(0, 2, 3), unbiased=True) for o in outs]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bn.running_var, var, atol=1e-3, rtol=1e-3)
    assert bn.momentum == momentum and not m.training


def test_partial_recalibration_leaves_the_unpruned_front_alone():
    """Pruning block k changes only the BatchNorms from its projection on; recalibrating those keeps the rest as trained."""
    m = _model(3)
    blocks = _blocks(m)
    imp = hidden_importance(m, [torch.randn(4, 1, 32, 32)])
    counts = [len(i) for i in imp]
    counts[5] = 8
    widths = prune_hidden(m, imp, counts)
    assert widths[5] == (len(imp[5]), 8) and all(a == n for i, (n, a) in enumerate(widths) if i != 5)
    only = downstream_bns(m, widths)
    assert only[0] is blocks[5].reduce_1x1.normalization
    assert blocks[5].conv_3x3.normalization not in only and blocks[6].expand_1x1.normalization in only
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    before = [b.running_mean.clone() for b in bns]
    recalibrate_bn(m, lambda: iter([torch.randn(4, 1, 32, 32)]), only=only)
    for b, mean in zip(bns, before):
        assert torch.equal(b.running_mean, mean) == (b not in only)
    assert downstream_bns(m, [(n, n) for n, _ in widths]) == []


def test_keep_counts_and_bad_widths():
    imp = [torch.rand(96), torch.rand(20)]
    assert keep_counts(imp, 0.5) == [48, 16]  # 10 rounds up to a multiple of 8
    assert keep_counts(imp, 0.1) == [88, 20]  # 18 would round up to 24: never more than the block has
    with pytest.raises(ValueError, match="cannot keep"):
        prune_hidden(_model(), [torch.rand(n) for n in [3] * len(_blocks(_model()))], [4] * len(_blocks(_model())))
    with pytest.raises(ValueError, match="keep counts"):
        prune_hidden(_model(), hidden_importance(_model(), [torch.randn(2, 1, 32, 32)]), [8])
