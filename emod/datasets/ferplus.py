"""FER+ crowd votes (Barsoum et al., ICMI 2016; MIT) joined to our FER2013 copy by path.

The vote file is ``<fer2013>/ferplus/votes.csv``: one row per image, its first column the
image path relative to the FER2013 folder (``train/angry/Training_10118481.jpg``), then
``Usage``, then ten vote counts in :data:`VOTE_COLUMNS` order (10 crowd workers per image),
then how the row was matched. Rows whose votes are empty could not be matched.

Rules (one place; tools/train.py, tools/evaluate.py and the tests use them):

- **Soft targets** (:func:`soft_targets`): the votes for our 7 emotions, divided by their
  sum, in :data:`emod.labels.LABELS` order. ``contempt`` has no label of ours and
  ``unknown`` / ``NF`` are not emotions, so their votes are dropped (not re-assigned).
- **Majority** (:func:`majority_label`): the most-voted of all ten columns (ties to the first
  in :data:`VOTE_COLUMNS` order). An image is *usable* when its majority is one of our 7
  emotions; FER+ accuracy is over usable images (:func:`accuracy`; :func:`accuracy_any_top`
  also accepts a label tied with the majority). Images whose majority is ``contempt``,
  ``unknown`` or ``NF``, and images with no votes, are left out of training and of FER+
  accuracy, and counted in :class:`VoteReport`.
- **Clear majority** (:func:`clear_majority_label`): Barsoum et al.'s test subset, for comparison
  with their published figures only (single votes dropped, the top column must hold more than half).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emod.labels import LABEL_INDEX, LABELS

VOTE_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)
# FER+ column -> our label; the three columns absent here have no label of ours.
COLUMN_TO_LABEL: dict[str, str] = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear",
}
VOTES_FILE = Path("ferplus") / "votes.csv"


class VoteFileError(ValueError):
    """The vote file is missing, malformed, or does not match the images it is joined to."""


@dataclass
class VoteReport:
    """How the votes met the images: every image is counted in exactly one bucket."""

    usable: int  # has votes and a top column among our 7 emotions
    no_votes: int  # the vote file has an empty row for it (unmatched)
    missing_row: int  # the vote file has no row for it at all
    majority_other: int  # top column only contempt / unknown / NF

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def read_votes(path: Path) -> dict[str, np.ndarray | None]:
    """Path -> (10,) int vote counts (or None for an unmatched row), in :data:`VOTE_COLUMNS` order.

    Raises :class:`VoteFileError` naming the file and row for a missing file, a missing
    column, a malformed count or a repeated path.
    """
    path = Path(path)
    if not path.is_file():
        raise VoteFileError(f"no FER+ vote file at {path} (expected <fer2013>/{VOTES_FILE})")
    out: dict[str, np.ndarray | None] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("path", *VOTE_COLUMNS) if c not in (reader.fieldnames or [])]
        if missing:
            raise VoteFileError(f"{path}: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            key = row["path"]
            if key in out:
                raise VoteFileError(f"{path}:{line}: path {key!r} appears twice")
            cells = [row[c].strip() for c in VOTE_COLUMNS]
            if all(c == "" for c in cells):
                out[key] = None
                continue
            try:
                v = np.array([int(c) for c in cells], np.int64)
            except ValueError:
                raise VoteFileError(f"{path}:{line}: vote counts {cells} are not all integers") from None
            if (v < 0).any() or v.sum() == 0:
                raise VoteFileError(f"{path}:{line}: vote counts {v.tolist()} must be >= 0 and not all 0")
            out[key] = v
    return out


@dataclass
class JoinedVotes:
    """Votes per image, in the order of the names they were joined to."""

    votes: np.ndarray  # (N, 10) int64 counts in VOTE_COLUMNS order (0 where there are none)
    has_votes: np.ndarray  # (N,) bool
    no_row: np.ndarray  # (N,) bool: the vote file has no row for the image at all

    def usable(self) -> tuple[np.ndarray, VoteReport]:
        """Mask of images to train on and score, and the report of what was left out and why."""
        top = majority_label(self.votes) >= 0
        ok = self.has_votes & top
        report = VoteReport(usable=int(ok.sum()), no_votes=int((~self.has_votes & ~self.no_row).sum()),
                            missing_row=int(self.no_row.sum()), majority_other=int((self.has_votes & ~top).sum()))
        return ok, report


def join(names: np.ndarray, votes: dict[str, np.ndarray | None], strict: bool = True) -> JoinedVotes:
    """Join vote rows to images by path, in ``names`` order.

    ``names`` are the FER2013 relative paths of :class:`emod.datasets.fer2013.FerSplit`.
    With ``strict``, a vote row that names no image raises :class:`VoteFileError`
    (the votes belong to another copy of the data set); images without a row, or with an
    empty one, are flagged and counted by :meth:`JoinedVotes.usable`, never silently dropped.
    """
    index = {str(n): i for i, n in enumerate(names)}
    if strict:
        orphans = [k for k in votes if k not in index]
        if orphans:
            raise VoteFileError(f"{len(orphans)} vote row(s) name no image of this data set, e.g. {orphans[0]!r}")
    out = np.zeros((len(names), len(VOTE_COLUMNS)), np.int64)
    has = np.zeros(len(names), bool)
    no_row = np.zeros(len(names), bool)
    for i, n in enumerate(names):
        key = str(n)
        if key not in votes:
            no_row[i] = True
        elif votes[key] is not None:
            out[i], has[i] = votes[key], True
    return JoinedVotes(out, has, no_row)


def soft_targets(votes: np.ndarray, fer2013_labels: np.ndarray | None = None, fer2013_votes: float = 0.0) -> np.ndarray:
    """(N, 10) vote counts -> (N, 7) float32 distributions over LABELS (rows with no emotion vote are 0).

    With ``fer2013_votes`` > 0, the original FER2013 label (``fer2013_labels``, (N,) LABELS
    indices) counts as that many more votes before normalising: its labeller was one more person.
    """
    votes = np.asarray(votes)
    emo = np.zeros((len(votes), len(LABELS)), np.float64)
    for col, label in COLUMN_TO_LABEL.items():
        emo[:, LABEL_INDEX[label]] = votes[:, VOTE_COLUMNS.index(col)]
    if fer2013_votes:
        emo[np.arange(len(votes)), np.asarray(fer2013_labels)] += fer2013_votes * (emo.sum(1) > 0)
    total = emo.sum(1, keepdims=True)
    return np.divide(emo, total, out=np.zeros_like(emo), where=total > 0).astype(np.float32)


def majority(votes: np.ndarray) -> np.ndarray:
    """(N, 10) vote counts -> (N, 7) bool: which of our labels hold the top count of all ten columns (ties allowed)."""
    votes = np.asarray(votes)
    top = (votes == votes.max(1, keepdims=True)) & (votes > 0)
    out = np.zeros((len(votes), len(LABELS)), bool)
    for col, label in COLUMN_TO_LABEL.items():
        out[:, LABEL_INDEX[label]] = top[:, VOTE_COLUMNS.index(col)]
    return out


def majority_label(votes: np.ndarray) -> np.ndarray:
    """(N,) int index into LABELS of the most-voted of all ten columns, -1 where that column is not ours.

    Ties go to the first column in :data:`VOTE_COLUMNS` order (``np.argmax``); images with
    no votes get -1.
    """
    votes = np.asarray(votes)
    col = votes.argmax(1)
    lut = np.array([LABEL_INDEX[COLUMN_TO_LABEL[c]] if c in COLUMN_TO_LABEL else -1 for c in VOTE_COLUMNS])
    return np.where(votes.sum(1) > 0, lut[col], -1)


def accuracy(pred: np.ndarray, votes: np.ndarray) -> tuple[float, int]:
    """FER+ accuracy and n: share of usable images whose predicted LABELS index is their majority label."""
    return _accuracy_on(pred, majority_label(votes))


def clear_majority_label(votes: np.ndarray) -> np.ndarray:
    """(N,) int index into LABELS of an image's *clear* majority, -1 where it has none or it is not ours.

    Barsoum et al.'s test protocol (the FER+ reader in microsoft/FERPlus, ``majority`` mode, which
    their training script uses for validation and test whatever the training mode): a column with a
    single vote is dropped as an outlier; the image keeps a label only when the most-voted column then
    holds more than half of the remaining votes. That label must be one of our 7 (a clear ``contempt``,
    ``unknown`` or ``NF`` majority gives -1), so the published 83.9 / 85.0 % are scored on this subset.
    """
    v = np.asarray(votes)
    v = np.where(v > 1, v, 0)
    clear = (2 * v.max(1) > v.sum(1)) & (v.sum(1) > 0)
    return np.where(clear, majority_label(v), -1)


def accuracy_clear_majority(pred: np.ndarray, votes: np.ndarray) -> tuple[float, int]:
    """As :func:`accuracy`, over the images with a clear majority (:func:`clear_majority_label`): (accuracy, n)."""
    return _accuracy_on(pred, clear_majority_label(votes))


def _accuracy_on(pred: np.ndarray, truth: np.ndarray) -> tuple[float, int]:
    """(accuracy, n) of (N,) predicted LABELS indices against (N,) truth, over the images whose truth is not -1."""
    keep = truth >= 0
    n = int(keep.sum())
    return (float((np.asarray(pred)[keep] == truth[keep]).mean()) if n else float("nan")), n


def accuracy_any_top(pred: np.ndarray, votes: np.ndarray) -> float:
    """As :func:`accuracy`, but a prediction is also right when it ties with the majority label's votes."""
    keep = majority_label(votes) >= 0
    top = majority(votes)[keep]
    return float(top[np.arange(len(top)), np.asarray(pred)[keep]].mean()) if len(top) else float("nan")


def cross_entropy(probs: np.ndarray, votes: np.ndarray, eps: float = 1e-7) -> float:
    """Mean cross-entropy (nats) of (N, 7) predicted probs against the vote distributions."""
    t = soft_targets(votes)
    keep = t.sum(1) > 0
    return float(-(t[keep] * np.log(np.clip(np.asarray(probs)[keep], eps, 1.0))).sum(1).mean())


def load(root: Path, names: np.ndarray, strict: bool = True) -> JoinedVotes:
    """Read ``root/ferplus/votes.csv`` and join it to ``names`` (see :func:`join`)."""
    rows = read_votes(Path(root) / VOTES_FILE)
    return join(names, rows, strict=strict)
