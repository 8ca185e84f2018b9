"""tools/fer_bundle.py: the training data carried to another machine, byte for byte, and nothing else."""

from __future__ import annotations

import csv
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from test_package import _tool

from emod.datasets import fer2013, ferplus
from emod.labels import LABELS


def _folder(root) -> dict[str, list[str]]:
    """2 training images per class plus a blank one, a duplicate and one leaked into PublicTest; 1 PublicTest
    and 1 PrivateTest per class; a vote file with a row per image and a licence. Returns the names by role."""
    rng = np.random.default_rng(1)
    roles: dict[str, list[str]] = {"kept": [], "dropped": [], "public": [], "private": []}

    def put(name, img, role):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), img)
        roles[role].append(name)

    for label in LABELS:
        for i in range(2):
            put(f"train/{label}/Training_{i}.png", rng.integers(0, 256, (48, 48), dtype=np.uint8), "kept")
        put(f"test/{label}/PublicTest_0.png", rng.integers(0, 256, (48, 48), dtype=np.uint8), "public")
        put(f"test/{label}/PrivateTest_0.png", rng.integers(0, 256, (48, 48), dtype=np.uint8), "private")
    put("train/happy/Training_blank.png", np.full((48, 48), 128, np.uint8), "dropped")
    put("train/happy/Training_dup.png", cv2.imread(str(root / "train/happy/Training_0.png"), cv2.IMREAD_GRAYSCALE), "dropped")
    put("train/sad/Training_leak.png", cv2.imread(str(root / "test/sad/PublicTest_0.png"), cv2.IMREAD_GRAYSCALE), "dropped")
    (root / "ferplus").mkdir()
    with open(root / ferplus.VOTES_FILE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "Usage", *ferplus.VOTE_COLUMNS])
        for names in roles.values():
            for n in names:
                w.writerow([n, "x", *([10] + [0] * 9)])
    (root / "ferplus" / "LICENSE.md").write_text("MIT (test)\n")
    return roles


def test_pack_then_unpack_gives_the_cleaned_images_byte_for_byte_and_their_votes(tmp_path, capsys) -> None:
    src, dest, bundle = tmp_path / "src", tmp_path / "dest", tmp_path / "b.npz"
    roles = _folder(src)
    tool = _tool("fer_bundle")
    assert tool.main(["pack", str(bundle), "--data", str(src), "--cache", str(tmp_path / "c")]) == 0
    assert tool.main(["unpack", str(bundle), str(dest)]) == 0
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.png"))
    want = roles["kept"] + roles["public"]
    assert got == sorted(want)  # no blank, duplicate or leaked image, and PrivateTest stays home
    assert all((dest / n).read_bytes() == (src / n).read_bytes() for n in want)
    assert (dest / "ferplus" / "LICENSE.md").read_text() == "MIT (test)\n"
    data = fer2013.load(dest)  # the folder train.py reads: every vote row names an image (strict join)
    joined = ferplus.load(dest, data.names)
    assert joined.has_votes.all() and len(data.names) == len(want)
    assert '"train": 14' in capsys.readouterr().out

    assert tool.main(["pack", str(bundle), "--data", str(src), "--with-private", "--cache", str(tmp_path / "c")]) == 0
    dest2 = tmp_path / "dest2"
    assert tool.main(["unpack", str(bundle), str(dest2)]) == 0
    assert (dest2 / roles["private"][0]).read_bytes() == (src / roles["private"][0]).read_bytes()


def test_bad_inputs_exit_2_with_the_reason(tmp_path, capsys) -> None:
    tool = _tool("fer_bundle")
    assert tool.main(["pack", str(tmp_path / "b.npz"), "--data", str(tmp_path / "nowhere")]) == 2
    assert "no FER2013 folder" in capsys.readouterr().err
    (tmp_path / "junk.npz").write_bytes(b"not a bundle")
    assert tool.main(["unpack", str(tmp_path / "junk.npz"), str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "is not a fer_bundle.py bundle" in err and "pickle" not in err
    assert tool.main(["unpack", str(tmp_path / "missing.npz"), str(tmp_path / "d")]) == 2
    assert "missing.npz: no such file" in capsys.readouterr().err
    np.save(tmp_path / "array.npy", np.zeros(3))  # an array file, and bundles whose contents are not what pack writes
    assert tool.main(["unpack", str(tmp_path / "array.npy"), str(tmp_path / "d")]) == 2
    meta = np.frombuffer(b'{"format": "emod-fer-bundle/1", "source": "x", "held": {}}', np.uint8)
    for name, fields in (("list.npz", {"meta": np.frombuffer(b"[1]", np.uint8)}),
                         ("escape.npz", {"meta": meta, "names": np.frombuffer(b"../../escaped.png", np.uint8),
                                         "blob": np.zeros(4, np.uint8), "offsets": np.array([0, 4])})):
        with open(tmp_path / name, "wb") as f:
            np.savez(f, **fields)
        assert tool.main(["unpack", str(tmp_path / name), str(tmp_path / "d" / "e")]) == 2
        assert "is not a fer_bundle.py bundle" in capsys.readouterr().err
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "d").exists()
    _folder(tmp_path / "src")
    assert tool.main(["pack", str(tmp_path / "b.npz"), "--data", str(tmp_path / "src"), "--cache", str(tmp_path / "c")]) == 0
    (tmp_path / "full").mkdir(); (tmp_path / "full" / "x").write_text("keep me")
    assert tool.main(["unpack", str(tmp_path / "b.npz"), str(tmp_path / "full")]) == 2
    assert "is not empty" in capsys.readouterr().err and (tmp_path / "full" / "x").read_text() == "keep me"


def _load_into(root: str, cache: str) -> int:
    return len(fer2013.load(Path(root), cache_dir=Path(cache)).names)


def test_processes_starting_together_share_one_cache_without_clashing(tmp_path) -> None:
    """Runs that tools/sweep.py starts at once each decode the folder and write the same cache file."""
    rng = np.random.default_rng(2)
    for label in LABELS:
        for split, stem in [("train", f"Training_{i}") for i in range(80)] + [("test", "PublicTest_0")]:
            (tmp_path / "fer" / split / label).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "fer" / split / label / f"{stem}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        sizes = list(pool.map(_load_into, [str(tmp_path / "fer")] * 4, [str(tmp_path / "cache")] * 4))
    assert sizes == [81 * len(LABELS)] * 4
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [next((tmp_path / "cache").glob("fer2013-*.npz")).name]
