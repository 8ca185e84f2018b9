"""The Raspberry Pi camera through picamera2 (imported only when this source opens).

A video configuration with a ``main`` stream (BGR, for inference and display) and a
``lores`` stream; every frame is taken with ``captured_request()``, so its buffers go
back to the camera as soon as the pixels are copied out.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from emod.sources.base import Source, SourceError

#: What numpy-compiled extensions say when the numpy they run under is not the ABI they were built for.
NUMPY_ABI_SIGNS = ("numpy.dtype size changed", "multiarray failed to import", "_ARRAY_API not found",
                   "compiled using NumPy 1.x", "binary incompatibility")
#: The known fix: put back a numpy of the system's ABI in the venv (the Pi install's constraints file).
NUMPY_ABI_FIX = ("the venv's numpy is not the ABI apt's modules were built for: sudo .venv/bin/pip install "
                 "-c constraints/pi-$(. /etc/os-release && echo $VERSION_CODENAME).txt -e .  (in /opt/emod)")
APT_FIX = "sudo apt install -y python3-picamera2"


def is_numpy_abi_error(text: str) -> bool:
    """True when an exception text is one of numpy's binary-incompatibility messages."""
    return any(sign in text for sign in NUMPY_ABI_SIGNS)


FIX_SEP = "; fix: "


def import_fix(module: str, e: BaseException) -> str:
    """The known fix for MODULE (an apt package python3-MODULE) failing to import with E."""
    return NUMPY_ABI_FIX if is_numpy_abi_error(str(e)) else f"sudo apt install --reinstall -y python3-{module}"


def import_failure(module: str, e: BaseException) -> str:
    """One line: the module, the real exception and, after :data:`FIX_SEP`, the known fix."""
    return f"{module} is installed but fails to import: {type(e).__name__}: {e}{FIX_SEP}{import_fix(module, e)}"


def load_picamera2():
    """``picamera2.Picamera2``, or None when picamera2 is not installed.

    Raises :class:`SourceError` with the real exception (and the known fix) when picamera2 is
    installed but its import fails, e.g. ``ValueError: numpy.dtype size changed`` from
    simplejpeg when the venv's numpy is not the system's.
    """
    try:
        if importlib.util.find_spec("picamera2") is None:
            return None
        from picamera2 import Picamera2
    except Exception as e:  # any failure, not only ImportError: the numpy clash is a ValueError
        raise SourceError(import_failure("picamera2", e)) from e
    return Picamera2


class Picamera2Source(Source):
    kind = "picamera2"
    live = True

    def __init__(self, spec: str = "picamera2", width: int = 640, height: int = 480, fps: float = 30.0,
                 camera_num: int = 0, factory=None):
        super().__init__(spec)
        self.size, self.want_fps, self.camera_num = (width, height), fps, camera_num
        self._factory = factory  # tests pass emod.testing.FakePicamera2

    def _open(self) -> None:
        factory = self._factory
        if factory is None:
            factory = load_picamera2()
            if factory is None:
                raise SourceError(f"picamera2 is not installed; on a Pi: {APT_FIX}")
        try:
            cams = factory.global_camera_info()
            if not cams:
                raise SourceError("picamera2 finds no camera")
            if self.camera_num >= len(cams):
                raise SourceError(f"picamera2 has no camera {self.camera_num}: it finds "
                                  + ", ".join(f"{c.get('Num', i)}: {c.get('Model', '?')}" for i, c in enumerate(cams)))
            cam = factory(camera_num=self.camera_num)
            config = cam.create_video_configuration(
                main={"size": self.size, "format": "RGB888"},  # libcamera's RGB888 is B,G,R in memory: OpenCV order
                lores={"size": (self.size[0] // 2, self.size[1] // 2), "format": "YUV420"},
                controls={"FrameRate": self.want_fps},
            )
            cam.configure(config)
            cam.start()
        except SourceError:
            raise
        except Exception as e:
            raise SourceError(f"picamera2 camera {self.camera_num}: {e}") from e
        self.cam = cam

    def _read(self) -> np.ndarray | None:
        try:
            with self.cam.captured_request() as request:
                return np.ascontiguousarray(request.make_array("main")[:, :, :3])
        except Exception as e:
            raise SourceError(f"picamera2 capture failed: {e}") from e

    def _close(self) -> None:
        try:
            self.cam.stop()
        finally:
            self.cam.close()
