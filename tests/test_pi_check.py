"""make pi-check runs the install page's Pi install block word for word (less sudo and Raspberry-Pi-only packages); each release has its constraints."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import pi_check  # noqa: E402


def test_pi_check_runs_the_readme_block() -> None:
    """The chroot script is docs/install.md's Pi install block with only sudo, python3-picamera2 and the clone URL rewritten."""
    readme = (REPO / "docs" / "install.md").read_text()
    block = readme.split(pi_check.README_MARK, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = pi_check.readme_commands()
    assert commands and all(c in block for c in commands)
    assert any("pip install -c constraints/pi-" in c for c in commands)
    script = pi_check.as_chroot_script(commands).splitlines()[1:]  # after `set -ex`
    assert len(script) == len(commands)
    for readme_line, run_line in zip(commands, script):
        expected = re.sub(r"(^|&& )sudo ", r"\1", readme_line).replace(" python3-picamera2", "")
        assert run_line == expected.replace("<this repository>", pi_check.SRC)
        assert "sudo" not in run_line and "picamera2" not in run_line


def test_the_readme_gives_the_same_install() -> None:
    """README.md's Pi install in brief starts with the install page's block, line for line (one install, shown twice)."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Install on a Raspberry Pi 5", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
    page = [ln.strip() for ln in (REPO / "docs" / "install.md").read_text().split(pi_check.README_MARK, 1)[1]
            .split("```sh\n", 1)[1].split("```", 1)[0].splitlines() if ln.strip()]
    assert page and lines[:len(page)] == page


def test_every_release_has_a_constraints_file() -> None:
    """constraints/pi-RELEASE.txt exists for each release pi-check builds, and pins numpy to the system's major version."""
    for release, major in zip(pi_check.RELEASES, ("numpy<2", "numpy>=2,<3")):
        lines = [ln.strip() for ln in (REPO / "constraints" / f"pi-{release}.txt").read_text().splitlines()]
        assert major in lines, (release, lines)


def test_analyze_output_is_compared_by_file_frame_box_and_label() -> None:
    """The key pi-check compares between arm64 and x86 comes from real `emod analyze --json` output."""
    import subprocess

    shared = REPO.parent / "shared" / "media"
    photo, missing = shared / "photos" / "obama.jpg", shared / "photos" / "no-such-photo.jpg"
    out = subprocess.run([sys.executable, "-m", "emod.cli.main", "analyze", "--json", str(photo), str(missing)],
                         capture_output=True, text=True, timeout=300).stdout
    key = pi_check.analyze_key(out)
    assert key[0][:2] == ("obama.jpg", 0) and len(key[0][2]) == 1
    box, label = key[0][2][0]
    assert len(box) == 4 and label in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert key[1][:2] == ("no-such-photo.jpg", "error")
    assert pi_check.analyze_key(out) == key and pi_check.analyze_key("") == []


def test_analyze_runs_are_compared_face_by_face() -> None:
    """A box a few pixels off still pairs; a label flip counts only as a close call when x86 was unsure."""
    import json
    import subprocess

    photo = REPO.parent / "shared" / "media" / "photos" / "obama_and_biden.jpg"
    x86 = subprocess.run([sys.executable, "-m", "emod.cli.main", "analyze", "--json", str(photo)],
                         capture_output=True, text=True, timeout=300).stdout
    same = pi_check.compare_analyze(x86, x86)
    assert same["identical"] and same["ok"] and same["faces"] >= 2 and same["label_differences"] == 0

    def edit(fn) -> str:
        r = json.loads(x86)
        fn(r["frames"][0]["faces"])
        return json.dumps(r) + "\n"

    def nudge(faces):
        faces[0]["box"][0] += 2

    moved = pi_check.compare_analyze(edit(nudge), x86)
    assert moved["ok"] and not moved["identical"] and moved["min_iou"] < 1.0

    def flip_sure(faces):  # the face x86 is surest of gets another label
        f = max(faces, key=lambda f: max(f["probs"]))
        f["label"] = "angry" if f["label"] != "angry" else "sad"

    flipped = pi_check.compare_analyze(edit(flip_sure), x86)
    assert not flipped["ok"] and flipped["label_differences"] == 1 and flipped["close_calls"] == 0

    def drop(faces):
        faces.pop()

    assert not pi_check.compare_analyze(edit(drop), x86)["ok"]
