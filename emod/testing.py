"""Fakes of hardware tools, shipped so that users and tests can exercise emod without the hardware.

Import-light on purpose (standard library only: no numpy, no cv2).

:func:`write_fake_vcgencmd` writes a stand-in for the Raspberry Pi ``vcgencmd`` that follows
the real tool's ``pmic_read_adc`` output format; :data:`PI5_PMIC_READ_ADC` is a real capture.
:class:`FakePicamera2` stands in for ``picamera2.Picamera2`` (pass it as the picamera2
source's ``factory``); numpy is imported only when it makes a frame.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

# `vcgencmd pmic_read_adc` on a Raspberry Pi 5 Model B Rev 1.0 (2 GB), Raspberry Pi OS bookworm, four busy cores,
# as recorded in a public test suite (ml-energy/zeus). Paired rails (V x I) sum to 7.24 W.
PI5_PMIC_READ_ADC = """\
 3V7_WL_SW_A current(0)=0.09368929A
   3V3_SYS_A current(1)=0.08783370A
   1V8_SYS_A current(2)=0.18054710A
  DDR_VDD2_A current(3)=0.22543980A
  DDR_VDDQ_A current(4)=0.06666720A
   1V1_SYS_A current(5)=0.17566740A
    0V8_SW_A current(6)=0.37670900A
  VDD_CORE_A current(7)=6.22421000A
   3V3_DAC_A current(17)=0.00006105A
   3V3_ADC_A current(18)=0.00036630A
   0V8_AON_A current(16)=0.00305250A
      HDMI_A current(22)=0.02417580A
 3V7_WL_SW_V volt(8)=3.69977600V
   3V3_SYS_V volt(9)=3.31003300V
   1V8_SYS_V volt(10)=1.80512600V
  DDR_VDD2_V volt(11)=1.10476100V
  DDR_VDDQ_V volt(12)=0.60146460V
   1V1_SYS_V volt(13)=1.11025500V
    0V8_SW_V volt(14)=0.80146440V
  VDD_CORE_V volt(15)=0.86173300V
   3V3_DAC_V volt(20)=3.31318300V
   3V3_ADC_V volt(21)=3.30677300V
   0V8_AON_V volt(19)=0.80029220V
      HDMI_V volt(23)=5.08664000V
     EXT5V_V volt(24)=5.09066000V
      BATT_V volt(25)=0.00000000V
"""

_SCRIPT = """\
#!{python} -S
# Fake `vcgencmd` written by emod.testing.write_fake_vcgencmd: follows the real tool's output format.
import sys, time
if sys.argv[1:] != ["pmic_read_adc"]:
    print("error=1 error_msg=\\"Command not registered\\"", file=sys.stderr)
    sys.exit(1)
