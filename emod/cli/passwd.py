"""``emod-view passwd``: manage who may log in to ``emod-view --http``.

    emod-view passwd alice               set alice's password (asked twice on a terminal)
    emod-view passwd alice --stdin       read the password from the first line of stdin
    emod-view passwd --token backup      create or replace the bearer token "backup" (printed once)
    emod-view passwd --delete alice      remove the user or token "alice"
    emod-view passwd --list              list users and tokens

The file (default /etc/emod/viewer.passwd for root, else ~/.config/emod/viewer.passwd;
``--file`` elsewhere) holds Argon2id hashes of passwords and SHA-256 digests of tokens,
mode 0600. A running ``emod-view --http`` picks changes up at the next request.
Exit status: 0 done, 1 file problem, 2 bad arguments or password.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from emod.cli.argtypes import plain
from emod.viewer import auth


def _die(msg: str, code: int) -> int:
    print(f"emod-view passwd: {msg}", file=sys.stderr)
    return code


def _read_password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise auth.CredentialsError("the passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emod-view passwd", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("user", nargs="?", help="the user whose password to set")
    p.add_argument("--file", type=Path, default=None, help=f"password file (default {auth.default_passwd_file()})")
    p.add_argument("--stdin", action="store_true", help="read the password from stdin (for scripts)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--token", metavar="NAME", help="create or replace a bearer token and print it")
    g.add_argument("--delete", metavar="NAME", help="remove a user or token")
    g.add_argument("--list", action="store_true", help="list users and tokens")
    args = p.parse_args(argv)
    if bool(args.user) == bool(args.token or args.delete or args.list):
        p.error("give either USER, or one of --token NAME, --delete NAME, --list")
    path = args.file or auth.default_passwd_file()
    try:
        creds = auth.Credentials(path)
        if args.list:
            for name in sorted(creds.users):
                print(f"user  {name}")
            for name in sorted(creds.tokens.values()):
                print(f"token {name}")
            return 0
        if args.delete:
            if not creds.remove(args.delete):
                return _die(f"no user or token {args.delete!r} in {path}", 2)
            creds.save()
            print(f"removed {args.delete!r} from {path}", file=sys.stderr)
            return 0
        if args.token:
            token = creds.new_token(args.token)
            creds.save()
            print(token)
            print(f"token {args.token!r} saved in {path}; send it as: Authorization: Bearer TOKEN", file=sys.stderr)
            return 0
        creds.set_password(args.user, _read_password(args.stdin))
        creds.save()
        print(f"password of {args.user!r} saved in {path}", file=sys.stderr)
        return 0
    except auth.CredentialsError as e:
        return _die(str(e), 2)
    except OSError as e:
        return _die(f"{path}: {e}", 1)
    except (KeyboardInterrupt, EOFError):
        return _die("cancelled", 2)
