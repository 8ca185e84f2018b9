"""Who may use ``emod-view --http``: the password file, sessions, bearer tokens, failed-login limits.

The password file (``emod-view passwd`` manages it; :func:`default_passwd_file`) holds one
entry a line, mode 0600:

    user NAME $argon2id$v=19$m=65536,t=3,p=4$...     a login for the page (Argon2id, argon2-cffi)
    token NAME sha256:HEX                            a bearer token for scripts (SHA-256 of 32 random bytes)

Tokens are random and long, so a SHA-256 is enough to store them and cheap to check per
request; passwords are people's, so they get Argon2id, checked off the event loop.

A browser logs in through ``POST /login`` and gets a session cookie (``emod_session``:
HttpOnly, SameSite=Strict, Secure under TLS, 12 hours). Scripts send
``Authorization: Bearer TOKEN``. Each client address may fail ``MAX_FAILURES`` times in
``FAILURE_WINDOW_S`` seconds (logins and bad tokens alike); after that it gets 429 with
``Retry-After`` until the oldest failure ages out. The file is re-read when it changes,
so a deleted user or token stops working at once, sessions included.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections import OrderedDict, deque
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
SESSION_COOKIE = "emod_session"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 1000
MAX_FAILURES = 5
FAILURE_WINDOW_S = 60.0


class CredentialsError(ValueError):
    """A password file that cannot be used, or a bad name or password; the message says which and why."""


def default_passwd_file() -> Path:
    """/etc/emod/viewer.passwd for root, else ``$XDG_CONFIG_HOME/emod/viewer.passwd`` (~/.config)."""
    if os.geteuid() == 0:
        return Path("/etc/emod/viewer.passwd")
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "emod" / "viewer.passwd"


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class Credentials:
    """The users and tokens of one password file. Missing file: no credentials (``empty``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.users: dict[str, str] = {}
        self.tokens: dict[str, str] = {}  # sha256:HEX -> name
        self._mtime: float | None = None
        self.reload()

    @property
    def empty(self) -> bool:
        return not self.users and not self.tokens

    def reload(self, force: bool = True) -> None:
        """Re-read the file (only when its mtime changed unless ``force``). CredentialsError if unusable."""
        from emod import dirs

        try:
            mtime = os.lstat(self.path).st_mtime_ns
        except FileNotFoundError:
            self.users, self.tokens, self._mtime = {}, {}, None
            return
        if not force and mtime == self._mtime:
            return
        try:
            dirs.check_file(self.path, "password file")
            text = self.path.read_text()
        except OSError as e:
            raise CredentialsError(str(e)) from None
        users, tokens = {}, {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 3 or parts[0] not in ("user", "token") or not NAME_RE.match(parts[1]):
                raise CredentialsError(f"{self.path}:{n}: expected 'user NAME HASH' or 'token NAME sha256:HEX'")
            if parts[0] == "user":
                if not parts[2].startswith("$argon2"):
                    raise CredentialsError(f"{self.path}:{n}: user {parts[1]!r} has no Argon2 hash")
                users[parts[1]] = parts[2]
            else:
                if not re.fullmatch(r"sha256:[0-9a-f]{64}", parts[2]):
                    raise CredentialsError(f"{self.path}:{n}: token {parts[1]!r} has no sha256:HEX digest")
                tokens[parts[2]] = parts[1]
        self.users, self.tokens, self._mtime = users, tokens, mtime

    def save(self) -> None:
        """Write the file atomically, mode 0600 (its directory is created 0700 if missing)."""
        lines = ["# emod-view credentials, managed by: emod-view passwd (see emod-view passwd --help)"]
        lines += [f"user {name} {h}" for name, h in sorted(self.users.items())]
        lines += [f"token {name} {h}" for h, name in sorted(self.tokens.items(), key=lambda kv: kv[1])]
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, mode=0o700)
        from emod.launcher.statefiles import write_atomic

        write_atomic(self.path, "\n".join(lines) + "\n", mode=0o600)  # fsynced; a full disk leaves no temporary file
        self._mtime = os.lstat(self.path).st_mtime_ns

    def set_password(self, name: str, password: str) -> None:
        from argon2 import PasswordHasher

        if not NAME_RE.match(name):
            raise CredentialsError(f"user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
        if len(password) < 8:
            raise CredentialsError("the password needs at least 8 characters")
        self.users[name] = PasswordHasher().hash(password)

    def new_token(self, name: str) -> str:
        """A new random token for ``name`` (replacing its old one); only its hash is kept."""
        if not NAME_RE.match(name):
            raise CredentialsError(f"token name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
        self.remove(name, tokens_only=True)
        token = secrets.token_urlsafe(32)
        self.tokens[hash_token(token)] = name
        return token

    def remove(self, name: str, tokens_only: bool = False) -> bool:
        """Forget a user and/or a token of that name; whether anything was removed."""
        found = False
        if not tokens_only and name in self.users:
            del self.users[name]
            found = True
        for h in [h for h, n in self.tokens.items() if n == name]:
            del self.tokens[h]
            found = True
        return found

    def check_password(self, name: str, password: str) -> bool:
        """Argon2 verification (slow on purpose: run it off the event loop). Unknown users cost the same."""
        from argon2 import PasswordHasher
        from argon2.exceptions import Argon2Error

        ph = PasswordHasher()
        stored = self.users.get(name)
        try:
            return ph.verify(stored or _dummy_hash(), password) and stored is not None
        except (Argon2Error, ValueError):
            return False

    def check_token(self, token: str) -> str | None:
        """The name of a valid bearer token, else None."""
        digest = hash_token(token)
        for h, name in self.tokens.items():
            if hmac.compare_digest(h, digest):
                return name
        return None


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A hash of a random password, so an unknown user takes as long to refuse as a known one."""
    if not _DUMMY:
        from argon2 import PasswordHasher

        _DUMMY.append(PasswordHasher().hash(secrets.token_hex(16)))
    return _DUMMY[0]


class Sessions:
    """Random session ids -> (user, expiry), newest last; at most MAX_SESSIONS (oldest dropped)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S):
        self.ttl_s = ttl_s
        self._by_id: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def create(self, user: str) -> str:
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = (user, time.monotonic() + self.ttl_s)
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return sid

    def user(self, sid: str | None) -> str | None:
        entry = self._by_id.get(sid) if sid else None
        if entry is None:
            return None
        if time.monotonic() > entry[1]:
            del self._by_id[sid]
            return None
        return entry[0]

    def drop(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)


class FailureLimiter:
    """At most MAX_FAILURES failed attempts per client address in FAILURE_WINDOW_S seconds."""

    def __init__(self, limit: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S):
        self.limit, self.window_s = limit, window_s
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, addr: str) -> deque[float]:
        q = self._fails.get(addr)
        if q is None:
            return deque()
        now = time.monotonic()
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            del self._fails[addr]
        return q

    def retry_after(self, addr: str) -> float:
        """Seconds this address must wait before trying again (0: it may try now)."""
        q = self._recent(addr)
        if len(q) < self.limit:
            return 0.0
        return max(0.1, self.window_s - (time.monotonic() - q[0]))

    def fail(self, addr: str) -> None:
        if len(self._fails) > 10000:  # a flood of addresses: forget the idle ones
            for a in list(self._fails):
                self._recent(a)
        self._fails.setdefault(addr, deque(maxlen=self.limit * 4)).append(time.monotonic())
