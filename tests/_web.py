"""Helpers for the emod-view --http tests: start a viewer, make raw HTTP requests, drive headless Chromium over CDP."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from _fixtures import BIN, base_env, free_port, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class View:
    """``emod-view --http 127.0.0.1:PORT`` in a child process; :meth:`stop` SIGTERMs it (exit 0 expected)."""

    def __init__(self, rundir: Path, log: Path, *args: str, models: Path | None = None, scheme: str = "http"):
        self.port = free_port()
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.log_path = log
        self.log = open(log, "wb")
        env = base_env(models) if models else None
        self.proc = subprocess.Popen([str(BIN / "emod-view"), "--runtime-dir", str(rundir), "--http", f"127.0.0.1:{self.port}", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        wait_for(self._serving, 30, 0.1, "emod-view to serve")

    def _serving(self) -> bool:
        assert self.proc.poll() is None, f"emod-view exited {self.proc.returncode}: {self.output()}"
        return b"serving http" in self.log_path.read_bytes()

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


def request(base: str, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None,
            timeout: float = 10, source: str | None = None, context: ssl.SSLContext | None = None):
    """(status, headers, body) of one request; ``source`` picks the client's 127.x address (rate limits are per address)."""
    scheme, hostport = base.split("://")
    host, port = hostport.split(":")
    src = (source, 0) if source else None
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, source_address=src, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout, source_address=src)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def mjpeg_parts(base: str, n: int, headers: dict | None = None, timeout: float = 30) -> list[bytes]:
    """The first N JPEG parts of /stream.mjpg."""
    host, port = base.split("://")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    parts = []
    try:
        conn.request("GET", "/stream.mjpg", headers=headers or {})
        r = conn.getresponse()
        assert r.status == 200, (r.status, r.read()[:300])
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
        while len(parts) < n:
            line = r.fp.readline()
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":")[1])
                assert r.fp.readline() == b"\r\n"
                parts.append(r.fp.read(size))
        return parts
    finally:
        conn.close()


# --- headless Chromium over the DevTools protocol -------------------------------------------------------------
class Browser:
    """Headless Chromium with a DevTools websocket (aiohttp's client): navigate, evaluate JS, screenshot."""

    def __init__(self, width: int = 1280, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="emod-chromium-")
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--hide-scrollbars", f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "--remote-debugging-port=0", "about:blank"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.loop = asyncio.new_event_loop()
        self.ws_url = self._devtools_url()
        self.devtools = "http://127.0.0.1:" + self.ws_url.split(":")[2].split("/")[0]
        self.ids = 0
        self.session = self.ws = None
        self.tabs: list = []
        self.loop.run_until_complete(self._open())
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _devtools_url(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                self.browser_ws = m.group(1)
                port = m.group(1).split(":")[2].split("/")[0]
                for _ in range(100):  # the browser target; we want a page target
                    try:
                        with __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                            pages = [t for t in json.load(r) if t["type"] == "page"]
                        if pages:
                            return pages[0]["webSocketDebuggerUrl"]
                    except OSError:
                        pass
                    time.sleep(0.2)
            if not line and self.proc.poll() is not None:
                break
        raise AssertionError("headless Chromium did not start its DevTools endpoint")

    async def _open(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.ws_url, max_msg_size=64 * 2**20)

    async def _call(self, method: str, **params):
        self.ids += 1
        my = self.ids
        await self.ws.send_json({"id": my, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 60)
            if msg.get("id") == my:
                if "error" in msg:
                    raise AssertionError(f"CDP {method}: {msg['error']}")
                return msg.get("result", {})

    def call(self, method: str, **params):
        return self.loop.run_until_complete(self._call(method, **params))

    def eval(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"JS error in {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        wait_for(lambda: self.eval("document.readyState") == "complete", 30, 0.2, f"{url} to load")

    def wait(self, expr: str, timeout: float, what: str):
        return wait_for(lambda: self.eval(expr), timeout, 0.3, what)

    def new_tab(self, url: str, window: bool = False) -> "Tab":
        """Open URL in a new tab of this browser (in a window of its own with ``window``, so it stays visible).

        All tabs of one browser share its connection pool (6 per host for HTTP/1.1)."""
        import urllib.request

        async def create() -> str:
            async with self.session.ws_connect(self.browser_ws) as ws:
                await ws.send_json({"id": 1, "method": "Target.createTarget", "params": {"url": url, "newWindow": window}})
                while True:
                    msg = await asyncio.wait_for(ws.receive_json(), 30)
                    if msg.get("id") == 1:
                        return msg["result"]["targetId"]

        target_id = self.loop.run_until_complete(create())
        with urllib.request.urlopen(f"{self.devtools}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["id"] == target_id)
        tab = Tab(self, target["webSocketDebuggerUrl"])
        self.tabs.append(tab)
        return tab

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        async def shut():
            for tab in self.tabs:
                await tab.ws.close()
            if self.ws is not None:
                await self.ws.close()
            if self.session is not None:
                await self.session.close()

        self.loop.run_until_complete(shut())
        self.loop.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


class Tab(Browser):
    """Another tab of a :class:`Browser`: its own DevTools websocket, the browser's loop and session."""

    def __init__(self, browser: Browser, ws_url: str):  # noqa: super().__init__ would start another browser
        self.loop, self.session, self.ids = browser.loop, browser.session, 0
        self.ws = self.loop.run_until_complete(self.session.ws_connect(ws_url, max_msg_size=64 * 2**20))
