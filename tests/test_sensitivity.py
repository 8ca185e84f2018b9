"""Block sensitivity and the MACs budget allocation (emod.training.sensitivity)."""

import pytest
import torch
import torch_pruning as tp

from emod.training.prune import hidden_importance, prune_hidden
from emod.training.sensitivity import Option, allocate, block_sensitivity, hidden_widths
from test_prune import _model


def test_allocation_takes_the_cheapest_divergence_per_mac_first():
    table = [
        [Option(12, 100, 0.30), Option(8, 200, 0.90)],  # block 0: costly
        [Option(24, 300, 0.03), Option(16, 600, 0.09), Option(8, 900, 1.50)],  # block 1: cheap, then steep
    ]
    hidden = [16, 32]
    assert allocate(table, hidden, 0) == [16, 32]
    assert allocate(table, hidden, 250) == [16, 24]
    assert allocate(table, hidden, 600) == [16, 16]
    # 700: block 0's first step costs 0.30 / 100 per MAC, block 1's last 1.41 / 300: block 0 goes first
    assert allocate(table, hidden, 700) == [12, 16]
    assert allocate(table, hidden, 1100) == [8, 8]
    with pytest.raises(ValueError, match="cannot save 1200"):
        allocate(table, hidden, 1200)


def test_sensitivity_measures_real_options_and_the_allocation_meets_the_budget():
    m = _model(4)
    x = torch.randn(16, 1, 32, 32)
    imp = hidden_importance(m, [x])
    x0 = torch.zeros(1, 1, 32, 32)

    def macs(model):
        return int(tp.utils.count_ops_and_params(model, x0)[0])

    def logits(model):
        model.eval()
        with torch.no_grad():
            return model(pixel_values=x[8:]).logits

    table = block_sensitivity(m, imp, (0.5, 0.25), lambda: iter([x[:8]]), logits, macs, progress=False)
    assert len(table) == len(imp)
    for opts, i in zip(table, imp):
        assert [o.keep for o in opts] == sorted({o.keep for o in opts}, reverse=True) and opts[0].keep < len(i)
        assert all(o.macs_saved > 0 and o.kl >= 0 for o in opts)
        assert opts[-1].macs_saved > opts[0].macs_saved and opts[-1].kl > 0
    macs0 = macs(m)
    keep = allocate(table, hidden_widths(m), int(0.2 * macs0))
    prune_hidden(m, imp, keep)
    assert macs(m) <= 0.8 * macs0
    assert hidden_widths(m) == keep
