"""Balance: balanced accuracy on a hand-made confusion matrix, the prior fold against the post-hoc correction,
class-aware sampling weights and the selection rule (emod.metrics, emod.training.balance)."""

import numpy as np
import pytest
import torch

from emod.labels import LABELS
from emod.metrics import classification_report, report_from_confusion
from emod.training import balance


def test_balanced_accuracy_and_recall_on_a_hand_made_confusion_matrix():
    # rows: true class, columns: predicted; 3 labels for hand arithmetic
    cm = np.array([[8, 2, 0],    # recall 8/10
                   [1, 1, 2],    # recall 1/4
                   [0, 0, 6]])   # recall 6/6
    r = report_from_confusion(cm, ["a", "b", "c"])
    assert r["per_class"]["a"]["recall"] == pytest.approx(0.8)
    assert r["per_class"]["b"]["recall"] == pytest.approx(0.25)
    assert r["per_class"]["c"]["recall"] == pytest.approx(1.0)
    assert r["balanced_accuracy"] == pytest.approx((0.8 + 0.25 + 1.0) / 3)
    assert r["accuracy"] == pytest.approx(15 / 20)  # the headline figure hides class b
    # the same from labels, and a class never seen counts as 0 recall (not dropped)
    t = np.array([0] * 10 + [1] * 4 + [2] * 6)
    p = np.array([0] * 8 + [1] * 2 + [0, 1, 2, 2] + [2] * 6)
    assert classification_report(t, p, ["a", "b", "c"])["balanced_accuracy"] == pytest.approx(r["balanced_accuracy"])
    assert classification_report(t, p, ["a", "b", "c", "d"])["balanced_accuracy"] == pytest.approx((0.8 + 0.25 + 1.0) / 4)


@pytest.mark.parametrize("tau", [-0.5, 0.5, 1.0])
def test_the_folded_prior_gives_the_corrected_top_labels(tau):
    g = torch.Generator().manual_seed(0)
    prior = balance.class_prior(np.array([0.086, 0.018, 0.036, 0.263, 0.148, 0.122, 0.328]).reshape(1, 7).repeat(3, 0))
    head = torch.nn.Linear(16, len(LABELS))
    feats = torch.randn(2000, 16, generator=g) * 3
    with torch.no_grad():
        logp = torch.log_softmax(head(feats), 1).numpy()
        corrected = balance.adjusted_scores(logp, prior, tau)
        balance.fold_prior(head, prior, tau)
        folded = torch.softmax(head(feats), 1).numpy()
    assert (folded.argmax(1) == corrected.argmax(1)).all()
    # and the served probabilities are the corrected ones, renormalised
    ref = np.exp(corrected - corrected.max(1, keepdims=True))
    np.testing.assert_allclose(folded, ref / ref.sum(1, keepdims=True), atol=1e-5)
    # the correction moved some labels, or the test proves nothing
    assert (corrected.argmax(1) != logp.argmax(1)).any()


def test_class_prior_of_hard_and_soft_targets():
    assert balance.class_prior(np.array([0, 0, 3, 6])) == pytest.approx([0.5, 1e-6, 1e-6, 0.25, 1e-6, 1e-6, 0.25], abs=1e-5)
    soft = np.zeros((2, 7)); soft[0, [0, 1]] = 0.5; soft[1, 6] = 1.0
    assert balance.class_prior(soft)[[0, 1, 6]] == pytest.approx([0.25, 0.25, 0.5], abs=1e-5)
    with pytest.raises(ValueError):
        balance.class_prior(np.zeros((0,)))


def test_class_aware_sampling_draws_every_class_equally_at_power_one():
    labels = np.array([0] * 90 + [1] * 9 + [6] * 1)
    w = balance.sample_weights(labels, 1.0)
    assert w.sum() == pytest.approx(1.0)
    assert [w[labels == c].sum() for c in (0, 1, 6)] == pytest.approx([1 / 3] * 3)
    assert balance.sample_weights(labels, 0.0) == pytest.approx(np.full(100, 0.01))


def test_the_selection_rule_takes_the_best_balance_within_a_point_of_the_best_accuracy():
    h = [{"public_acc": 0.84, "public_balanced_acc": 0.70},
         {"public_acc": 0.835, "public_balanced_acc": 0.74},   # within one point: wins on balance
         {"public_acc": 0.80, "public_balanced_acc": 0.80}]    # more balanced, but 4 points down
    assert balance.select_balanced(h) == 1
    assert balance.select_balanced(h, within=0.05) == 2
    with pytest.raises(ValueError):
        balance.select_balanced([])
