"""display.preview = false end to end: no JPEG is ever encoded or published, viewers say "preview disabled", emotions still flow."""

from __future__ import annotations

import json
import subprocess
import time

from _fixtures import BIN, Daemon, clip, short_tmp, tiny_models, wait_for  # noqa: F401
from _web import View, request
from emod import protocol


def test_preview_false_sends_no_image_anywhere(tiny_models, short_tmp, clip) -> None:
    """With preview off the display stage encodes no JPEG and binds no preview socket; snapshot, stream and page say why."""
    d = Daemon(short_tmp, tiny_models, clip, env={"EMOD_DISPLAY_PREVIEW": "false", "EMOD_DISPLAY_WINDOW": "on"})
    v = None
    try:
        d.wait_processing()
        assert not (d.rundir / f"{protocol.PREVIEW}.sock").exists(), "the preview socket was bound"
        r = subprocess.run([str(BIN / "emod-view"), "--runtime-dir", str(d.rundir), "--snapshot", str(short_tmp / "x.jpg"),
                            "--timeout", "5"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "preview disabled" in r.stderr and "display.preview = false" in r.stderr, r.stderr
        assert not (short_tmp / "x.jpg").exists()

        v = View(d.rundir, short_tmp / "view.log")
        for path in ("/stream.mjpg", "/snapshot.jpg"):
            t0 = time.monotonic()
            code, _, body = request(v.base, path)
            assert code == 503 and time.monotonic() - t0 < 1.0 and "preview disabled" in json.loads(body)["error"], (path, body)
        code, _, body = wait_for(lambda: (r := request(v.base, "/api/emotions"))[0] == 200 and r, 30, 0.5, "emotions")
        assert json.loads(body)["model"] == "tiny"  # emotions and telemetry still leave the stages

        processed0 = d.stats()["frames"]["processed"]
        wait_for(lambda: d.stats()["frames"]["processed"] > processed0 + 10, 60, 0.5, "more frames processed")
        s = d.stats()
        print(f"\npreview off: {s['frames']['processed']} frames processed, preview {s['preview']}, "
              f"display fps {s['stages']['display']['fps']}")
        assert s["preview"] == {"enabled": False, "viewers": 0, "encoded": 0}
        assert not s["stages"]["display"]["fps"], "the display stage published previews"
        assert "preview disabled" in d.output()
    finally:
        if v is not None:
            assert v.stop() == 0
        d.stop()
