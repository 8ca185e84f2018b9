"""Shared test fixtures: a tiny random ONNX model, short runtime directories, and a real daemon in a child process.

Import the fixtures into a test module (``from _fixtures import tiny_models, daemon_env``)
so pytest registers them there. Nothing here depends on ``/tmp/devmodels``: the model is an
untrained MobileNetV2 exported once per session, so it exercises the plumbing only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EMOD = BIN / "emod"
EMOD_STATS = BIN / "emod-stats"
HAMILTON = REPO.parent / "shared" / "media" / "video" / "short_hamilton_clip.mp4"
DEMO = REPO / "emod" / "data" / "demo" / "demo.mp4"  # bundled with the package: daemon tests need no shared media
TINY = "tiny"


def build_tiny_model(models_dir: Path, name: str = TINY) -> Path:
    """Write an untrained MobileNetV2 (1 channel, 48 px, 7 labels) as ONNX + manifest into MODELS_DIR/NAME."""
    import torch
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    from emod.models.preprocess import Preprocess
    from emod.models.registry import write_manifest
    from emod.training.export import export_onnx

    torch.manual_seed(0)
    d = Path(models_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    model = MobileNetV2ForImageClassification(MobileNetV2Config(num_channels=1, image_size=48, depth_multiplier=0.35,
                                                                num_labels=7, tf_padding=False)).eval()
    export_onnx(model, 48, 1, d / "model.onnx")
    write_manifest(d, name, "onnx", 48, Preprocess(48).as_manifest(), description="untrained test model")
    return d


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A models directory (for EMOD_MODELS_DIR) holding the untrained model ``tiny``."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root)
    return root


@pytest.fixture
def short_tmp() -> Path:
    """A short temporary directory: ipc socket paths must stay under 107 characters."""
    d = Path(tempfile.mkdtemp(prefix="emt"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def clip() -> Path:
    """The face clip the daemon tests play in a loop: the bundled demo clip (one man, 62 frames), never skipped."""
    assert DEMO.is_file(), f"the bundled demo clip {DEMO} is missing from the package"
    return DEMO


@pytest.fixture
def hamilton() -> Path:
    """The daemon tests' clip under its old name: the bundled demo clip (see :func:`clip`), not the shared media.

    It does not request ``clip`` itself, so modules that import only ``hamilton`` keep working."""
    assert DEMO.is_file(), f"the bundled demo clip {DEMO} is missing from the package"
    return DEMO


def read_video(path: Path) -> list:
    """Every frame of a video file, decoded by emod's own video source."""
    from emod.sources.video import VideoSource

    frames = []
    with VideoSource(str(path)) as video:
        while (frame := video.read()) is not None:
            frames.append(frame)
    return frames


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll PREDICATE until it returns something truthy (returned) or TIMEOUT seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def base_env(models_dir: Path, **extra: str) -> dict[str, str]:
    """os.environ with EMOD_MODELS_DIR set, quiet JSON logs, no inherited notify/emod settings, plus EXTRA."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EMOD_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update({"EMOD_MODELS_DIR": str(models_dir), "EMOD_DAEMON_LOG_FORMAT": "json", "EMOD_POWER_BACKEND": "none",
                "EMOD_DISPLAY_WINDOW": "off", "PYTHONUNBUFFERED": "1"})
    if "EMOD_FER2013" in os.environ:
        env["EMOD_FER2013"] = os.environ["EMOD_FER2013"]
    env.update(extra)
    return env


class Daemon:
    """``emod run`` in its own process group, logging to a file; :meth:`stop` or :meth:`kill` ends it."""

    def __init__(self, root: Path, models_dir: Path, source: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), tty: bool = False, loop: bool = True):
        self.rundir, self.statedir = root / "run", root / "state"
        self.log_path = root / "emod.log"
        self.log = open(self.log_path, "wb")
        self.source = source
        argv = [str(EMOD), "run", "--runtime-dir", str(self.rundir), "--state-dir", str(self.statedir),
                "--source", str(source), *(["--loop"] if loop else []), "--model", TINY, *args]
        out = self.log
        if tty:  # as from a terminal: stdout and stderr on a pseudo-terminal, copied into the log
            import pty
            import threading

            master, out = pty.openpty()
            threading.Thread(target=self._copy_pty, args=(master,), daemon=True).start()
        self.proc = subprocess.Popen(argv, env={**base_env(models_dir), **(env or {})}, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if tty:
            os.close(out)

    def _copy_pty(self, master: int) -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # every writer closed the terminal
                data = b""
            if not data:
                os.close(master)
                return
            self.log.write(data)

    def stats(self) -> dict | None:
        """The live snapshot (what ``emod-stats --json`` prints), or None while the daemon does not answer."""
        from emod.client import Client, ClientError

        try:
            return Client(self.rundir, timeout=3.0).call("stats")
        except ClientError:
            return None

    def wait_processing(self, timeout: float = 60.0) -> dict:
        """Wait until the infer stage has processed frames; the snapshot then."""
        def ready():
            assert self.proc.poll() is None, f"emod exited with {self.proc.returncode}:\n{self.output()}"
            s = self.stats()
            return s if s and s["frames"]["processed"] > 0 else None

        return wait_for(ready, timeout, 0.5, "the daemon to process frames")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM the launcher and wait for it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group (launcher and stages) and reap the launcher."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