time.sleep({sleep!r})
sys.stdout.write({output!r})
sys.stdout.flush()
sys.exit({exit_code!r})
"""


def write_fake_vcgencmd(dir: str | Path, output_text: str = PI5_PMIC_READ_ADC, exit_code: int = 0,
                        sleep: float = 0, name: str = "vcgencmd") -> Path:
    """Write an executable fake ``vcgencmd`` into DIR and return its path.

    Run as ``vcgencmd pmic_read_adc`` it waits SLEEP seconds, prints OUTPUT_TEXT exactly
    (default: the real capture :data:`PI5_PMIC_READ_ADC`) and exits with EXIT_CODE; any
    other command fails like the real tool does for an unknown command. It is one Python
    process (no children), so killing it on a timeout closes its output at once.
    """
    path = Path(dir) / name
    python = sys.executable if sys.executable and not any(c.isspace() for c in sys.executable) else "/usr/bin/env python3"
    path.write_text(_SCRIPT.format(python=python, sleep=float(sleep), output=output_text,
                                   exit_code=int(exit_code)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# --- picamera2 -------------------------------------------------------------------------------------------------
# What `Picamera2.global_camera_info()` reports for a Camera Module 3 on a Raspberry Pi 5 (CAM/DISP 1 port).
IMX708_INFO = {"Model": "imx708", "Location": 2, "Rotation": 180,
               "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a", "Num": 0}
# ... and an HQ camera on the other connector (CAM/DISP 0): a Pi 5 with two cameras lists both, numbered in order.
IMX477_INFO = {"Model": "imx477", "Location": 2, "Rotation": 0,
               "Id": "/base/axi/pcie@120000/rp1/i2c@80000/imx477@1a", "Num": 1}

_RGB_FORMATS = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4}
_YUV_FORMATS = ("YUV420", "YVU420")


def _align(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class FakeRequest:
    """A completed request of :class:`FakePicamera2`: holds one of the camera's buffers until :meth:`release`."""

    def __init__(self, cam: "FakePicamera2", sequence: int):
        self.picam2, self.sequence = cam, sequence
        self.config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in cam.camera_config.items()}
        self.ref_count = 1

    def acquire(self) -> None:
        """Take one more reference (the buffer goes back only when every reference is released)."""
        if self.ref_count == 0:
            raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
        self.ref_count += 1

    def release(self) -> None:
        """Give the buffer back to the camera once the last reference is released."""
        self.ref_count -= 1
        if self.ref_count < 0:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        if self.ref_count == 0:
            self.picam2._returned(self)

    def get_metadata(self) -> dict:
        """The request's metadata, with the keys real captures carry."""
        duration = self.picam2.frame_duration_us
        return {"SensorTimestamp": self.sequence * duration * 1000, "FrameDuration": duration,
                "ExposureTime": min(duration, 20000), "AnalogueGain": 1.0, "DigitalGain": 1.0, "Lux": 400.0}

    def make_buffer(self, name: str):
        """The named stream's pixels as a 1-D uint8 array, stride padding included (a copy)."""
        if self.ref_count <= 0:
            raise RuntimeError("request already released: its buffers belong to the camera again")
        stream = self.config.get(name)
        if not isinstance(stream, dict):
            raise RuntimeError(f"Stream {name!r} is not defined")
        return self.picam2._render(stream, self.sequence).reshape(-1)

    def make_array(self, name: str):
        """The named stream as picamera2 shapes it: (H, W, 3) for RGB888/BGR888, (H, W, 4) for XRGB8888/XBGR8888,
        (H * 3 // 2, stride) for YUV420, (H, stride) for raw."""
        buf = self.make_buffer(name)
        stream = self.config[name]
        fmt, (w, h), stride = stream["format"], stream["size"], stream["stride"]
        if fmt in _RGB_FORMATS:
            c = _RGB_FORMATS[fmt]
            return buf.reshape(h, stride)[:, : w * c].copy().reshape(h, w, c)
        if fmt in _YUV_FORMATS:
            return buf.reshape(h * 3 // 2, stride)
        return buf.reshape(h, stride)  # raw


class FakePicamera2:
    """A stand-in for ``picamera2.Picamera2`` with the API surface emod's picamera2 source uses.

    It follows the real library: ``global_camera_info()`` lists :attr:`CAMERAS`; opening a
    camera number that does not exist, or one already open, raises ``RuntimeError``;
    ``create_video_configuration(main=, lores=, controls=)`` returns the real dict (``use_case``,
    ``buffer_count`` 6, ``main``/``lores``/``raw``/``controls``/``display``/``encode``...), and
    ``configure()`` checks it as the real one does (even sizes, lores YUV and no larger than
    main, a stopped camera) and fills in each stream's ``stride`` and ``framesize``.
    ``captured_request()`` yields a request whose ``make_array(stream)`` gives the real shapes
    and byte orders (libcamera ``RGB888`` is B, G, R in memory, which is OpenCV's order; the
    ``X...8888`` formats carry a 4th byte; ``YUV420`` is (H * 3 / 2, stride) with stride the
    width rounded up to 64) and releases it on exit. Holding more than ``buffer_count``
    requests raises, because the real pipeline would stall. :attr:`outstanding` counts held ones.

    Frames show a moving bright square on a gradient (deterministic per frame), or
    :attr:`IMAGE` (a BGR uint8 array, resized by nearest neighbour) when a variant sets it.
    Make per-test variants with :meth:`variant`; each variant has its own open-camera state
    and :attr:`instances`.

        cam_cls = FakePicamera2.variant(cameras=[])           # no camera attached
        cam_cls = FakePicamera2.variant(capture_error=OSError("dma heap exhausted"))
        source = Picamera2Source(factory=cam_cls)

    Standard library only at import; numpy is imported when a frame is made.
    """

    CAMERAS: tuple[dict, ...] = (IMX708_INFO,)
    SENSOR_RESOLUTION = (4608, 2592)
    SENSOR_FORMAT = "SRGGB10_CSI2P"
    IMAGE = None
    capture_error: BaseException | None = None
    instances: list = []
    _open_nums: set = set()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.instances, cls._open_nums = [], set()

    @classmethod
    def variant(cls, cameras=None, capture_error: BaseException | None = None, image=None) -> type:
        """A subclass with other cameras (a list of info dicts; [] for none), a capture error, or a fixed IMAGE."""
        attrs: dict = {}
        if cameras is not None:
            attrs["CAMERAS"] = tuple(dict(c) for c in cameras)
        if capture_error is not None:
            attrs["capture_error"] = capture_error
        if image is not None:
            attrs["IMAGE"] = image
        return type(cls.__name__, (cls,), attrs)

    @classmethod
    def global_camera_info(cls) -> list[dict]:
        """One dict per attached camera (Model, Location, Rotation, Id, Num), ordered by camera number."""
        return [dict(c, Num=i) for i, c in enumerate(cls.CAMERAS)]

    def __init__(self, camera_num: int = 0, verbose_console=None, tuning=None):
        cams = self.global_camera_info()
        if not cams:
            raise RuntimeError("Camera(s) not found (Do not forget to disable legacy camera with raspi-config).")
        if not isinstance(camera_num, int) or not 0 <= camera_num < len(cams):
            raise RuntimeError("Camera __init__ sequence did not complete.")
        if camera_num in type(self)._open_nums:
            raise RuntimeError(f"Failed to acquire camera {cams[camera_num]['Id']}: Device or resource busy")
        type(self)._open_nums.add(camera_num)
        type(self).instances.append(self)
        self.camera_idx = camera_num
        info = cams[camera_num]
        self.camera_properties = {"Model": info["Model"], "Location": info.get("Location"), "Rotation": info.get("Rotation"),
                                  "PixelArraySize": self.SENSOR_RESOLUTION, "ColorFilterArrangement": 0}
        self.sensor_resolution, self.sensor_format = self.SENSOR_RESOLUTION, self.SENSOR_FORMAT
        self.is_open, self.started = True, False
        self.camera_config: dict | None = None
        self.configure_count = self.stop_count = 0
        self.frames = 0  # requests handed out
        self.outstanding = 0  # requests handed out and not yet released
        self.frame_duration_us = 33333

    # --- configuration ----------------------------------------------------------------------------------------
    @staticmethod
    def _stream(defaults: dict, updates, ignore: tuple = ()) -> dict | None:
        if updates is None:
            return None
        out = dict(defaults)
        for key, value in dict(updates).items():
            if key in ("format", "size"):
                out[key] = value
            elif key not in ignore:
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are ('format', 'size')")
        if isinstance(out.get("size"), (tuple, list)) and len(out["size"]) == 2:
            w, h = out["size"]
            out["size"] = (int(w) - int(w) % 2, int(h) - int(h) % 2)  # align_stream(optimal=False)
        return out

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=None, colour_space=None,  # noqa: B006 (picamera2's signature)
                                   buffer_count=6, controls={}, display="main", encode="main", queue=True) -> dict:
        """Make a configuration suitable for video recording (picamera2's defaults: XBGR8888 1280x720, 6 buffers)."""
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main = self._stream({"format": "XBGR8888", "size": (1280, 720)}, main)
        lores = self._stream({"format": "YUV420", "size": main["size"]}, lores)
        raw = self._stream({"format": self.sensor_format, "size": main["size"]}, raw,
                           ("bit_depth", "crop_limits", "exposure_limits", "fps", "unpacked"))
        if colour_space is None:
            colour_space = "Smpte170m" if main["size"][0] < 1280 or main["size"][1] < 720 else "Rec709"
        config = {"use_case": "video", "transform": transform if transform is not None else {"hflip": 0, "vflip": 0},
                  "colour_space": colour_space, "buffer_count": buffer_count, "queue": queue, "main": main,
                  "lores": lores, "raw": raw,
                  "controls": {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)} | dict(controls)}
        for role, name in (("Display", display), ("Encode", encode)):
            if name is not None and config.get(name) is None:
                raise RuntimeError(f"{role} stream {name} was not defined")
        config["display"], config["encode"] = display, encode
        return config

    def _check_stream(self, stream, name: str) -> None:
        if type(stream) is not dict:
            raise RuntimeError(name + " stream should be a dictionary")
        for key in ("format", "size"):
            if key not in stream:
                raise RuntimeError(f"{key} not found in {name} stream")
        fmt, size = stream["format"], stream["size"]
        if name == "raw":
            return
        if fmt not in _RGB_FORMATS and fmt not in _YUV_FORMATS:
            raise RuntimeError(f"Bad format {fmt} in stream {name}")
        if type(size) is not tuple or len(size) != 2:
            raise RuntimeError("size in " + name + " stream should be (width, height)")
        if size[0] % 2 or size[1] % 2 or size[0] <= 0 or size[1] <= 0:
            raise RuntimeError("width and height should be even")

    def configure(self, camera_config: dict) -> None:
        """Check and apply a configuration; fills in each stream's stride and framesize (camera must be stopped)."""
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        for key in ("colour_space", "transform", "main", "lores", "raw"):
            if key not in camera_config:
                raise RuntimeError(f"{key!r} key expected in camera configuration")
        self._check_stream(camera_config["main"], "main")
        lores = camera_config["lores"]
        if lores is not None:
            self._check_stream(lores, "lores")
            (mw, mh), (lw, lh) = camera_config["main"]["size"], lores["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lores["format"] not in _YUV_FORMATS:
                raise RuntimeError("lores stream must be YUV")
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in camera_config.items()}
        for name in ("main", "lores", "raw"):
            s = config[name]
            if s is None:
                continue
            w, h = s["size"]
            if name == "raw":  # unpacked 16-bit Bayer rows, as far as the fake goes
                s["stride"] = _align(w * 2, 64)
                s["framesize"] = s["stride"] * h
            elif s["format"] in _RGB_FORMATS:
                s["stride"] = _align(w * _RGB_FORMATS[s["format"]], 64)
                s["framesize"] = s["stride"] * h
            else:
                s["stride"] = _align(w, 64)
                s["framesize"] = s["stride"] * h * 3 // 2
        ctl = config.get("controls") or {}
        if ctl.get("FrameRate"):
            self.frame_duration_us = int(1e6 / float(ctl["FrameRate"]))
        elif ctl.get("FrameDurationLimits"):
            self.frame_duration_us = int(ctl["FrameDurationLimits"][0])
        self.camera_config = config
        self.configure_count += 1

    # --- running ----------------------------------------------------------------------------------------------
    def start(self, config=None, show_preview=False) -> None:
        """Start the camera (configuring it first when CONFIG is given)."""
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        """Stop the camera; requests still held are not recycled."""
        if self.started:
            self.started = False
            self.stop_count += 1

    def close(self) -> None:
        """Stop and release the camera (a second close does nothing)."""
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        type(self)._open_nums.discard(self.camera_idx)
        self.camera_config = None

    def __enter__(self) -> "FakePicamera2":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def capture_request(self, wait=None, flush=None) -> FakeRequest:
        """The next completed request; the caller must ``release()`` it."""
        if self.capture_error is not None:
            raise self.capture_error
        if not self.started:
            raise RuntimeError("Camera is not started: no request can complete")
        if self.outstanding >= self.camera_config["buffer_count"]:
            raise RuntimeError(f"all {self.camera_config['buffer_count']} buffers are held by the application: "
                               "the camera pipeline would stall (release your requests)")
        self.frames += 1
        self.outstanding += 1
        return FakeRequest(self, self.frames)

    def captured_request(self, wait=None, flush=None):
        """Context manager: a completed request, released on exit (as ``Picamera2.captured_request``)."""
        from contextlib import contextmanager

        @contextmanager
        def held():
            request = self.capture_request(wait, flush)
            try:
                yield request
            finally:
                request.release()

        return held()

    def _returned(self, request: FakeRequest) -> None:
        self.outstanding -= 1

    # --- pixels -----------------------------------------------------------------------------------------------
    def _scene(self, w: int, h: int, n: int):
        """RGB uint8 (h, w, 3): IMAGE, or a gradient with a bright square moving with frame number N."""
        import numpy as np

        if self.IMAGE is not None:
            img = np.asarray(self.IMAGE, np.uint8)
            ys = np.arange(h) * img.shape[0] // h
            xs = np.arange(w) * img.shape[1] // w
            img = img[ys][:, xs]
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            return img[:, :, ::-1]  # IMAGE is BGR
        rgb = np.empty((h, w, 3), np.uint8)
        rgb[:, :, 0] = (np.arange(w) * 255 // max(1, w - 1)).astype(np.uint8)[None, :]
        rgb[:, :, 1] = (np.arange(h) * 255 // max(1, h - 1)).astype(np.uint8)[:, None]
        rgb[:, :, 2] = 64 + 128 * (self.camera_idx % 2)  # camera 1's picture is bluer: two cameras are told apart
        side = max(2, min(w, h) // 6)
        x0 = (n * 7) % max(1, w - side)
        y0 = (n * 3) % max(1, h - side)
        rgb[y0 : y0 + side, x0 : x0 + side] = 255
        return rgb

    def _render(self, stream: dict, n: int):
        """One stream's buffer as libcamera lays it out: rows of ``stride`` bytes (padding zero)."""
        import numpy as np

        fmt, (w, h), stride = stream["format"], stream["size"], stream["stride"]
        rgb = self._scene(w, h, n)
        if fmt not in _RGB_FORMATS and fmt not in _YUV_FORMATS:  # raw: 16-bit little-endian grey levels
            buf = np.zeros((h, stride), np.uint8)
            buf[:, 1 : 2 * w : 2] = rgb.mean(axis=2).astype(np.uint8) >> 6
            buf[:, 0 : 2 * w : 2] = (rgb.mean(axis=2).astype(np.uint16) << 2).astype(np.uint8)
            return buf
        if fmt in _RGB_FORMATS:
            order = {"RGB888": [2, 1, 0], "BGR888": [0, 1, 2], "XRGB8888": [2, 1, 0], "XBGR8888": [0, 1, 2]}[fmt]
            px = rgb[:, :, order]
            if _RGB_FORMATS[fmt] == 4:
                px = np.concatenate([px, np.full((h, w, 1), 255, np.uint8)], axis=2)
            buf = np.zeros((h, stride), np.uint8)
            buf[:, : w * px.shape[2]] = px.reshape(h, -1)
            return buf
        r, g, b = (rgb[:, :, i].astype(np.float32) for i in range(3))  # BT.601 limited range, as the ISP's SMPTE 170M
        y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
        u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
        v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
        buf = np.zeros((h * 3 // 2, stride), np.uint8)
        buf[:h, :w] = np.clip(y, 0, 255).astype(np.uint8)
        u2 = np.clip(u[::2, ::2], 0, 255).astype(np.uint8)
        v2 = np.clip(v[::2, ::2], 0, 255).astype(np.uint8)
        if fmt == "YVU420":
            u2, v2 = v2, u2
        chroma = buf[h:].reshape(-1)  # U plane then V plane, each (h/2) rows of stride/2 bytes
        half = stride // 2
        for k, plane in enumerate((u2, v2)):
            block = np.zeros((h // 2, half), np.uint8)
            block[:, : w // 2] = plane
            chroma[k * (h // 2) * half : (k + 1) * (h // 2) * half] = block.reshape(-1)
        buf[h:] = chroma.reshape(h // 2, stride)
        return buf


# --- picamera2 as an installed package, in its failure modes -----------------------------------------------------
#: What ``write_fake_picamera2`` can make ``import picamera2`` do.
PICAMERA2_MODES = ("camera", "two-cameras", "no-camera", "numpy-abi", "no-libcamera")

_PICAMERA2_PACKAGE = {
    "camera": "from emod.testing import FakePicamera2 as _Fake\n\nPicamera2 = _Fake.variant()\n",
    "no-camera": "from emod.testing import FakePicamera2 as _Fake\n\nPicamera2 = _Fake.variant(cameras=[])\n",
    "two-cameras": "from emod.testing import IMX477_INFO, IMX708_INFO, FakePicamera2 as _Fake\n\n"
                   "Picamera2 = _Fake.variant(cameras=[IMX708_INFO, IMX477_INFO])\n",
    # picamera2 imports simplejpeg, compiled against the system numpy; under a numpy 2 venv it raises this
    # (raspberrypi/picamera2 issues #1088, #1170, #1211)
    "numpy-abi": "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility. "
                 "Expected 96 from C header, got 88 from PyObject')\n",
    # pip's picamera2 without apt's python3-libcamera: the real ModuleNotFoundError
    "no-libcamera": "import libcamera  # noqa: F401\n",
}


def write_fake_picamera2(dir: str | Path, mode: str = "camera") -> Path:
    """Write an importable ``picamera2`` package into DIR (put DIR on PYTHONPATH); returns its folder.

    ``camera``: ``picamera2.Picamera2`` is a :class:`FakePicamera2` with one IMX708; ``two-cameras``: an
    IMX708 (camera 0) and an IMX477 (camera 1), as a Pi 5 with both connectors used; ``no-camera``:
    none attached; ``numpy-abi``: the import fails as picamera2's does when the venv's numpy is
    not the system's; ``no-libcamera``: the import fails for want of libcamera's bindings.
    """
    if mode not in _PICAMERA2_PACKAGE:
        raise ValueError(f"unknown picamera2 mode {mode!r}; expected one of {', '.join(PICAMERA2_MODES)}")
    pkg = Path(dir) / "picamera2"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(f'"""A stand-in for picamera2 written by emod.testing ({mode})."""\n'
                                     + _PICAMERA2_PACKAGE[mode])
    return pkg


# --- a network camera ------------------------------------------------------------------------------------------
class MjpegServer:
    """A stand-in for an IP camera: an HTTP MJPEG stream (``multipart/x-mixed-replace``) on 127.0.0.1.

    It sends ``jpegs`` in turn (one JPEG's bytes each, or one repeated: a frozen camera) at
    ``fps``; after ``stall_after`` frames it keeps the connection open and sends nothing more
    (a stalled stream) until :meth:`resume`. ``url`` is the stream's address; :meth:`close` stops it.
    Standard library only.
    """

    BOUNDARY = b"emodframe"

    def __init__(self, jpegs: list[bytes], fps: float = 10.0, stall_after: int | None = None):
        import http.server
        import threading

        self.jpegs, self.fps, self.stall_after = list(jpegs), fps, stall_after
        self.sent = 0
        self.connections = 0
        self._resume = threading.Event()
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                import time

                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + server.BOUNDARY.decode())
                self.end_headers()
                n = 0
                try:
                    while not server._stop.is_set():
                        if server.stall_after is not None and n >= server.stall_after and not server._resume.is_set():
                            server._stop.wait(0.1)  # connected, silent
                            continue
                        jpeg = server.jpegs[n % len(server.jpegs)]
                        self.wfile.write(b"--" + server.BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        self.wfile.flush()
                        n += 1
                        server.sent += 1
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()

    def resume(self) -> None:
        """End the stall: send frames again (on this and every later connection)."""
        self._resume.set()

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
