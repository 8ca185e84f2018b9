"""FER+ crowd votes: reading the vote file, joining it by path, and the soft-target and majority rules."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _fixtures import tiny_models  # noqa: F401
from emod.datasets import fer2013, ferplus
from emod.labels import LABEL_INDEX, LABELS

REPO = Path(__file__).resolve().parents[1]
HEADER = "path,Usage," + ",".join(ferplus.VOTE_COLUMNS) + ",match_status\n"


def write_votes(path: Path, rows: list[tuple[str, list[int] | None]]) -> Path:
    lines = [HEADER]
    for name, v in rows:
        cells = [""] * 10 if v is None else [str(x) for x in v]
        lines.append(f"{name},Training,{','.join(cells)},exact_unique\n")
    path.write_text("".join(lines))
    return path


#                        neu hap sur sad ang dis fea con unk NF
HAND = [("train/happy/a.jpg", [1, 6, 2, 0, 0, 0, 0, 0, 1, 0]),
        ("train/angry/b.jpg", [0, 0, 0, 0, 4, 4, 0, 2, 0, 0]),   # tie anger/disgust; contempt dropped
        ("train/sad/c.jpg", [0, 0, 0, 2, 0, 0, 0, 0, 0, 8]),     # majority NF: left out
        ("train/fear/d.jpg", [0, 0, 0, 0, 0, 0, 0, 3, 7, 0]),    # no emotion vote at all: left out
        ("train/neutral/e.jpg", None)]                              # unmatched row: no votes


def test_soft_targets_are_exact_on_a_hand_made_table(tmp_path):
    """Soft targets are the 7 emotion votes over their sum, in LABELS order; contempt/unknown/NF votes are dropped."""
    rows = ferplus.read_votes(write_votes(tmp_path / "votes.csv", HAND))
    names = np.array([n for n, _ in HAND])
    j = ferplus.join(names, rows)
    t = ferplus.soft_targets(j.votes)
    assert t.shape == (5, len(LABELS)) and t.dtype == np.float32
    want = np.zeros((5, 7))
    want[0, [LABEL_INDEX["neutral"], LABEL_INDEX["happy"], LABEL_INDEX["surprise"]]] = [1 / 9, 6 / 9, 2 / 9]
    want[1, [LABEL_INDEX["angry"], LABEL_INDEX["disgust"]]] = [0.5, 0.5]
    want[2, LABEL_INDEX["sad"]] = 1.0
    np.testing.assert_allclose(t, want, atol=1e-7)
    assert ferplus.majority_label(j.votes).tolist() == [LABEL_INDEX["happy"], LABEL_INDEX["angry"], -1, -1, -1]


def test_usable_images_and_report_count_every_image_once(tmp_path):
    """NF or non-emotion majorities, empty rows and images absent from the file are each counted, never silently lost."""
    rows = ferplus.read_votes(write_votes(tmp_path / "votes.csv", HAND))
    names = np.array([n for n, _ in HAND] + ["train/happy/not-in-file.jpg"])
    j = ferplus.join(names, rows)
    ok, rep = j.usable()
    assert ok.tolist() == [True, True, False, False, False, False]
    assert rep.as_dict() == {"usable": 2, "no_votes": 1, "missing_row": 1, "majority_other": 2}
    assert sum(rep.as_dict().values()) == len(names)


def test_accuracy_and_cross_entropy_follow_the_votes():
    """FER+ accuracy is over usable images only; ties count in accuracy_any_top; cross-entropy is against the vote distribution."""
    votes = np.array([v for _, v in HAND[:4]])
    pred = np.array([LABEL_INDEX["happy"], LABEL_INDEX["disgust"], 0, 0])
    acc, n = ferplus.accuracy(pred, votes)
    assert (acc, n) == (0.5, 2)
    assert ferplus.accuracy_any_top(pred, votes) == 1.0
    probs = ferplus.soft_targets(votes).astype(np.float64)
    probs[2:] = 1 / 7
    ce = ferplus.cross_entropy(probs[:2], votes[:2])
    h0 = -(np.array([1, 6, 2]) / 9 * np.log(np.array([1, 6, 2]) / 9)).sum()
    assert ce == pytest.approx((h0 + np.log(2)) / 2, rel=1e-5)


def test_a_missing_file_and_an_orphan_row_are_reported(tmp_path):
    """A missing vote file raises naming the path; a row that names no image fails the join (strict) by name."""
    with pytest.raises(ferplus.VoteFileError, match="no FER\\+ vote file at .*nowhere"):
        ferplus.read_votes(tmp_path / "nowhere" / "votes.csv")
    rows = ferplus.read_votes(write_votes(tmp_path / "votes.csv", HAND))
    with pytest.raises(ferplus.VoteFileError, match="train/sad/c.jpg|name no image"):
        ferplus.join(np.array(["train/happy/a.jpg"]), rows)
    assert ferplus.join(np.array(["train/happy/a.jpg"]), rows, strict=False).has_votes.tolist() == [True]


def test_malformed_rows_are_refused_by_line(tmp_path):
    """A non-integer count, a repeated path or a missing column is refused with the file and line."""
    bad = write_votes(tmp_path / "v.csv", HAND[:1])
    bad.write_text(bad.read_text() + "train/x.jpg,Training,1,2,x,0,0,0,0,0,0,0,exact_unique\n")
    with pytest.raises(ferplus.VoteFileError, match="v.csv:3"):
        ferplus.read_votes(bad)
    dup = write_votes(tmp_path / "d.csv", HAND[:1] * 2)
    with pytest.raises(ferplus.VoteFileError, match="appears twice"):
        ferplus.read_votes(dup)
    (tmp_path / "c.csv").write_text("path,Usage,neutral\ntrain/a.jpg,Training,3\n")
    with pytest.raises(ferplus.VoteFileError, match="missing column"):
        ferplus.read_votes(tmp_path / "c.csv")


def test_shared_vote_file_joins_our_copy_by_path():
    """The shared votes.csv joins every image of our FER2013 copy: 35,722 with votes, 165 without, no orphan rows."""
    root = fer2013.default_root()
    if not (root / ferplus.VOTES_FILE).is_file():
        pytest.skip(f"FER+ votes not found under {root}")
    data = fer2013.load(root, cache_dir=REPO / ".cache")
    j = ferplus.load(root, data.names)
    _, rep = j.usable()
    assert int(j.has_votes.sum()) == 35722 and rep.no_votes == 165 and rep.missing_row == 0
    private = data.usage == "private"
    assert int((ferplus.majority_label(j.votes[private]) >= 0).sum()) == 3518


def test_clear_majority_is_barsoums_test_subset():
    """Single votes are outliers; a label needs more than half of the rest; a clear contempt/unknown/NF majority is not ours."""
    #                   neu hap sur sad ang dis fea con unk NF
    votes = np.array([[1, 6, 2, 0, 0, 0, 0, 0, 1, 0],   # 6 of 8 after dropping the singles: happy
                      [0, 0, 0, 0, 4, 4, 0, 2, 0, 0],   # tie: no clear majority
                      [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],   # exactly half is not more than half
                      [4, 1, 1, 1, 1, 1, 1, 0, 0, 0],   # 4 of 10, but the single votes go: 4 of 4, neutral
                      [0, 0, 0, 0, 0, 0, 0, 7, 3, 0],   # clear contempt: not ours
                      [0, 0, 0, 2, 0, 0, 0, 0, 0, 8],   # clear NF
                      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],   # every vote an outlier: nothing left
                      [0, 0, 3, 0, 0, 0, 2, 0, 0, 0]])  # 3 of 5: surprise
    want = [LABEL_INDEX["happy"], -1, -1, LABEL_INDEX["neutral"], -1, -1, -1, LABEL_INDEX["surprise"]]
    assert ferplus.clear_majority_label(votes).tolist() == want
    pred = np.array([LABEL_INDEX["happy"], 0, 0, LABEL_INDEX["sad"], 0, 0, 0, LABEL_INDEX["surprise"]])
    assert ferplus.accuracy_clear_majority(pred, votes) == (2 / 3, 3)
    assert ferplus.accuracy(pred, votes)[1] == 6  # the plain majority keeps the ties and weak majorities


def test_evaluate_with_ferplus_labels_reports_n_and_cross_entropy(tiny_models, tmp_path):
    """tools/evaluate.py --labels ferplus scores usable images only and adds cross-entropy and the FER2013 accuracy."""
    root = fer2013.default_root()
    if not (root / ferplus.VOTES_FILE).is_file():
        pytest.skip(f"FER+ votes not found under {root}")
    out = tmp_path / "e.json"
    env = {k: v for k, v in os.environ.items() if k != "EMOD_MODELS_DIR"}
    r = subprocess.run([sys.executable, str(REPO / "tools" / "evaluate.py"), "--model", str(tiny_models / "tiny"),
                        "--split", "private", "--limit", "200", "--labels", "ferplus", "--json", str(out),
                        "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["label_set"] == "ferplus" and rep["n"] + rep["n_left_out"] == 200 and rep["n"] > 180
    assert np.array(rep["confusion_matrix"]).sum() == rep["n"]
    assert rep["cross_entropy"] > 0 and 0 <= rep["accuracy_fer2013"] <= 1
    assert 100 < rep["n_clear_majority"] < rep["n"] and 0 <= rep["accuracy_clear_majority"] <= 1


def test_the_fer2013_label_can_count_as_extra_votes():
    """--fer2013-votes K adds K votes for the original label before normalising; rows with no emotion vote stay 0."""
    votes = np.array([v for _, v in HAND[:4]])
    labels = np.array([LABEL_INDEX["angry"], LABEL_INDEX["angry"], LABEL_INDEX["sad"], LABEL_INDEX["fear"]])
    t = ferplus.soft_targets(votes, labels, 2)
    assert t[0, LABEL_INDEX["angry"]] == pytest.approx(2 / 11) and t[0, LABEL_INDEX["happy"]] == pytest.approx(6 / 11)
    assert t[1, LABEL_INDEX["angry"]] == pytest.approx(6 / 10) and t[1, LABEL_INDEX["disgust"]] == pytest.approx(4 / 10)
    assert t[2, LABEL_INDEX["sad"]] == pytest.approx(1.0) and not t[3].any()
    np.testing.assert_allclose(t[:3].sum(1), 1.0, atol=1e-6)
