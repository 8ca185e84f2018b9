"""The Raspberry Pi camera through picamera2 (imported only when this source opens).

A video configuration with a ``main`` stream (BGR, for inference and display) and a
``lores`` stream; every frame is taken with ``captured_request()``, so its buffers go
back to the camera as soon as the pixels are copied out.
"""

from __future__ import annotations

import numpy as np

from emod.sources.base import Source, SourceError


class Picamera2Source(Source):
    kind = "picamera2"

    def __init__(self, spec: str = "picamera2", width: int = 640, height: int = 480, fps: float = 30.0,
                 camera_num: int = 0, factory=None):
        super().__init__(spec)
        self.size, self.want_fps, self.camera_num = (width, height), fps, camera_num
        self._factory = factory  # tests pass emod.testing.FakePicamera2

    def _open(self) -> None:
        factory = self._factory
        if factory is None:
            try:
                from picamera2 import Picamera2 as factory
            except ImportError as e:
                raise SourceError(f"picamera2 is not installed ({e}); on a Pi: apt install python3-picamera2") from None
        try:
            if not factory.global_camera_info():
                raise SourceError("picamera2 finds no camera")
            cam = factory(self.camera_num)
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
