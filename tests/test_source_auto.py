"""``auto`` tells the truth: a broken picamera2 is reported with its real exception, and without a terminal no camera is a source error, never the demo clip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _fixtures import REPO, Daemon, short_tmp, tiny_models, wait_for  # noqa: F401
from emod.sources.select import demo_fallback_allowed, v4l2_devices
from emod.testing import write_fake_picamera2

# resolve_auto in a fresh interpreter (so `import picamera2` really runs), printing its outcome as JSON
PROBE = """
import json, sys
from emod.sources import select
from emod.sources.base import SourceError
select.v4l2_devices = lambda: []  # this machine's /dev/video*, if any, is not part of the case
try:
    spec, notes = select.resolve_auto(interactive=sys.argv[1] == "tty")
    print(json.dumps({"spec": spec, "notes": notes}))
except SourceError as e:
    print(json.dumps({"error": str(e)}))
"""


def _resolve(tmp: Path, mode: str | None, interactive: bool) -> dict:
    env_path = [str(REPO)]
    if mode is not None:
        write_fake_picamera2(tmp / mode, mode)
        env_path.insert(0, str(tmp / mode))
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(env_path)}
    r = subprocess.run([sys.executable, "-c", PROBE, "tty" if interactive else "service"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_demo_fallback_only_from_a_terminal() -> None:
    """The demo fallback needs a TTY on stdout or stderr and no NOTIFY_SOCKET / EMOD_UNDER_SERVICE."""
    class Stream:
        def __init__(self, tty: bool):
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    assert demo_fallback_allowed({}, [Stream(False), Stream(True)])
    assert not demo_fallback_allowed({}, [Stream(False), Stream(False)])
    assert not demo_fallback_allowed({"NOTIFY_SOCKET": "/run/systemd/notify"}, [Stream(True)])
    assert not demo_fallback_allowed({"EMOD_UNDER_SERVICE": "1"}, [Stream(True)])


def test_broken_picamera2_is_reported_with_the_real_exception(tmp_path) -> None:
    """A picamera2 failing with numpy's ABI ValueError is named with its exception and fix; a service gets a source error."""
    tty = _resolve(tmp_path, "numpy-abi", interactive=True)
    assert tty["spec"] == "demo"
    assert any("picamera2 is installed but fails to import: ValueError: numpy.dtype size changed" in n
               and "constraints/pi-" in n for n in tty["notes"]), tty
    service = _resolve(tmp_path, "numpy-abi", interactive=False)
    assert "ValueError: numpy.dtype size changed" in service["error"] and "constraints/pi-" in service["error"], service
    other = _resolve(tmp_path, "no-libcamera", interactive=False)
    assert "ModuleNotFoundError: No module named 'libcamera'" in other["error"], other
    assert "apt install --reinstall -y python3-picamera2" in other["error"]


@pytest.mark.parametrize("mode", [None, "no-camera"])
def test_no_camera_without_a_terminal_is_a_source_error(tmp_path, mode) -> None:
    """Without a TTY, no camera (picamera2 absent, or finding none) raises a SourceError instead of picking the demo clip."""
    out = _resolve(tmp_path, mode, interactive=False)
    assert "spec" not in out and out["error"].startswith("auto: no camera"), out
    assert 'source = "demo"' in out["error"]
    if mode == "no-camera":
        assert "picamera2 finds no camera" in out["error"]


def test_working_picamera2_is_chosen(tmp_path) -> None:
    """A picamera2 that imports and lists a camera is what auto opens, terminal or not."""
    assert _resolve(tmp_path, "camera", interactive=False) == {"spec": "picamera2", "notes": []}


def test_daemon_without_a_terminal_or_camera_reports_and_retries(short_tmp, tiny_models) -> None:
    """`emod run --source auto` with no TTY and no camera never plays the demo clip: capture reports the error and retries."""
    if v4l2_devices():
        pytest.fail(f"this machine has V4L2 devices {v4l2_devices()}: the case needs a machine without a camera")
    d = Daemon(short_tmp, tiny_models, "auto")
    try:
        def errored():
            assert d.proc.poll() is None, d.output()
            s = d.stats()
            return s if s and (s["source"].get("error") or "").startswith("auto: no camera") else None

        first = wait_for(errored, 60, 0.3, "the capture stage to report the missing camera")
        wait_for(lambda: d.output().count("source error, retrying") >= 3, 30, 0.3, "retries with backoff")
        s = d.stats()
        assert s["frames"]["processed"] == 0 and "demo" not in str(s["source"]["name"]), s["source"]
        assert d.proc.poll() is None and first["source"]["error"] == s["source"]["error"]
    finally:
        d.kill()
