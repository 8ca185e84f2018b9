#!/usr/bin/env python3
"""Carry what tools/train.py needs to another machine (a rented GPU, say) in one small file.

``pack`` keeps the cleaned training images (:func:`emod.datasets.fer2013.clean_training_set`:
blank, duplicate and leaked images are left behind) and PublicTest, as the original
files' bytes (nothing re-encoded: each image decodes to the same pixels there), with
their rows of the FER+ vote file and its licence. PrivateTest stays home unless
``--with-private``: train there, then report PrivateTest here with tools/evaluate.py.
``unpack`` writes the FER2013 folder layout back, which ``train.py --data`` reads.

    python tools/fer_bundle.py pack fer-bundle.npz                  # about 50 MB
    python tools/fer_bundle.py unpack fer-bundle.npz /tmp/fer2013   # on the other machine
    python tools/train.py --data /tmp/fer2013 --labels ferplus --device cuda --out runs/gpu --epochs 300 --time-budget 8

Errors (a missing data folder, a bundle that is not one, an unpack folder that is not
empty) exit 2 with the reason.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import lzma
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emod.cli.argtypes import plain  # noqa: E402

import numpy as np

from emod.datasets import fer2013, ferplus
from emod.labels import LABELS

REPO = Path(__file__).resolve().parents[1]

FORMAT = "emod-fer-bundle/1"


def pack(root: Path, out: Path, with_private: bool = False, cache_dir: Path | None = REPO / ".cache") -> dict:
    """Write the bundle; returns what it holds (image counts per usage, vote rows)."""
    data = fer2013.load(root, cache_dir=cache_dir)
    train, _ = fer2013.clean_training_set(data)
    usages = ("public", "private") if with_private else ("public",)
    names = train.names.tolist() + data.subset(*usages).names.tolist()
    blobs = [(root / n).read_bytes() for n in names]
    arrays = {"blob": np.frombuffer(b"".join(blobs), np.uint8), "offsets": np.cumsum([0] + [len(b) for b in blobs]),
              "names": np.frombuffer("\n".join(names).encode(), np.uint8)}
    held = {"train": len(train), **{u: int((data.usage == u).sum()) for u in usages}, "vote_rows": 0}
    votes = root / ferplus.VOTES_FILE
    if votes.is_file():  # the rows of the packed images only (train.py joins strictly by path), and the licence
        want = set(names)
        with open(votes, newline="") as f:
            rows = list(csv.reader(f))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([rows[0]] + [r for r in rows[1:] if r and r[0] in want])
        arrays["votes_xz"] = np.frombuffer(lzma.compress(buf.getvalue().encode()), np.uint8)
        held["vote_rows"] = buf.getvalue().count("\n") - 1
        for extra in ("LICENSE.md", "README.txt"):
            if (votes.parent / extra).is_file():
                arrays[f"ferplus_{extra}"] = np.frombuffer((votes.parent / extra).read_bytes(), np.uint8)
    arrays["meta"] = np.frombuffer(json.dumps({"format": FORMAT, "source": str(root), "held": held}).encode(), np.uint8)
    with open(out, "wb") as f:  # np.savez would add .npz to a name without it
        np.savez(f, **arrays)
    return held


def unpack(bundle: Path, dest: Path) -> dict:
    """Write the FER2013 folder layout (and ``ferplus/``) under ``dest``; returns the bundle's counts."""
    if not bundle.is_file():
        raise ValueError(f"{bundle}: no such file")
    not_bundle = f"{bundle} is not a fer_bundle.py bundle (an .npz file written by 'pack')"
    try:
        z = np.load(bundle, allow_pickle=False)
        meta = json.loads(z["meta"].tobytes())
        names = z["names"].tobytes().decode().split("\n")
        blob, offsets = z["blob"].tobytes(), z["offsets"]
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError, zipfile.BadZipFile):
        raise ValueError(not_bundle) from None  # (numpy's own message would suggest unpickling)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{not_bundle}: format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    bad = [n for n in names if Path(n).is_absolute() or ".." in Path(n).parts or len(Path(n).parts) != 3]
    if bad or len(offsets) != len(names) + 1:
        raise ValueError(f"{not_bundle}: {len(bad)} image name(s) outside split/class/file, e.g. {bad[:1]}")
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty")
    for i, name in enumerate(names):
        p = dest / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(blob[offsets[i] : offsets[i + 1]])
    for label in LABELS:  # the loader wants every class folder, even one a split has no image in
        for split in ("train", "test"):
            (dest / split / label).mkdir(parents=True, exist_ok=True)
    if "votes_xz" in z.files:
        (dest / ferplus.VOTES_FILE).parent.mkdir(parents=True, exist_ok=True)
        (dest / ferplus.VOTES_FILE).write_bytes(lzma.decompress(z["votes_xz"].tobytes()))
        for extra in ("LICENSE.md", "README.txt"):
            if f"ferplus_{extra}" in z.files:
                (dest / "ferplus" / extra).write_bytes(z[f"ferplus_{extra}"].tobytes())
    return meta["held"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="write a bundle of the cleaned training images, PublicTest and their votes")
    pk.add_argument("out", type=Path)
    pk.add_argument("--data", type=Path, default=None, help="FER2013 folder (default: $EMOD_FER2013 or ../shared/data/fer2013)")
    pk.add_argument("--cache", type=Path, default=REPO / ".cache", help="decoded-FER2013 cache directory (default: .cache)")
    pk.add_argument("--with-private", action="store_true", help="also carry PrivateTest (train.py then reports it there)")
    up = sub.add_parser("unpack", help="write the bundle back as a FER2013 folder")
    up.add_argument("bundle", type=Path)
    up.add_argument("dest", type=Path)
    a = p.parse_args(argv)
    try:
        if a.cmd == "pack":
            root = a.data if a.data is not None else fer2013.default_root()
            if not (root / "train").is_dir():
                raise ValueError(f"no FER2013 folder at {root} (expected {root / 'train'})")
            held = pack(root, a.out, a.with_private, a.cache)
            print(f"{a.out}: {a.out.stat().st_size / 1e6:.1f} MB, {json.dumps(held)}")
        else:
            held = unpack(a.bundle, a.dest)
            print(f"{a.dest}: {json.dumps(held)}")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
