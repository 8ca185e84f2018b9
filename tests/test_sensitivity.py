"""Block sensitivity and the MACs budget allocation (emod.training.sensitivity)."""

import pytest
import torch
import torch_pruning as tp

from emod.training.prune import hidden_importance, prune_hidden
from emod.training.sensitivity import Option, allocate, block_sensitivity, hidden_widths, n_params
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


def test_a_parameter_budget_prunes_where_the_parameters_are():
    # block 0: early (many MACs, few parameters); block 1: late (few MACs, many parameters)
    table = [
        [Option(12, 400, 0.10, 10), Option(8, 800, 0.30, 20)],
        [Option(24, 100, 0.05, 300), Option(16, 200, 0.12, 600)],
    ]
    hidden = [16, 32]
    # MACs alone: block 0's 0.10 / 400 per MAC beats block 1's 0.05 / 100
    assert allocate(table, hidden, 400) == [12, 32]
    # also 500 parameters: block 1 is pruned twice (0.05 / 0.85, then 0.07 / 0.85 of a budget share), then block 0 for the MACs
    assert allocate(table, hidden, 400, params_to_save=500) == [12, 16]
    # parameters alone: block 1 until they are met
    assert allocate(table, hidden, 0, params_to_save=300) == [16, 24]
    assert allocate(table, hidden, 0, params_to_save=301) == [16, 16]
    with pytest.raises(ValueError, match="and 700 parameters"):
        allocate(table, hidden, 0, params_to_save=700)
    with pytest.raises(ValueError, match=r"cannot save 1100 MACs by pruning hidden channels \(reached 1000\)"):
        allocate(table, hidden, 1100)


def test_a_saving_counts_as_a_share_of_each_budget_not_yet_met():
    # a share, not a raw count: block 0 closes the parameter budget twice over (40 of 20: 2 shares) for 0.1,
    # block 1 both budgets once (2 shares) for 0.2; counted raw, block 1's 420 would beat block 0's 40
    table = [[Option(8, 0, 0.1, 40)], [Option(8, 400, 0.2, 20)]]
    assert allocate(table, [16, 16], 400, params_to_save=20) == [8, 8]
    # a budget met counts for nothing: after block 0's first step the parameters are met, and its second
    # step's 100 parameters no longer help it (0.4 / 0.5 of a share against block 1's 0.3 / 0.5)
    table = [[Option(12, 100, 0.1, 1000), Option(8, 200, 0.5, 1100)], [Option(8, 100, 0.3, 0)]]
    assert allocate(table, [16, 16], 200, params_to_save=500) == [12, 8]


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
        assert all(o.macs_saved > 0 and o.params_saved > 0 and o.kl >= 0 for o in opts)
        assert opts[-1].macs_saved > opts[0].macs_saved and opts[-1].kl > 0
    macs0, params0 = macs(m), n_params(m)
    keep = allocate(table, hidden_widths(m), int(0.2 * macs0), int(0.3 * params0))
    prune_hidden(m, imp, keep)
    assert macs(m) <= 0.8 * macs0 and n_params(m) <= 0.7 * params0
    assert hidden_widths(m) == keep
