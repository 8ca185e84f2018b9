"""emod.metrics: confusion matrix, per-class report and the confusion PNG, checked against hand-computed fractions."""

import warnings
from fractions import Fraction as F

import numpy as np
import pytest

from emod.metrics import classification_report, confusion_matrix, plot_confusion

# 10 samples, 3 real classes a/b/c plus d, which is neither present nor predicted.
LABELS4 = ("a", "b", "c", "d")
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]
# rows = true, columns = predicted
CM = [[2, 1, 1, 0],
      [1, 2, 0, 0],
      [0, 1, 2, 0],
      [0, 0, 0, 0]]
# a: P 2/3 (2 of 3 predicted a), R 2/4; b: P 2/4, R 2/3; c: P 2/3, R 2/3
EXPECTED = {"a": (F(2, 3), F(1, 2), F(4, 7), 4), "b": (F(1, 2), F(2, 3), F(4, 7), 3),
            "c": (F(2, 3), F(2, 3), F(2, 3), 3), "d": (F(0), F(0), F(0), 0)}


def exact(x: F):
    return pytest.approx(float(x), rel=0, abs=1e-12)


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    """Each (true, predicted) pair is counted once, in row true and column predicted."""
    cm = confusion_matrix(Y_TRUE, Y_PRED, 4)
    assert cm.dtype == np.int64
    assert cm.tolist() == CM


def test_report_matches_hand_computed_fractions():
    """Accuracy, per-class precision/recall/F1/support and macro-F1 equal the fractions worked out by hand."""
    r = classification_report(Y_TRUE, Y_PRED, LABELS4)
    assert r["n"] == 10
    assert r["accuracy"] == exact(F(6, 10))
    for label, (p, rec, f1, support) in EXPECTED.items():
        c = r["per_class"][label]
        assert (c["precision"], c["recall"], c["f1"]) == (exact(p), exact(rec), exact(f1)), label
        assert c["support"] == support
    # macro-F1 averages every given label, the absent class d included as 0
    assert r["macro_f1"] == exact((F(4, 7) + F(4, 7) + F(2, 3) + 0) / 4)  # 19/42
    assert r["macro_precision"] == exact((F(2, 3) + F(1, 2) + F(2, 3)) / 4)
    assert r["macro_recall"] == exact((F(1, 2) + F(2, 3) + F(2, 3)) / 4)


def test_macro_f1_over_three_classes():
    """Without the absent class the macro-F1 is the mean over the three real classes (38/63)."""
    r = classification_report(Y_TRUE, Y_PRED, LABELS4[:3])
    assert r["macro_f1"] == exact(F(38, 63))
    assert r["accuracy"] == exact(F(3, 5))


def test_zero_support_and_never_predicted_classes_give_zero_without_warnings():
    """A class never predicted has precision 0.0 and a class never present has recall 0.0, with no division warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = classification_report([0, 0, 1], [0, 0, 2], ("x", "y", "z"))
    y, z = r["per_class"]["y"], r["per_class"]["z"]
    assert (y["precision"], y["recall"], y["f1"], y["support"]) == (0.0, 0.0, 0.0, 1)  # present, never predicted
    assert (z["precision"], z["recall"], z["f1"], z["support"]) == (0.0, 0.0, 0.0, 0)  # predicted, never present
    assert r["per_class"]["x"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert r["macro_f1"] == exact(F(1, 3))


def test_empty_input_gives_zero_accuracy():
    """An empty prediction set reports n 0 and accuracy 0.0 instead of dividing by zero."""
    r = classification_report(np.array([], np.int64), np.array([], np.int64), ("x", "y"))
    assert r["n"] == 0 and r["accuracy"] == 0.0 and r["macro_f1"] == 0.0


def test_out_of_range_or_mismatched_inputs_are_refused():
    """Class indices outside the label range, or arrays of different length, raise ValueError."""
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 0], 3)
    with pytest.raises(ValueError, match="samples"):
        confusion_matrix([0, 1], [0], 3)


def test_plot_confusion_writes_a_png(tmp_path):
    """plot_confusion writes a PNG file (headless) at the requested path, creating its folder."""
    out = plot_confusion(np.array(CM), LABELS4, tmp_path / "sub" / "cm.png", title="hand-made")
    assert out == tmp_path / "sub" / "cm.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
