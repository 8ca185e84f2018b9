"""``emod-view --http``: the web page and its endpoints, served by aiohttp.

Routes (every one but ``/login`` needs a login when authentication is on):

=====================  ===========================================================================
``/``                  the page (emod/web/index.html; scripts and styles under ``/static/``)
``/login``             the login form (GET) and login (POST ``user``, ``password``); ``/logout`` (POST)
``/stream.mjpg``       the annotated preview as ``multipart/x-mixed-replace``
``/snapshot.jpg``      one preview frame
``/stats.json``        the newest compact telemetry sample; ``/history.json`` those of the last 5 minutes
``/api/stats``         the ``emod-stats --json`` object (local daemon only)
``/api/emotions``      the latest ``emotions`` message (schema: :mod:`emod.protocol`)
``/api/timeline``      face-seconds per smoothed label over the last 5 minutes (:mod:`emod.viewer.hubs`)
``/events``            Server-Sent Events, one ``data:`` line per ``emotions`` message (``curl -N``)
``/live``              the page's one connection per tab: frames, emotions, stats, timeline (:mod:`emod.viewer.live`)
=====================  ===========================================================================

When the local daemon is down, or the daemon runs with ``display.preview = false``, every data
endpoint answers 503 at once with ``{"ok": false, "error": REASON}``. Authentication (see
:mod:`emod.viewer.auth`): a session cookie from the login form, or ``Authorization: Bearer
TOKEN``; anything else gets 401 (the page's 401 carries the login form). Long-lived responses
(MJPEG and SSE) are capped at ``max_streams`` together (the excess gets 503); each write has
``WRITE_TIMEOUT`` seconds, after which a stalled client is cut off. Request lines and header
fields are capped at 8 KiB, bodies at 16 KiB, and a connection that has not sent a full request
within ``REQUEST_TIMEOUT`` seconds is closed (slowloris).
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import web

from emod.viewer import auth
from emod.viewer.hubs import EmotionHub, FrameHub
from emod.viewer.receiver import PREVIEW_DISABLED

BOUNDARY = "emodframe"
WRITE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 15.0
FIRST_FRAME_S = 5.0
MAX_STREAMS = 32
MAX_BODY = 16 * 1024
EMOTIONS_STALE_S = 5.0
CSP = ("default-src 'self'; img-src 'self' blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
VIEWER = web.AppKey("viewer", object)


def parse_listen(value: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[v6]:PORT``) -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"--http wants [HOST:]PORT, got {value!r}") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"port {p} is out of range")
    return host, p


def _web_file(name: str) -> bytes:
    return resources.files("emod.web").joinpath(name).read_bytes()


class Viewer:
    """State shared by the handlers: inputs, telemetry, credentials, and the count of long-lived responses."""

    def __init__(self, receiver, sampler, emotions: EmotionHub | None, frames: FrameHub, remote: bool,
                 credentials: auth.Credentials | None, tls: bool = False, max_streams: int = MAX_STREAMS, log=None):
        self.receiver, self.sampler, self.emotions, self.frames = receiver, sampler, emotions, frames
        self.remote, self.credentials, self.tls, self.max_streams, self.log = remote, credentials, tls, max_streams, log
        self.sessions = auth.Sessions()
        self.limiter = auth.FailureLimiter()
        self.streams = 0
        self.refused = 0  # long-lived requests refused for the cap
        self.stopping = False
        self.page = _web_file("index.html")
        self.login_page = _web_file("login.html").decode()

    # --- why a data endpoint cannot answer ---------------------------------------------------------------
    def down(self) -> str | None:
        """The reason the local daemon is unreachable (None when it answers, or when remote)."""
        return None if self.remote else self.sampler.down()

    def no_preview(self) -> str | None:
        return self.down() or (PREVIEW_DISABLED if self.sampler.preview_disabled() else None)

    def source_reason(self) -> str:
        err = (self.sampler.latest or {}).get("source_error")
        return f" (source error: {err})" if err else ""


def error(code: int, reason: str, **headers: str) -> web.Response:
    body = json.dumps({"ok": False, "error": reason}, separators=(",", ":"))
    if code == 503:
        headers.setdefault("Retry-After", "2")
    return web.Response(status=code, text=body + "\n", content_type="application/json", headers=headers)


def ok_json(obj) -> web.Response:
    return web.Response(text=json.dumps(obj, separators=(",", ":"), allow_nan=False), content_type="application/json")


# --- authentication ------------------------------------------------------------------------------------------
def _client(request: web.Request) -> str:
    return request.remote or "?"


def _authenticated(v: Viewer, request: web.Request) -> tuple[str | None, bool]:
    """(user or token name, whether a bad bearer token was offered)."""
    try:
        v.credentials.reload(force=False)  # a user deleted with emod-view passwd is out at once
    except auth.CredentialsError as e:
        if v.log is not None:
            v.log.error("password file unusable; refusing everyone", error=str(e))
        v.credentials.users, v.credentials.tokens = {}, {}
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        name = v.credentials.check_token(header[7:].strip())
        return name, name is None
    user = v.sessions.user(request.cookies.get(auth.SESSION_COOKIE))
    if user is not None and user not in v.credentials.users:
        return None, False
    return user, False


def _login_page(v: Viewer, status: int, message: str = "", next_path: str = "/") -> web.Response:
    body = v.login_page.replace("{{message}}", html.escape(message)).replace("{{next}}", html.escape(next_path, quote=True))
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"WWW-Authenticate": 'Bearer realm="emod"'} if status == 401 else None)


def _wants_page(request: web.Request) -> bool:
    """A browser navigating (the page itself, or ``Accept: text/html``): it gets a page, never raw JSON."""
    return request.path in ("/", "/index.html") or "text/html" in request.headers.get("Accept", "")


def _locked_out(v: Viewer, request: web.Request, addr: str, wait: float) -> web.Response:
    """429 for a client locked out after failed logins: the login form with the wait for a browser, JSON for scripts."""
    retry = {"Retry-After": str(int(wait) + 1)}
    if _wants_page(request) or request.path == "/login":
        resp = _login_page(v, 429, f"Too many failed logins. Try again in {wait:.0f} s.",
                           _safe_next(request.path if request.path != "/login" else request.query.get("next", "/")))
        resp.headers.update(retry)
        return resp
    return error(429, f"too many failed logins from {addr}; retry in {wait:.0f} s", **retry)


@web.middleware
async def headers_middleware(request: web.Request, handler):
    resp = await handler(request)
    resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("Content-Security-Policy", CSP)
    return resp


@web.middleware
async def auth_middleware(request: web.Request, handler):
    v: Viewer = request.app[VIEWER]
    if v.credentials is None or request.path in ("/login", "/logout"):
        return await handler(request)
    who, bad_token = _authenticated(v, request)
    if who is not None:
        request["user"] = who
        return await handler(request)
    addr = _client(request)
    wait = v.limiter.retry_after(addr)
    if wait:
        return _locked_out(v, request, addr, wait)
    if bad_token:
        v.limiter.fail(addr)
        if v.log is not None:
            v.log.warning("bad bearer token", client=addr, path=request.path)
        return error(401, "invalid bearer token", **{"WWW-Authenticate": 'Bearer realm="emod", error="invalid_token"'})
    if _wants_page(request):
        return _login_page(v, 401, next_path=_safe_next(request.path))
    return error(401, "login required: log in at /login, or send Authorization: Bearer TOKEN (emod-view passwd --token NAME)",
                 **{"WWW-Authenticate": 'Bearer realm="emod"'})


async def login_get(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    if v.credentials is None:
        raise web.HTTPSeeOther("/")
    wait = v.limiter.retry_after(_client(request))
    if wait:
        return _locked_out(v, request, _client(request), wait)
    return _login_page(v, 200, next_path=_safe_next(request.query.get("next", "/")))


def _safe_next(path: str) -> str:
    """Only local paths: no scheme, no host, no ``//`` (no open redirect)."""
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


