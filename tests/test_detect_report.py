"""tools/detect_report.py: the shared media through `emod analyze --json`, summarised per detector."""

import json
import subprocess
import sys

import pytest

from _fixtures import HAMILTON, REPO

DEMO = REPO / "emod" / "data" / "demo" / "demo.mp4"  # Intel's head-pose-face-detection-male sample
PHOTO = HAMILTON.parents[1] / "photos" / "two_people.jpg"


def test_one_man_is_one_face_in_every_frame(tmp_path):
    """On the one-man head-pose clip the default detector finds exactly one face in >= 60 of 62 frames, never two."""
    if not PHOTO.is_file():
        pytest.skip(f"shared test photo {PHOTO} is absent")
    media = tmp_path / "media"
    (media / "video").mkdir(parents=True)
    (media / "photos").mkdir()
    (media / "video" / "head-pose-face-detection-male.mp4").symlink_to(DEMO)
    (media / "photos" / PHOTO.name).symlink_to(PHOTO)
    out = tmp_path / "report.json"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "detect_report.py"), "--detectors", "yunet", "--media",
                        str(media), "--json", str(out), "--annotate", str(tmp_path / "annotated")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())["detectors"]["yunet"]
    video = rep["videos"]["head-pose-face-detection-male"]
    assert video["frames"] == 62 and video["frames_with_exactly_the_people"] >= 60 and video["frames_with_2_or_more"] == 0
    assert video["detect_ms_p50"] > 0
    assert len(rep["photos"][PHOTO.stem]) == 2 and rep["photo_boxes"] == 2
    assert (tmp_path / "annotated" / "photos-yunet.png").stat().st_size > 10_000
