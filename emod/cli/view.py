"""``emod-view``: watch the annotated live picture of a running emod.

    emod-view                          a local window (needs a display)
    emod-view --snapshot shot.jpg      save one frame (.jpg as received, .png re-encoded) and exit;
                                       prints the frame's header (seq, tracks, info) as JSON
    emod-view --http 8080              a web page at http://127.0.0.1:8080/ (stream, emotions, telemetry);
                                       --http 0.0.0.0:8080 serves other machines and needs a login:
    emod-view passwd USER              create or change a login (--token NAME: a bearer token for scripts)
    emod-view --connect tcp://pi:5560 --server-key server.key --client-key me.key_secret ...
                                       the same, from a remote daemon with [remote] enabled
                                       (keys from ``emod keygen``)

Any number of viewers may attach and detach at any time; none can slow the pipeline.
Exit status: 0 done; 1 no display, no window, a port it cannot listen on, or the preview switched off;
2 bad arguments; 3 no daemon, or no preview frame in time (the table in :mod:`emod.protocol`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import zmq

from emod.cli.argtypes import add_instance_arg, plain
from emod import bus, protocol
from emod.cli.pipe import safe_stdio


def _die(msg: str, code: int = protocol.EXIT_FAILURE) -> int:
    """Print one error line; the exit status from the table in :mod:`emod.protocol`."""
    print(f"emod-view: {msg}", file=sys.stderr)
    return code


def open_receiver(args):
    """The preview receiver for these arguments (local ipc, or remote TCP with CURVE)."""
    from emod.viewer.receiver import Receiver

    ctx = zmq.Context.instance()
    if args.connect:
        from emod import remote

        return Receiver(remote.connect_subscriber(ctx, args.connect, args.server_key, args.client_key))
    from emod.client import check_runtime_dir

    rundir = check_runtime_dir(bus.runtime_dir(args.runtime_dir, args.instance))  # ClientError (78 or 3) for a runtime directory no emod serves on
    path = bus.socket_path(rundir, protocol.PREVIEW)
    if not path.exists():
        msg = f"is emod running? no preview socket at {path} (use --runtime-dir or EMOD_RUNTIME_DIR)"
        if _preview_disabled(rundir):
            from emod.viewer.receiver import PREVIEW_DISABLED

            if not args.http:
                raise PreviewDisabled(PREVIEW_DISABLED)
            msg = PREVIEW_DISABLED
        if args.snapshot:
            raise FileNotFoundError(msg)
        print(f"emod-view: {msg}; waiting for it", file=sys.stderr)  # a long-running viewer attaches when emod starts
    return Receiver(bus.connect(ctx, zmq.SUB, rundir, protocol.PREVIEW, hwm=2, topic=b"preview"))


class PreviewDisabled(RuntimeError):
    """The daemon answers but runs with display.preview = false: a failure (exit 1), not "unreachable"."""


def _preview_disabled(rundir) -> bool:
    """Whether a daemon answers on the control socket and says display.preview = false."""
    from emod.client import Client, ClientError

    try:
        return (Client(rundir, timeout=2.0).call("stats").get("preview") or {}).get("enabled") is False
    except ClientError:
        return False


def snapshot(rx, out: Path, timeout: float) -> int:
    rx.acquire()
    f = rx.wait(timeout=timeout)
    if f is None:
        return _die(f"no preview frame within {timeout:g} s: is emod running and capturing? (emod-stats)", protocol.EXIT_UNREACHABLE)
    data = f.jpeg
    if out.suffix.lower() == ".png":
        import cv2
        import numpy as np

        img = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
        ok, png = cv2.imencode(".png", img) if img is not None else (False, None)
        if not ok:
            return _die("the received frame is not a decodable JPEG")
        data = png.tobytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(out)
    print(json.dumps({"file": str(out), **{k: f.header.get(k) for k in ("seq", "shape", "stale", "tracks", "info")}}))
    return 0


def window(rx, timeout: float) -> int:
    import cv2
    import numpy as np

    from emod.vision.window import Window

    try:
        win = Window("emod-view")
    except Exception as e:
        return _die(f"cannot open a window: {e}; use --snapshot FILE or --http PORT instead")
    rx.acquire()
    last, last_t = 0, time.monotonic()
    try:
        while not win.closed:
            f = rx.wait(after=last, timeout=0.05)
            if f is None:
                win.root.update()  # keep the window responsive
                if time.monotonic() - last_t > timeout:
                    print(f"emod-view: no preview frame for {timeout:g} s; still waiting", file=sys.stderr)
                    last_t = time.monotonic()
                continue
            last, last_t = f.n, time.monotonic()
            img = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if img is not None and not win.show(img):
                break
    except KeyboardInterrupt:
        pass
    finally:
        win.close()
    return 0


def _http_security(args, host: str):
    """(credentials or None, ssl context or None) for --http; ValueError naming the fix when unusable."""
    from emod.viewer import auth
    from emod.netaddr import is_loopback

    ssl_context = None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_cert:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot load the TLS certificate {args.tls_cert} / key {args.tls_key}: {e}") from None
    path = args.passwd_file or auth.default_passwd_file()
    need = args.auth or not is_loopback(host)
    if not need:
        return None, ssl_context
    try:
        creds = auth.Credentials(path)
    except auth.CredentialsError as e:
        raise ValueError(str(e)) from None
    if creds.empty:
        why = f"--http {args.http} is not a loopback address" if not is_loopback(host) else "--auth is set"
        raise ValueError(f"{why} and {path} holds no credentials: refusing to serve the camera without a login. "
                         f"Create one with: emod-view passwd USER{'' if args.passwd_file is None else f' --file {path}'} "
                         f"(or serve 127.0.0.1 only and reach it through SSH or a reverse proxy)")
    return creds, ssl_context


def serve(rx, args, security) -> int:
    import asyncio

    from emod import log as emod_log
    from emod.viewer.hubs import EmotionHub, FrameHub
    from emod.viewer.http import Viewer, parse_listen
    from emod.viewer.http import serve as serve_http
    from emod.viewer.sampler import StatsSampler

    log = emod_log.setup("emod-view", "console" if sys.stderr.isatty() else "json")
    host, port = parse_listen(args.http)
    creds, ssl_context = security
    sampler = StatsSampler(rx, args.runtime_dir, remote=bool(args.connect))
    sampler.wait_first(5.0)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        emotions = EmotionHub(loop, _emotions_subscriber(args))
        viewer = Viewer(rx, sampler, emotions, FrameHub(rx, loop), bool(args.connect), creds, tls=ssl_context is not None,
                        max_streams=args.max_streams, log=log)

        def ready(bound: int, stop: asyncio.Event) -> None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            shown = f"[{host}]" if ":" in host else host
            scheme = "https" if ssl_context is not None else "http"
            login = "login required" if creds is not None else "no login (loopback)"
            print(f"emod-view: serving {scheme}://{shown}:{bound}/ ({login})", file=sys.stderr, flush=True)

        try:
            await serve_http(viewer, host, port, ssl_context, ready)
        finally:
            emotions.close()

    try:
        asyncio.run(run())
    except OSError as e:
        return _die(f"cannot listen on {host}:{port}: {e}")
    except KeyboardInterrupt:
        pass
    finally:
        sampler.close()
    return 0


def _emotions_subscriber(args):
    """The emotions stream's subscriber for these arguments, or None when it cannot be opened."""
    try:
        from emod.events import Subscriber
    except ImportError:
        return None
    try:
        return Subscriber(args.runtime_dir, connect=args.connect, server_key=args.server_key, client_key=args.client_key)
    except (ValueError, OSError) as e:
        print(f"emod-view: no emotions stream: {e}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    safe_stdio()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "passwd":
        from emod.cli import passwd

        return passwd.main(argv[1:])
    p = argparse.ArgumentParser(prog="emod-view", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime-dir", help="runtime directory of the local daemon (env EMOD_RUNTIME_DIR)")
    add_instance_arg(p)
    p.add_argument("--connect", metavar="tcp://HOST:PORT", help="attach to a remote daemon's [remote] preview_bind")
    p.add_argument("--server-key", metavar="FILE", help="the daemon's public key file (server.key), with --connect")
    p.add_argument("--client-key", metavar="FILE", help="this viewer's secret key file (NAME.key_secret), with --connect")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--snapshot", metavar="FILE", type=Path, help="save one frame to FILE (.jpg or .png) and exit")
    mode.add_argument("--http", metavar="[HOST:]PORT", help="serve a web page (host defaults to 127.0.0.1; "
                      "any other address needs a login: emod-view passwd USER)")
    p.add_argument("--passwd-file", type=Path, metavar="FILE", help="credentials for --http (default: that of emod-view passwd)")
    p.add_argument("--auth", action="store_true", help="require a login on a loopback address too (e.g. behind a reverse proxy)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM), with --tls-key")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument("--max-streams", type=int, default=32, metavar="N", help="open video and event streams at most (default 32)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a frame (default 10)")
    args = p.parse_args(argv)
    if args.connect and not (args.server_key and args.client_key):
        p.error("--connect needs --server-key and --client-key (create them with: emod keygen DIR)")
    if (args.server_key or args.client_key) and not args.connect:
        p.error("--server-key/--client-key only make sense with --connect")
    if args.http:
        from emod.viewer.http import parse_listen

        try:
            parse_listen(args.http)
        except ValueError as e:
            p.error(str(e))
        if args.max_streams < 1:
            p.error("--max-streams must be at least 1")
        try:  # before anything else: never serve the camera without the login it needs
            security = _http_security(args, parse_listen(args.http)[0])
        except ValueError as e:
            return _die(str(e), 2)
    if not (args.snapshot or args.http):
        import os

        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return _die("no display (DISPLAY and WAYLAND_DISPLAY are unset): use --snapshot FILE or --http [HOST:]PORT")
    from emod.client import ClientError

    try:
        rx = open_receiver(args)
    except ClientError as e:
        return _die(str(e), e.exit_code)
    except PreviewDisabled as e:
        return _die(str(e), protocol.EXIT_FAILURE)
    except (FileNotFoundError, ValueError) as e:
        return _die(str(e), protocol.EXIT_USAGE if isinstance(e, ValueError) else protocol.EXIT_UNREACHABLE)
    try:
        if args.snapshot:
            return snapshot(rx, args.snapshot, args.timeout)
        if args.http:
            return serve(rx, args, security)
        return window(rx, args.timeout)
    finally:
        rx.close()


if __name__ == "__main__":
    sys.exit(main())