async def login_post(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    if v.credentials is None:
        raise web.HTTPSeeOther("/")
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        return error(403, f"cross-origin login refused (Origin {origin})")
    addr = _client(request)
    wait = v.limiter.retry_after(addr)
    if wait:
        return _locked_out(v, request, addr, wait)
    form = await request.post()
    user, password = str(form.get("user", "")), str(form.get("password", ""))
    next_path = _safe_next(str(form.get("next", "/")))
    try:
        v.credentials.reload(force=False)
    except auth.CredentialsError as e:
        return error(500, f"password file unusable: {e}")
    good = await asyncio.get_running_loop().run_in_executor(None, v.credentials.check_password, user, password)
    if not good:
        v.limiter.fail(addr)
        if v.log is not None:
            v.log.warning("failed login", client=addr, user=user[:64])
        return _login_page(v, 401, "Wrong user name or password.", next_path)
    sid = v.sessions.create(user)
    resp = web.HTTPSeeOther(next_path)
    resp.set_cookie(auth.SESSION_COOKIE, sid, max_age=int(v.sessions.ttl_s), path="/", httponly=True, samesite="Strict",
                    secure=v.tls)
    if v.log is not None:
        v.log.info("login", client=addr, user=user)
    return resp


async def logout(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    v.sessions.drop(request.cookies.get(auth.SESSION_COOKIE))
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(auth.SESSION_COOKIE, path="/")
    return resp


# --- pages and JSON ------------------------------------------------------------------------------------------
async def index(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    page = v.page.replace(b'data-auth="off"', b'data-auth="on"') if v.credentials is not None else v.page
    return web.Response(body=page, content_type="text/html", charset="utf-8")


async def stats_json(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    v.sampler.last_request = time.monotonic()
    s = v.sampler.latest
    if not s.get("ok"):
        return web.Response(status=503, text=json.dumps(s), content_type="application/json", headers={"Retry-After": "2"})
    return ok_json(s)


async def history_json(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    v.sampler.last_request = time.monotonic()
    if reason := v.down():
        return error(503, reason)
    return ok_json(list(v.sampler.history))


async def api_stats(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    if v.remote:
        return error(503, "the emod-stats object needs the daemon's local control socket; over --connect see /stats.json")
    if reason := v.down():
        return error(503, reason)
    return ok_json(v.sampler.snapshot)


def _emotions_unavailable(v: Viewer) -> str | None:
    if reason := v.down():
        return reason
    if v.emotions is None:
        return "this viewer has no emotions subscriber"
    age = v.emotions.age()
    if age is None or age > EMOTIONS_STALE_S:
        when = "yet" if age is None else f"for {age:.0f} s"
        return f"no emotions message {when}: is the daemon processing frames?{v.source_reason()}"
    return None


async def api_emotions(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    if reason := _emotions_unavailable(v):
        return error(503, reason)
    return ok_json(v.emotions.latest)


async def api_timeline(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    if reason := v.down():
        return error(503, reason)
    if v.emotions is None:
        return error(503, "this viewer has no emotions subscriber")
    return ok_json(v.emotions.timeline())


# --- long-lived responses ------------------------------------------------------------------------------------
class _Slot:
    """One of ``max_streams`` places for a long-lived response."""

    def __init__(self, v: Viewer):
        self.v = v

    def __enter__(self):
        self.v.streams += 1
        return self

    def __exit__(self, *exc):
        self.v.streams -= 1


def _full(v: Viewer) -> web.Response | None:
    if v.streams >= v.max_streams:
        v.refused += 1
        return error(503, f"too many streams: {v.max_streams} are open; try again later")
    return None


async def _write(request: web.Request, resp: web.StreamResponse, data: bytes) -> None:
    """Write with a deadline; a client that does not read in WRITE_TIMEOUT s is cut off (ConnectionError)."""
    try:
        await asyncio.wait_for(resp.write(data), WRITE_TIMEOUT)
    except asyncio.TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("client stalled") from None


async def _first_frame(v: Viewer):
    """The first fresh frame for a new client, or (None, reason) after FIRST_FRAME_S."""
    v.receiver.acquire()
    f = await v.frames.wait(after=v.frames.fresh_after(), timeout=FIRST_FRAME_S)
    if f is None:
        v.receiver.release()
        where = "the remote daemon" if v.remote else "the daemon"
        return None, f"no preview frame from {where} within {FIRST_FRAME_S:g} s{v.source_reason()}"
    return f, None


async def snapshot(request: web.Request) -> web.Response:
    v: Viewer = request.app[VIEWER]
    if reason := v.no_preview():
        return error(503, reason)
    f, reason = await _first_frame(v)
    if f is None:
        return error(503, reason)
    v.receiver.release()
    return web.Response(body=f.jpeg, content_type="image/jpeg")


async def stream(request: web.Request) -> web.StreamResponse:
    v: Viewer = request.app[VIEWER]
    if reason := v.no_preview():
        return error(503, reason)
    if full := _full(v):
        return full
    with _Slot(v):
        f, reason = await _first_frame(v)
        if f is None:
            return error(503, reason)
        try:
            resp = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
            resp.force_close()
            await resp.prepare(request)
            quiet_since = time.monotonic()
            while not v.stopping:
                if f is not None:
                    part = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(f.jpeg)}\r\n\r\n".encode()
                    await _write(request, resp, part + f.jpeg + b"\r\n")
                    last, quiet_since = f.n, time.monotonic()
                f = await v.frames.wait(after=last, timeout=2.0)
                if f is None and (v.no_preview() or time.monotonic() - quiet_since > 30):
                    break  # the daemon went away: end the response so the page retries and shows why
            return resp
        except (ConnectionError, asyncio.CancelledError):
            return resp
        finally:
            v.receiver.release()


async def events(request: web.Request) -> web.StreamResponse:
    v: Viewer = request.app[VIEWER]
    if reason := _emotions_unavailable(v):
        return error(503, reason)
    if full := _full(v):
        return full
    with _Slot(v):
        client = v.emotions.add_client()
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
            resp.force_close()
            await resp.prepare(request)
            await _write(request, resp, b"retry: 3000\n\n" + client.first)
            while not v.stopping and not client.lagging:
                try:
                    data = await asyncio.wait_for(client.queue.get(), 15.0)
                except asyncio.TimeoutError:
                    if reason := _emotions_unavailable(v):
                        await _write(request, resp, f"event: unavailable\ndata: {json.dumps({'error': reason})}\n\n".encode())
                        break
                    data = b": keep-alive\n\n"
                await _write(request, resp, data)
            return resp
        except (ConnectionError, asyncio.CancelledError):
            return resp
        finally:
            v.emotions.remove_client(client)


# --- the application -----------------------------------------------------------------------------------------
def make_app(viewer: Viewer) -> web.Application:
    app = web.Application(middlewares=[headers_middleware, auth_middleware], client_max_size=MAX_BODY)
    app[VIEWER] = viewer
    r = app.router
    r.add_get("/", index)
    r.add_get("/index.html", index)
    r.add_get("/login", login_get)
    r.add_post("/login", login_post)
    r.add_post("/logout", logout)
    r.add_get("/stream.mjpg", stream)
    r.add_get("/snapshot.jpg", snapshot)
    r.add_get("/stats.json", stats_json)
    r.add_get("/history.json", history_json)
    r.add_get("/api/stats", api_stats)
    r.add_get("/api/emotions", api_emotions)
    r.add_get("/api/timeline", api_timeline)
    r.add_get("/events", events)
    from emod.viewer.live import live  # here: live.py builds on this module's helpers

    r.add_get("/live", live)
    r.add_static("/static/", str(resources.files("emod.web").joinpath("static")), follow_symlinks=False)
    return app


async def serve(viewer: Viewer, host: str, port: int, ssl_context=None, ready=None) -> None:
    """Serve until ``viewer.stopping`` is set through ``stop`` (an asyncio.Event) in ``ready(site_port, stop)``."""
    runner = web.AppRunner(make_app(viewer), handle_signals=False, access_log=None, keepalive_timeout=REQUEST_TIMEOUT,
                           max_line_size=8190, max_field_size=8190, shutdown_timeout=3.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True, backlog=512)
    await site.start()
    stop = asyncio.Event()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    if ready is not None:
        ready(bound, stop)
    try:
        await stop.wait()
    finally:
        viewer.stopping = True
        await runner.cleanup()
