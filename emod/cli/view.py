"""``emod-view``: watch the annotated live picture of a running emod.

    emod-view                          a local window (needs a display)
    emod-view --snapshot shot.jpg      save one frame (.jpg as received, .png re-encoded) and exit;
                                       prints the frame's header (seq, tracks, info) as JSON
    emod-view --http 8080              a web page at http://127.0.0.1:8080/ (stream + live telemetry);
                                       --http 0.0.0.0:8080 to serve other machines
    emod-view --connect tcp://pi:5560 --server-key server.key --client-key me.key_secret ...
                                       the same, from a remote daemon with [remote] enabled
                                       (keys from ``emod keygen``)

Any number of viewers may attach and detach at any time; none can slow the pipeline.
Exit status: 0 done, 1 no frame in time / no daemon / no display, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import zmq

from emod import bus, protocol


def _die(msg: str, code: int = 1) -> int:
    print(f"emod-view: {msg}", file=sys.stderr)
    return code


def open_receiver(args):
    """The preview receiver for these arguments (local ipc, or remote TCP with CURVE)."""
    from emod.viewer.receiver import Receiver

    ctx = zmq.Context.instance()
    if args.connect:
        from emod import remote

        return Receiver(remote.connect_subscriber(ctx, args.connect, args.server_key, args.client_key))
    rundir = bus.runtime_dir(args.runtime_dir)
    path = bus.socket_path(rundir, protocol.PREVIEW)
    if not path.exists():
        msg = f"is emod running? no preview socket at {path} (use --runtime-dir or EMOD_RUNTIME_DIR)"
        if args.snapshot:
            raise FileNotFoundError(msg)
        print(f"emod-view: {msg}; waiting for it", file=sys.stderr)  # a long-running viewer attaches when emod starts
    return Receiver(bus.connect(ctx, zmq.SUB, rundir, protocol.PREVIEW, hwm=2, topic=b"preview"))


def snapshot(rx, out: Path, timeout: float) -> int:
    rx.acquire()
    f = rx.wait(timeout=timeout)
    if f is None:
        return _die(f"no preview frame within {timeout:g} s: is emod running and capturing? (emod-stats)")
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


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def serve(rx, args) -> int:
    from emod import log as emod_log
    from emod.viewer.http import StatsSampler, ViewerServer, parse_listen

    log = emod_log.setup("emod-view", "console" if sys.stderr.isatty() else "json")
    host, port = parse_listen(args.http)
    sampler = StatsSampler(rx, args.runtime_dir, remote=bool(args.connect))
    try:
        server = ViewerServer((host, port), rx, sampler, log)
    except OSError as e:
        return _die(f"cannot listen on {host}:{port}: {e}")
    signal.signal(signal.SIGTERM, _interrupt)
    shown = f"[{host}]" if ":" in host else host
    print(f"emod-view: serving http://{shown}:{server.server_address[1]}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping = True
        server.server_close()
        sampler.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emod-view", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime-dir", help="runtime directory of the local daemon (env EMOD_RUNTIME_DIR)")
    p.add_argument("--connect", metavar="tcp://HOST:PORT", help="attach to a remote daemon's [remote] preview_bind")
    p.add_argument("--server-key", metavar="FILE", help="the daemon's public key file (server.key), with --connect")
    p.add_argument("--client-key", metavar="FILE", help="this viewer's secret key file (NAME.key_secret), with --connect")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--snapshot", metavar="FILE", type=Path, help="save one frame to FILE (.jpg or .png) and exit")
    mode.add_argument("--http", metavar="[HOST:]PORT", help="serve a web page (host defaults to 127.0.0.1)")
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
    if not (args.snapshot or args.http):
        import os

        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return _die("no display (DISPLAY and WAYLAND_DISPLAY are unset): use --snapshot FILE or --http [HOST:]PORT")
    try:
        rx = open_receiver(args)
    except (FileNotFoundError, ValueError) as e:
        return _die(str(e), 2 if isinstance(e, ValueError) else 1)
    try:
        if args.snapshot:
            return snapshot(rx, args.snapshot, args.timeout)
        if args.http:
            return serve(rx, args)
        return window(rx, args.timeout)
    finally:
        rx.close()


if __name__ == "__main__":
    sys.exit(main())
