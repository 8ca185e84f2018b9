"""``emod events``: follow the tracked, smoothed emotions of a running emod.

    emod events                    readable lines on a terminal, JSON lines otherwise
    emod events --json             one ``emotions`` message per line (schema: emod/protocol.py)
    emod events --changes          only track starts, label changes and track ends (a running track
                                   first met by a late subscriber is "seen", with its age)
    emod events --connect tcp://pi:5560 --server-key server.key --client-key me.key_secret
                                   from a remote daemon with [remote] enabled (as emod-view)

It waits for a daemon that is not running yet and follows one that restarts.
Exit status: 0 (also on a closed pipe, ``emod events --json | head``, and Ctrl-C),
1 no message within ``--timeout``, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from emod.cli.argtypes import add_instance_arg
from emod.cli.pipe import reader_gone


def _args(argv):
    p = argparse.ArgumentParser(prog="emod events", description="Print the live per-face emotions of a running emod.")
    p.add_argument("--json", action="store_true", help="JSON lines even on a terminal")
    p.add_argument("--changes", action="store_true", help="only track starts, label changes and track ends (a running track met late: seen, with its age)")
    p.add_argument("--runtime-dir", help="runtime directory of the daemon (env EMOD_RUNTIME_DIR)")
    add_instance_arg(p)
    p.add_argument("--connect", metavar="tcp://HOST:PORT", help="a remote daemon's [remote] preview_bind endpoint")
    p.add_argument("--server-key", help="the remote daemon's public key file (with --connect)")
    p.add_argument("--client-key", help="this client's secret key file NAME.key_secret (with --connect)")
    p.add_argument("--count", type=int, default=0, help="exit after this many printed lines (0: never)")
    p.add_argument("--timeout", type=float, default=0.0, help="exit 1 when no message arrives for this many seconds (0: wait forever)")
    args = p.parse_args(argv)
    if args.connect and not (args.server_key and args.client_key):
        p.error("--connect needs --server-key and --client-key")
    if args.count < 0 or args.timeout < 0:
        p.error("--count and --timeout must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(sys.argv[1:] if argv is None else argv)
    from emod.events import Subscriber, TrackEvents, describe, describe_event

    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from emod.client import ClientError, check_runtime_dir

    try:
        from emod import bus

        if not args.connect:
            check_runtime_dir(bus.runtime_dir(args.runtime_dir, args.instance))  # 78: too long a path or a symlink; 3: none
        sub = Subscriber(None if args.connect else bus.runtime_dir(args.runtime_dir, args.instance), args.connect,
                         args.server_key, args.client_key)
    except ClientError as e:
        print(f"emod events: {e}", file=sys.stderr)
        return e.exit_code
    except ValueError as e:
        print(f"emod events: {e}", file=sys.stderr)
        return 2
    if not sub.available() and not args.timeout:  # with --timeout, one line at its end says it
        print(f"emod events: is emod running? no socket at {sub.endpoint[len('ipc://'):]} "
              "(use --runtime-dir or EMOD_RUNTIME_DIR); waiting for it", file=sys.stderr)
    as_json = args.json or not sys.stdout.isatty()
    changes = TrackEvents() if args.changes else None
    printed = 0
    quiet = False
    try:
        while True:
            message = sub.recv(args.timeout or None)
            if message is None and not sub.available():  # nothing ever served there: not reachable (3), as every client
                print(f"emod events: is emod running? no socket at {sub.endpoint[len('ipc://'):]} within {args.timeout:g} s",
                      file=sys.stderr)
                return 3  # emod.protocol.EXIT_UNREACHABLE
            if message is None:
                print(f"emod events: no message within {args.timeout:g} s: is emod running and capturing? (emod-stats)", file=sys.stderr)
                return 1
            items = changes.feed(message) if changes is not None else [message]
            if not as_json and changes is None:
                if not message["faces"] and quiet:
                    continue  # on a terminal, one "no faces" line per stretch without faces
                quiet = not message["faces"]
            for item in items:
                if as_json:
                    line = json.dumps(item, separators=(",", ":"), allow_nan=False)
                else:
                    line = describe_event(item) if changes is not None else describe(item)
                sys.stdout.write(line + "\n")
                printed += 1
                if args.count and printed >= args.count:
                    sys.stdout.flush()
                    return 0
            sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (| head): not an error
        return reader_gone()
    finally:
        sub.close()
