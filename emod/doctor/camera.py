"""``emod doctor``'s camera checks: picamera2 (with the real exception) and the cameras this user can open."""

from __future__ import annotations

import os
from pathlib import Path

from emod.doctor import Context, Result, fail, ok, warn
from emod.sources.picamera2 import APT_FIX, FIX_SEP, load_picamera2
from emod.sources.spec import picamera2_number


def _is_pi() -> bool:
    try:
        return "Raspberry Pi" in Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        return False


def _picamera2() -> tuple[object | None, str | None, str | None]:
    """(Picamera2 class or None, problem, fix)."""
    from emod.sources.base import SourceError

    try:
        return load_picamera2(), None, None
    except SourceError as e:
        verdict, _, fix = str(e).partition(FIX_SEP)
        return None, verdict, fix or None


def _wanted_camera(source: str) -> int | None:
    """The picamera2 camera number SOURCE asks for (``picamera2:N``; ``picamera2`` is 0), else None."""
    try:
        return picamera2_number(source)
    except ValueError:
        return None


def check_picamera2(ctx: Context) -> Result:
    """picamera2 imports, and lists its cameras with their numbers (``--source picamera2:N`` opens camera N)."""
    factory, problem, fix = _picamera2()
    source = ctx.cfg.capture.source
    num = _wanted_camera(source)
    wanted = num is not None or source == "auto"
    if problem:
        return fail(problem, fix)
    if factory is None:
        if num is not None:
            return fail(f"picamera2 is not installed, and [capture] source = \"{source}\"", APT_FIX)
        if _is_pi():
            return warn("picamera2 is not installed: the Pi camera cannot be used", APT_FIX + " (then a venv with --system-site-packages)")
        return ok("picamera2 is not installed (only needed for a Raspberry Pi camera)")
    try:
        cams = factory.global_camera_info()
    except Exception as e:
        return fail(f"picamera2 imports but cannot list cameras: {type(e).__name__}: {e}",
                    "check the cable and `rpicam-hello --list-cameras`; " + APT_FIX)
    if not cams:
        res = fail if num is not None else warn
        return res("picamera2 imports but finds no camera", "check the ribbon cable and `rpicam-hello --list-cameras`",
                   cameras=[])
    names = ", ".join(f"{c.get('Num', i)}: {c.get('Model', '?')}" for i, c in enumerate(cams))
    listed = [{k: v for k, v in c.items() if isinstance(v, (str, int, float))} for c in cams]
    if num is not None and num >= len(cams):
        return fail(f"[capture] source = \"{source}\" but picamera2 finds camera(s) {names}",
                    f"use --source picamera2:N with N one of {', '.join(str(c.get('Num', i)) for i, c in enumerate(cams))}, "
                    "or check the second camera's ribbon cable (`rpicam-hello --list-cameras`)", cameras=listed)
    return ok(f"picamera2 imports; camera(s) {names}" + ("" if wanted else " (not used: source is " + ctx.cfg.capture.source + ")"),
              cameras=listed)


def _video_group() -> tuple[bool, bool]:
    """(group video exists, this user is in it)."""
    import grp

    try:
        gid = grp.getgrnam("video").gr_gid
    except KeyError:
        return False, False
    return True, gid in os.getgroups() or os.getgid() == gid


def check_cameras(ctx: Context) -> Result:
    from emod.sources.select import v4l2_devices

    source = ctx.cfg.capture.source
    factory, _, _ = _picamera2()
    try:
        pi_cams = factory.global_camera_info() if factory is not None else []
    except Exception:
        pi_cams = []
    devices = []
    for dev in v4l2_devices():
        name_file = Path("/sys/class/video4linux") / Path(dev).name / "name"
        try:
            name = name_file.read_text().strip()
        except OSError:
            name = "?"
        devices.append({"device": dev, "name": name, "usable": os.access(dev, os.R_OK | os.W_OK)})
    has_group, in_group = _video_group()
    details = {"picamera2": len(pi_cams), "v4l2": devices, "video_group": in_group, "source": source}
    numbered = ", ".join(f"{c.get('Num', i)}: {c.get('Model', '?')}" for i, c in enumerate(pi_cams))
    listed = f"{len(pi_cams)} picamera2 camera(s)" + (f" ({numbered})" if numbered else "") + ", V4L2: " + (", ".join(f"{d['device']} ({d['name']})" for d in devices) or "none")
    blocked = [d["device"] for d in devices if not d["usable"]]
    group_fix = "sudo usermod -aG video $USER, then log in again (the service's user gets group video from the unit)"
    if source.startswith("/dev/video"):
        if source not in [d["device"] for d in devices]:
            return fail(f"[capture] source = {source!r} does not exist; {listed}", "plug the camera in or fix [capture] source", **details)
        if source in blocked:
            return fail(f"{source} exists but this user cannot open it", group_fix, **details)
    elif (source == "auto" or _wanted_camera(source) is not None) and not pi_cams and not devices:
        return fail("no camera found (" + listed + "): the service reports a source error and retries; from a terminal "
                    "auto plays the demo clip", "connect a camera (`rpicam-hello --list-cameras`), or set [capture] "
                    "source = \"demo\" or a file", **details)
    if blocked and not (os.geteuid() == 0):
        return warn(f"{listed}; this user cannot open {', '.join(blocked)}" + ("" if in_group or not has_group else
                    " (not in group video)"), group_fix, **details)
    return ok(listed + ("" if source == "auto" or _wanted_camera(source) is not None or source.startswith("/dev/video")
                        else f"; source is {source}"),
              **details)
