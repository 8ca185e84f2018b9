"""Every frame of a finite source reaches inference, or its loss is counted: no slow joiner at the start,
no silent loss at the end (issue 14, kind 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from _fixtures import Daemon, short_tmp, tiny_models, wait_for  # noqa: F401

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "media" / "photos"


def _photos(n: int) -> list[Path]:
    found = sorted(PHOTOS.glob("*.jpg"))[:n]
    if len(found) < n:
        pytest.skip(f"needs {n} photos in {PHOTOS}")
    return found


def _video(path: Path, n: int) -> Path:
    img = cv2.imread(str(_photos(1)[0]))
    img = cv2.resize(img, (320, 240))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (320, 240))
    for i in range(n):
        w.write(np.roll(img, i * 3, axis=1))
    w.release()
    return path


def _source(root: Path, kind: str) -> Path:
    if kind.endswith("folder"):
        d = root / "imgs"
        d.mkdir()
        for p in _photos(1 if kind.startswith("one") else 3):
            shutil.copy(p, d / p.name)
        return d
    return _video(root / "clip.avi", 1 if kind.startswith("one") else 12)


def _run(root: Path, models: Path, kind: str, env: dict | None = None) -> dict:
    src = _source(root, kind)
    d = Daemon(root, models, src, env=env, loop=False)
    try:
        def done():
            assert d.proc.poll() is None, d.output()
            s = d.stats()
            if not s or not s["source"]["eos"]:
                return None
            f = s["frames"]
            return s if f["processed"] + f["dropped"] >= f["captured"] else None

        return wait_for(done, 90, 0.5, "every frame to be processed or counted as dropped")
    finally:
        d.stop()


@pytest.mark.parametrize("kind", ["one-image folder", "one-frame video", "three-image folder"])
def test_every_frame_of_a_short_source_is_processed(short_tmp, tiny_models, kind) -> None:
    """A folder with one image, a one-frame video and a three-image folder give one result per frame."""
    s = _run(short_tmp, tiny_models, kind)
    n = {"one-image folder": 1, "one-frame video": 1, "three-image folder": 3}[kind]
    assert s["frames"] == {"captured": n, "processed": n, "dropped": 0}, s["frames"]


def test_frames_lost_at_full_speed_are_counted(short_tmp, tiny_models) -> None:
    """A 12-frame video played as fast as possible: every frame is either processed or counted as dropped, the last ones too."""
    s = _run(short_tmp, tiny_models, "twelve-frame video", env={"EMOD_CAPTURE_REALTIME": "false"})
    f = s["frames"]
    assert f["captured"] == 12 and f["processed"] >= 1 and f["processed"] + f["dropped"] == 12, f


class _WarmingPipeline:
    """The real pipeline, slow on its first frame (a model's warm-up) and slower than the frame rate after it."""

    def __init__(self, inner, first_s: float, then_s: float):
        self.inner, self.first_s, self.then_s, self.n = inner, first_s, then_s, 0

    @property
    def faces_dropped(self) -> int:
        return self.inner.faces_dropped

    def process(self, frame):
        import time

        t0 = time.monotonic()
        out = self.inner.process(frame)
        self.n += 1
        time.sleep(max(0.0, (self.first_s if self.n == 1 else self.then_s) - (time.monotonic() - t0)))
        return out


@pytest.mark.parametrize("n", [3, 7, 9])
def test_a_folder_source_waits_for_inference_so_no_frame_is_lost(short_tmp, tiny_models, monkeypatch, n) -> None:
    """Issue 29 kind 5: a folder of N images played at 10 frames/s into an inference stage that takes 0.6 s for its
    first frame and 0.15 s for each next one: every image is processed, none dropped (capture hands the next
    frame over once the last result is out; it used to lose the frames that came during the warm-up)."""
    import subprocess
    import time

    from _fixtures import EMOD, base_env
    from emod import config
    from emod.stages.infer import InferStage
    from test_fresh_frames import _Log

    d = short_tmp / "imgs"
    d.mkdir()
    photo = _photos(1)[0]
    for i in range(n):
        shutil.copy(photo, d / f"{i:02d}.jpg")
    monkeypatch.setenv("EMOD_MODELS_DIR", str(tiny_models))
    cfg = config.Config()
    cfg.daemon.runtime_dir, cfg.daemon.state_dir = str(short_tmp), str(short_tmp / "st")
    cfg.infer.model, cfg.infer.detector = "tiny", "haar"
    capture = subprocess.Popen([str(EMOD), "stage", "capture", "--runtime-dir", str(short_tmp), "--source", str(d)],
                               env=base_env(tiny_models), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    stage = InferStage(cfg, _Log())
    stage.setup()
    stage.pipeline = _WarmingPipeline(stage.pipeline, 0.6, 0.15)
    try:
        t_end = time.monotonic() + 60
        while stage.processed + stage.dropped < n and time.monotonic() < t_end:
            stage.step()
        for _ in range(10):  # an `end` message would count frames lost at the end
            stage.step()
    finally:
        stage.teardown()
        capture.terminate()
        capture.wait(10)
    assert (stage.processed, stage.dropped) == (n, 0)
