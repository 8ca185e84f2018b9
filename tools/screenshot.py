#!/usr/bin/env python3
"""A real screenshot of the web viewer: a fresh daemon on a real clip, ``emod-view --http``, headless Chromium.

    python tools/screenshot.py [--source ../shared/media/video/short_hamilton_clip.mp4] [--model quant]
                               [--config FILE] [--size 1280x620] [--out docs/reports/viewer.png]

Starts ``emod run --source SRC --loop --model MODEL`` in its own runtime and state directories,
waits until ``emod-stats --json`` shows results flowing, serves ``emod-view --http`` on a free
127.0.0.1 port, opens it in headless Chromium over the DevTools protocol, lets it run ``--wait`` seconds
after its first live data, saves
the screenshot, and stops both processes. Exit status 1 when any step fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT_SOURCE = REPO.parent / "shared" / "media" / "video" / "short_hamilton_clip.mp4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(rundir: Path) -> dict | None:
    r = subprocess.run([str(BIN / "emod-stats"), "--json", "--runtime-dir", str(rundir)], capture_output=True, text=True,
                       timeout=20)
    return json.loads(r.stdout) if r.returncode == 0 else None


def _wait(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _capture(chromium: str, profile: Path, url: str, width: int, height: int, wait: float) -> bytes:
    """PNG of URL in headless Chromium over its DevTools protocol, once the page shows a model and a rate
    (its live streams never finish loading, so a load event or a virtual-time budget would never come)."""
    import asyncio
    import base64
    import re
    import urllib.request

    import aiohttp

    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                             "--remote-debugging-port=0", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if m := re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line):
                port = m.group(1)
            elif not line and proc.poll() is not None:
                raise RuntimeError("chromium exited before its DevTools endpoint came up")
        if port is None:
            raise RuntimeError("chromium's DevTools endpoint did not come up")

        def page_ws() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        _wait("a Chromium page", lambda: page_ws() is not None, 60)

        async def session() -> bytes:
            async with aiohttp.ClientSession() as http, http.ws_connect(page_ws(), max_msg_size=64 * 2**20) as ws:
                ids = iter(range(1, 1 << 30))

                async def call(method: str, **params):
                    my = next(ids)
                    await ws.send_json({"id": my, "method": method, "params": params})
                    while True:
                        msg = await asyncio.wait_for(ws.receive_json(), 120)
                        if msg.get("id") == my:
                            if "error" in msg:
                                raise RuntimeError(f"DevTools {method}: {msg['error']}")
                            return msg.get("result", {})

                await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
                await call("Page.navigate", url=url)
                ready = "(document.getElementById('model')||{}).textContent > '' && !/^\\W*$/.test(document.getElementById('model').textContent)"
                end = time.monotonic() + 120
                while time.monotonic() < end:
                    r = await call("Runtime.evaluate", expression=ready, returnByValue=True)
                    if r.get("result", {}).get("value") is True:
                        break
                    await asyncio.sleep(0.5)
                else:
                    raise RuntimeError("the page never showed live data")
                await asyncio.sleep(wait)  # let the stream and the charts fill in: what is shown, not synchronisation
                return base64.b64decode((await call("Page.captureScreenshot", format="png"))["data"])

        return asyncio.run(session())
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from emod.cli.argtypes import plain

    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(DEFAULT_SOURCE))
    p.add_argument("--model", default="quant")
    p.add_argument("--config", help="emod run --config FILE")
    p.add_argument("--size", default="1280x620", help="browser window WIDTHxHEIGHT")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "reports" / "viewer.png")
    p.add_argument("--settle", type=float, default=8.0, help="seconds the daemon serves before the page opens (default 8)")
    p.add_argument("--wait", type=float, default=6.0, help="seconds the page runs after its first live data (default 6)")
    args = p.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("screenshot: chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="emshot"))
    rundir, state = tmp / "run", tmp / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOD_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update({"EMOD_DAEMON_STATE_DIR": str(state), "EMOD_DISPLAY_WINDOW": "off", "EMOD_DAEMON_LOG_FORMAT": "json"})
    cmd = [str(BIN / "emod"), "run", "--source", args.source, "--loop", "--model", args.model, "--runtime-dir", str(rundir)]
    if args.config:
        cmd += ["--config", args.config]
    procs = []
    try:
        with open(tmp / "daemon.log", "wb") as log:
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        _wait("results from the daemon", lambda: ((_stats(rundir) or {}).get("frames") or {}).get("processed", 0) > 30, 90)
        time.sleep(args.settle)
        port = _free_port()
        with open(tmp / "view.log", "wb") as log:
            procs.append(subprocess.Popen([str(BIN / "emod-view"), "--runtime-dir", str(rundir), "--http", f"127.0.0.1:{port}"],
                                          env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

        def serving() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return True
            except OSError:
                return False

        _wait("emod-view to serve", serving, 30)
        w, h = (int(v) for v in args.size.lower().split("x"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shot = tmp / "shot.png"
        shot.write_bytes(_capture(chromium, tmp / "profile", f"http://127.0.0.1:{port}/", w, h, args.wait))
        shutil.copyfile(shot, args.out)
        print(f"wrote {args.out}")
        return 0
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        print(f"screenshot: {e} (logs in {tmp})", file=sys.stderr)
        return 1
    finally:
        for proc in reversed(procs):
            _stop(proc)


if __name__ == "__main__":
    sys.exit(main())
