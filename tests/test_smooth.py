"""Tests for emod.vision.smooth: hysteresis, voting, pass-through and the factory."""

import numpy as np
import pytest

from emod.labels import LABEL_INDEX, LABELS
from emod.vision.smooth import EmaHysteresis, MajorityVote, NoSmoothing, Smoothed, make_smoother


def onehot(label: str) -> np.ndarray:
    v = np.zeros(len(LABELS))
    v[LABEL_INDEX[label]] = 1.0
    return v


def soft(label: str, p: float = 0.7) -> np.ndarray:
    v = np.full(len(LABELS), (1.0 - p) / (len(LABELS) - 1))
    v[LABEL_INDEX[label]] = p
    return v


def frames_until_flip(sm, steady: str, new: str, warmup: int = 20, limit: int = 50) -> int:
    """Feed ``steady`` for ``warmup`` frames then ``new``; return how many ``new`` frames until the label is ``new``."""
    for _ in range(warmup):
        assert sm.update(onehot(steady)).label == steady
    for k in range(1, limit + 1):
        if sm.update(onehot(new)).label == new:
            return k
    raise AssertionError("never flipped")


def test_ema_first_update_sets_label():
    """The first EMA update sets the label immediately to the raw top class."""
    out = EmaHysteresis().update(soft("fear", 0.4))
    assert isinstance(out, Smoothed)
    assert out.label == "fear"
    assert out.confidence == pytest.approx(0.4)


@pytest.mark.parametrize("position", [1, 5, 19])
def test_ema_single_frame_glitch_never_flips(position):
    """A single misclassified frame anywhere in a steady run never changes the EMA label."""
    sm = EmaHysteresis()
    for i in range(20):
        probs = onehot("sad") if i == position else soft("happy", 0.8)
        assert sm.update(probs).label == "happy"


def test_ema_noisy_glitches_never_flip():
    """Isolated one-frame glitches to varying labels, separated by good frames, never flip the EMA label."""
    rng = np.random.default_rng(0)
    sm = EmaHysteresis()
    others = [n for n in LABELS if n != "neutral"]
    for i in range(200):
        if i % 4 == 2:
            probs = onehot(str(rng.choice(others)))
        else:
            probs = soft("neutral", 0.6) + rng.uniform(0, 0.05, len(LABELS))
        assert sm.update(probs).label == "neutral"


def test_ema_sustained_change_flips_by_margin_at_frame_3():
    """With alpha=0.3, margin=0.15 a one-hot switch flips on the 3rd new frame (lead 0.314 >= margin)."""
    assert frames_until_flip(EmaHysteresis(alpha=0.3, lead_frames=3, margin=0.15), "happy", "sad") == 3


def test_ema_sustained_change_flips_by_lead_frames_at_frame_4():
    """With the margin disabled the new label leads from frame 2, so 3 consecutive leads flip it on frame 4."""
    assert frames_until_flip(EmaHysteresis(alpha=0.3, lead_frames=3, margin=1.0), "happy", "sad") == 4


def test_ema_lead_streak_resets_when_current_label_retakes_lead():
    """The consecutive-lead count restarts when the current label leads the EMA again."""
    sm = EmaHysteresis(alpha=0.5, lead_frames=3, margin=1.0)
    sm.update(onehot("happy"))
    seq = ["sad", "sad", "happy", "happy", "sad", "sad"]
    labels = [sm.update(onehot(n)).label for n in seq]
    assert labels == ["happy"] * len(seq)


def test_ema_confidence_and_probs_are_the_ema():
    """The EMA result carries the EMA vector and the EMA probability of its label."""
    sm = EmaHysteresis(alpha=0.5)
    sm.update(onehot("angry"))
    out = sm.update(onehot("fear"))
    assert out.label == "angry"
    assert out.confidence == pytest.approx(0.5)
    assert out.probs[LABEL_INDEX["fear"]] == pytest.approx(0.5)


def test_vote_single_frame_glitch_never_flips():
    """A single misclassified frame never changes the majority-vote label, including right after the start."""
    for position in (1, 4, 15):
        sm = MajorityVote(window=10)
        for i in range(20):
            probs = onehot("angry") if i == position else soft("surprise")
            assert sm.update(probs).label == "surprise"


def test_vote_sustained_change_flips_at_majority():
    """With window=5 a sustained change flips on the 3rd new frame (3 of 5 votes)."""
    assert frames_until_flip(MajorityVote(window=5), "happy", "sad") == 3


def test_vote_tie_keeps_current_label():
    """With an even window a 2-2 tie keeps the current label; the flip comes at 3 of 4."""
    assert frames_until_flip(MajorityVote(window=4), "happy", "sad") == 3
    sm = MajorityVote(window=4)
    for n in ["happy"] * 4 + ["sad", "sad"]:
        out = sm.update(onehot(n))
    assert out.label == "happy"
    assert out.confidence == pytest.approx(0.5)


def test_vote_confidence_is_fraction_and_probs_are_mean():
    """The vote result's confidence is the winner's vote fraction and probs the window mean."""
    sm = MajorityVote(window=4)
    for n in ["happy", "happy", "happy", "sad"]:
        out = sm.update(onehot(n))
    assert out.label == "happy"
    assert out.confidence == pytest.approx(0.75)
    assert out.probs[LABEL_INDEX["sad"]] == pytest.approx(0.25)


def test_none_passes_raw_through():
    """NoSmoothing returns the raw top label, its probability and the raw vector."""
    sm = NoSmoothing()
    sm.update(soft("happy"))
    out = sm.update(soft("disgust", 0.55))
    assert out.label == "disgust"
    assert out.confidence == pytest.approx(0.55)
    np.testing.assert_allclose(out.probs, soft("disgust", 0.55))


def test_make_smoother_kinds_and_params():
    """make_smoother builds each kind by name with parameters and rejects unknown names."""
    assert isinstance(make_smoother("none"), NoSmoothing)
    ema = make_smoother("ema", alpha=0.5, lead_frames=2, margin=0.2)
    assert isinstance(ema, EmaHysteresis) and (ema.alpha, ema.lead_frames, ema.margin) == (0.5, 2, 0.2)
    vote = make_smoother("vote", window=7)
    assert isinstance(vote, MajorityVote) and vote.window == 7
    with pytest.raises(ValueError):
        make_smoother("kalman")


def test_wrong_length_is_rejected():
    """A probability vector whose length differs from LABELS raises ValueError."""
    with pytest.raises(ValueError):
        EmaHysteresis().update(np.ones(3))
