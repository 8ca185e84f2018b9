"""``emod keygen DIR [--name NAME]``: create a CURVE keypair for remote preview viewing.

Writes ``DIR/NAME.key`` (public; safe to copy around) and ``DIR/NAME.key_secret``
(secret; mode 0600). Make one ``server`` keypair for the daemon and one keypair per
viewer; put each viewer's public ``.key`` into the daemon's ``authorized_keys`` directory.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from emod.cli.argtypes import plain

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

USAGE = """\
wrote {public} (public) and {secret} (secret, keep it private)
{how}"""

SERVER_HOW = """\
daemon side, in emod.toml:
    [remote]
    enabled = true
    preview_bind = "tcp://0.0.0.0:5560"
    server_secret_key = "{secret}"
    authorized_keys = "/etc/emod/authorized_keys"   # one NAME.key per allowed viewer
viewers need the public file {public} (--server-key)."""

CLIENT_HOW = """\
copy {public} into the daemon's [remote] authorized_keys directory, then view with:
    emod-view --connect tcp://DAEMON:5560 --server-key server.key --client-key {secret} [--http 8080]
(the daemon re-reads authorized_keys within a few seconds; removing a key refuses new connections,
 an attached viewer keeps its connection until it detaches or emod restarts)"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emod keygen", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="directory to write the key files into (created if missing)")
    p.add_argument("--name", default="server", help="base name of the key files (default: server; e.g. a viewer's name)")
    p.add_argument("--force", action="store_true", help="overwrite existing key files of that name")
    args = p.parse_args(argv)
    if not NAME_RE.match(args.name):
        p.error(f"--name {args.name!r}: use letters, digits, '.', '_' or '-'")
    import zmq
    import zmq.auth

    if not zmq.has("curve"):
        print("emod keygen: this libzmq has no CURVE support", file=sys.stderr)
        return 1
    args.dir.mkdir(parents=True, exist_ok=True)
    public, secret = args.dir / f"{args.name}.key", args.dir / f"{args.name}.key_secret"
    if not args.force and (public.exists() or secret.exists()):
        print(f"emod keygen: {public} or {secret} exists; use --force to replace it", file=sys.stderr)
        return 2  # a refused request (emod.protocol.EXIT_USAGE)
    old = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        pub_path, sec_path = zmq.auth.create_certificates(args.dir, args.name)
    finally:
        os.umask(old)
    os.chmod(pub_path, 0o644)
    os.chmod(sec_path, 0o600)
    pub_abs, sec_abs = Path(pub_path).resolve(), Path(sec_path).resolve()
    how = (SERVER_HOW if args.name == "server" else CLIENT_HOW).format(public=pub_abs, secret=sec_abs)
    print(USAGE.format(public=pub_abs, secret=sec_abs, how=how))
    return 0


if __name__ == "__main__":
    sys.exit(main())
