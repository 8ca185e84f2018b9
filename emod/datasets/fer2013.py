"""FER2013 loading: the Kaggle image-folder layout and the original ``fer2013.csv``.

Both layouts load into one in-memory form, :class:`FerSplit`: 48x48 uint8 faces,
labels in :data:`emod.labels.LABELS` order, and a usage per image
(``train``, ``public`` or ``private``). :func:`clean_training_set` removes blank images,
within-train duplicates and every training image whose decoded pixels also occur
in the test set, so the reported test accuracy is honest.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emod.labels import LABEL_INDEX, LABELS

USAGES = ("train", "public", "private")
_CSV_USAGE = {"Training": "train", "PublicTest": "public", "PrivateTest": "private"}
# fer2013.csv numbers emotions 0..6 as angry, disgust, fear, happy, sad, surprise, neutral.
_CSV_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def default_root() -> Path:
    """Where FER2013 lives: ``$EMOD_FER2013`` or ``../shared/data/fer2013`` beside the checkout."""
    env = os.environ.get("EMOD_FER2013")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "fer2013"


@dataclass
class FerSplit:
    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64, index into LABELS
    usage: np.ndarray  # (N,) str: train / public / private
    names: np.ndarray  # (N,) str: relative path or csv row id

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, mask: np.ndarray) -> "FerSplit":
        return FerSplit(self.images[mask], self.labels[mask], self.usage[mask], self.names[mask])

    def subset(self, *usages: str) -> "FerSplit":
        return self.select(np.isin(self.usage, usages))


def _usage_from_name(split: str, name: str) -> str:
    if split == "train":
        return "train"
    if name.startswith("PublicTest_"):
        return "public"
    if name.startswith("PrivateTest_"):
        return "private"
    raise ValueError(f"test file {name!r} is neither PublicTest_ nor PrivateTest_")


def load_folder(root: Path, progress: bool = False) -> FerSplit:
    """Read ``root/{train,test}/<class>/*.jpg`` (every file decoded, nothing re-encoded)."""
    import cv2

    paths: list[tuple[str, str, Path]] = []
    for split in ("train", "test"):
        for label in LABELS:
            folder = root / split / label
            if not folder.is_dir():
                raise FileNotFoundError(f"missing class folder {folder}")
            for p in sorted(folder.iterdir()):
                if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                    paths.append((split, label, p))
    images = np.empty((len(paths), 48, 48), np.uint8)
    it = paths
    if progress:
        from tqdm import tqdm

        it = tqdm(paths, desc="decode FER2013", unit="img")
    for i, (_, _, p) in enumerate(it):
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"cannot decode {p}")
        if img.shape != (48, 48):
            img = cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
        images[i] = img
    labels = np.array([LABEL_INDEX[l] for _, l, _ in paths], np.int64)
    usage = np.array([_usage_from_name(s, p.name) for s, _, p in paths])
    names = np.array([f"{s}/{l}/{p.name}" for s, l, p in paths])
    return FerSplit(images, labels, usage, names)


def load_csv(path: Path) -> FerSplit:
    """Read the original ``fer2013.csv`` (columns emotion, pixels, Usage)."""
    images, labels, usage, names = [], [], [], []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            px = np.array(row["pixels"].split(), dtype=np.uint8)
            if px.size != 48 * 48:
                raise ValueError(f"{path}: row {i + 2} has {px.size} pixels, expected 2304")
            images.append(px.reshape(48, 48))
            labels.append(LABEL_INDEX[_CSV_LABELS[int(row["emotion"])]])
            usage.append(_CSV_USAGE[row["Usage"]])
            names.append(f"csv:{i}")
    return FerSplit(np.stack(images), np.array(labels, np.int64), np.array(usage), np.array(names))


def load(root: Path | None = None, cache_dir: Path | None = None, progress: bool = False) -> FerSplit:
    """Load FER2013 from a folder layout or a ``.csv`` file, through an ``.npz`` cache."""
    root = Path(root) if root is not None else default_root()
    if root.is_file() and root.suffix == ".csv":
        return load_csv(root)
    if (root / "fer2013.csv").is_file() and not (root / "train").is_dir():
        return load_csv(root / "fer2013.csv")
    if cache_dir is None:
        return load_folder(root, progress)
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"fer2013-{key}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return FerSplit(z["images"], z["labels"], z["usage"], z["names"])
    data = load_folder(root, progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # processes that start together (tools/sweep.py) each write their own
    try:
        np.savez(tmp, images=data.images, labels=data.labels, usage=data.usage, names=data.names)
        tmp.replace(cache)
    finally:
        tmp.unlink(missing_ok=True)  # a write cut short leaves nothing behind
    return data


def pixel_hashes(images: np.ndarray) -> np.ndarray:
    return np.array([hashlib.sha1(im.tobytes()).hexdigest() for im in images])


@dataclass
class CleanReport:
    blank: int
    leaked: int
    train_duplicates: int
    conflicting: int
    kept: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def clean_training_set(data: FerSplit, min_range: int = 8) -> tuple[FerSplit, CleanReport]:
    """Return the training images fit to train on, and what was dropped.

    Dropped: near-constant images (max - min < ``min_range``), training images whose
    decoded pixels also occur in the test set, every copy of a training image that
    appears under conflicting labels, and all but one copy of other duplicates.
    """
    train = data.subset("train")
    test = data.select(data.usage != "train")
    rng = train.images.reshape(len(train), -1)
    blank = (rng.max(1).astype(int) - rng.min(1).astype(int)) < min_range
    h = pixel_hashes(train.images)
    test_h = set(pixel_hashes(test.images).tolist())
    leaked = np.array([x in test_h for x in h]) & ~blank
    labels_of: dict[str, set[int]] = {}
    for x, y in zip(h, train.labels):
        labels_of.setdefault(x, set()).add(int(y))
    conflicting = np.array([len(labels_of[x]) > 1 for x in h]) & ~blank & ~leaked
    seen: set[str] = set()
    dup = np.zeros(len(train), bool)
    for i, x in enumerate(h):
        if blank[i] or leaked[i] or conflicting[i]:
            continue
        if x in seen:
            dup[i] = True
        seen.add(x)
    keep = ~(blank | leaked | conflicting | dup)
    report = CleanReport(int(blank.sum()), int(leaked.sum()), int(dup.sum()), int(conflicting.sum()), int(keep.sum()))
    return train.select(keep), report
