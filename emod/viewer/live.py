"""``/live``: everything the page shows over one connection per tab (Server-Sent Events).

A browser opens at most 6 HTTP/1.1 connections per host, for all its tabs together. The page used
to hold two for good (``/stream.mjpg`` and ``/events``) and poll ``/stats.json`` and
``/api/timeline`` besides: with 3 tabs the 6 were taken, polls stalled and a 4th tab never loaded.
``/live`` carries it all on one response, so N visible tabs hold N connections and each loads
while another connection is free (6 tabs, the 6th loading through the last free one); the page
closes it while its tab is hidden (Page Visibility), so background tabs hold none.

Events (each ``data:`` is one line of strict JSON, except ``frame``):

==============  ===================================================================================
``history``     first: the compact telemetry samples of the last 5 minutes (what ``/history.json`` holds)
``stats``       every ``STATS_S``: the newest compact sample (what ``/stats.json`` holds; ``ok`` false
                with ``error`` while the daemon is down)
``timeline``    every ``TIMELINE_S``: ``/api/timeline``'s object, or ``{"ok": false, "error": ...}``
(message)       one ``emotions`` message, as on ``/events`` (``id: SEQ``)
``frame``       one annotated preview JPEG, base64; the newest only (a slow reader skips frames)
``video``       ``{"ok": false, "error": REASON}`` while there is no preview (daemon down, preview off)
==============  ===================================================================================

The scripts' endpoints (``/events``, ``/stream.mjpg``, ``/stats.json``, ...) are unchanged. One
``/live`` counts as one of the ``max_streams`` long-lived responses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

from aiohttp import web

from emod.viewer.http import VIEWER, Viewer, _emotions_unavailable, _full, _Slot, _write

STATS_S = 1.0
TIMELINE_S = 2.0
FRAME_WAIT_S = 2.0


def _event(name: str, obj) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj, separators=(',', ':'), allow_nan=False)}\n\n".encode()


def _timeline(v: Viewer) -> dict:
    if reason := v.down():
        return {"ok": False, "error": reason}
    if v.emotions is None:
        return {"ok": False, "error": "this viewer has no emotions subscriber"}
    return {"ok": True, **v.emotions.timeline()}


async def live(request: web.Request) -> web.StreamResponse:
    v: Viewer = request.app[VIEWER]
    if full := _full(v):
        return full
    with _Slot(v):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        resp.force_close()
        client = v.emotions.add_client() if v.emotions is not None else None
        v.receiver.acquire()  # the daemon encodes JPEGs only while someone watches
        pending: dict[str, asyncio.Task] = {}
        try:
            await resp.prepare(request)
            v.sampler.last_request = time.monotonic()
            await _write(request, resp, b"retry: 3000\n\n" + _event("history", list(v.sampler.history))
                         + (client.first if client is not None and not _emotions_unavailable(v) else b""))
            last = v.frames.fresh_after()
            next_stats = next_timeline = time.monotonic()
            video_ok = None
            while not v.stopping and not (client is not None and client.lagging):
                now = time.monotonic()
                out = b""
                if now >= next_stats:
                    v.sampler.last_request = now
                    out += _event("stats", v.sampler.latest)
                    next_stats = max(next_stats + STATS_S, now + STATS_S / 2)
                if now >= next_timeline:
                    out += _event("timeline", _timeline(v))
                    next_timeline = max(next_timeline + TIMELINE_S, now + TIMELINE_S / 2)
                if out:
                    await _write(request, resp, out)
                if "frame" not in pending:
                    pending["frame"] = asyncio.ensure_future(v.frames.wait(after=last, timeout=FRAME_WAIT_S))
                if client is not None and "emotions" not in pending:
                    pending["emotions"] = asyncio.ensure_future(client.queue.get())
                left = max(0.0, min(next_stats, next_timeline) - time.monotonic())
                done, _ = await asyncio.wait(pending.values(), timeout=left, return_when=asyncio.FIRST_COMPLETED)
                out = b""
                if (t := pending.get("emotions")) in done:
                    del pending["emotions"]
                    out += t.result()
                if (t := pending.get("frame")) in done:
                    del pending["frame"]
                    f = t.result()
                    if f is not None:
                        last, video_ok = f.n, True
                        out += b"event: frame\ndata: " + base64.b64encode(f.jpeg) + b"\n\n"
                    elif (reason := v.no_preview()) and video_ok is not False:
                        video_ok = False
                        out += _event("video", {"ok": False, "error": reason})
                if out:
                    await _write(request, resp, out)
            return resp
        except (ConnectionError, asyncio.CancelledError):
            return resp
        finally:
            for t in pending.values():
                t.cancel()
            v.receiver.release()
            if client is not None:
                v.emotions.remove_client(client)
