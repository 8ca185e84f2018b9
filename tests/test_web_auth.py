"""emod-view --http security without a daemon: refusal to serve openly, logins, tokens, rate limits, TLS, and 503 when emod is down."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from urllib.parse import urlencode

import pytest

from _fixtures import BIN, free_port, short_tmp  # noqa: F401
from _web import View, request
from emod.netaddr import is_loopback
from emod.viewer.http import parse_listen

PASSWORD = "correct horse battery"
DATA_PATHS = ["/", "/stream.mjpg", "/snapshot.jpg", "/stats.json", "/history.json", "/api/stats", "/api/emotions",
              "/api/timeline", "/events", "/static/app.js", "/static/style.css"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def passwd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "emod-view"), "passwd", *args], input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture
def creds(short_tmp):
    """A password file with user alice and a bearer token; yields (path, token)."""
    path = short_tmp / "viewer.passwd"
    r = passwd("alice", "--stdin", "--file", str(path), stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    r = passwd("--token", "script", "--file", str(path))
    assert r.returncode == 0, r.stderr
    return path, r.stdout.strip()


def login(base: str, user: str, password: str, source: str = "127.0.0.1", **kw):
    body = urlencode({"user": user, "password": password, "next": "/"}).encode()
    return request(base, "/login", "POST", FORM, body, source=source, **kw)


def test_parse_listen_and_loopback() -> None:
    """--http takes PORT or HOST:PORT (127.0.0.1 by default), and only 127/8, ::1 and localhost count as loopback."""
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("0.0.0.0:81") == ("0.0.0.0", 81)
    assert parse_listen("[::1]:82") == ("::1", 82)
    with pytest.raises(ValueError):
        parse_listen("host:http")
    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1") and is_loopback("localhost")
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "pi.local"]))


def test_non_loopback_bind_without_credentials_refuses_to_start(short_tmp) -> None:
    """--http 0.0.0.0:PORT with no password file exits 2 before binding, naming the file and the command that fixes it."""
    pw = short_tmp / "none.passwd"
    r = subprocess.run([str(BIN / "emod-view"), "--runtime-dir", str(short_tmp), "--http", f"0.0.0.0:{free_port()}",
                        "--passwd-file", str(pw)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "not a loopback address" in r.stderr and str(pw) in r.stderr and "emod-view passwd USER" in r.stderr
    assert "serving" not in r.stderr


def test_passwd_manages_argon2_users_and_tokens(short_tmp, creds) -> None:
    """emod-view passwd writes a 0600 file of Argon2id hashes and token digests, lists, deletes, and refuses short passwords."""
    path, token = creds
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert "user alice $argon2id$" in text and PASSWORD not in text and token not in text and "token script sha256:" in text
    assert len(token) >= 40
    r = passwd("--list", "--file", str(path))
    assert r.returncode == 0 and r.stdout.split() == ["user", "alice", "token", "script"]
    r = passwd("bob", "--stdin", "--file", str(path), stdin="short\n")
    assert r.returncode == 2 and "at least 8 characters" in r.stderr
    assert passwd("--delete", "nobody", "--file", str(path)).returncode == 2
    os.chmod(path, 0o666)
    r = passwd("--list", "--file", str(path))
    assert r.returncode == 2 and "writable by others" in r.stderr and str(path) in r.stderr


def test_every_endpoint_needs_a_login_or_token(short_tmp, creds) -> None:
    """With --auth, every endpoint answers 401 without a cookie or token; a token or a session from the login form gets through."""
    path, token = creds
    v = View(short_tmp, short_tmp / "view.log", "--auth", "--passwd-file", str(path))
    try:
        for p in DATA_PATHS:
            code, headers, body = request(v.base, p)
            assert code == 401, (p, code, body[:200])
            assert headers["WWW-Authenticate"].startswith("Bearer")
        code, _, page = request(v.base, "/")
        assert b'action="/login"' in page  # the page's 401 is the login form
        code, _, _ = request(v.base, "/api/stats", headers={"Authorization": "Bearer wrong"}, source="127.0.0.9")
        assert code == 401
        for p in DATA_PATHS:  # no daemon: past the login, the data endpoints say why they cannot answer
            code, _, body = request(v.base, p, headers={"Authorization": f"Bearer {token}"})
            assert code == (200 if p in ("/", "/static/app.js", "/static/style.css") else 503), (p, code, body[:200])

        code, headers, _ = login(v.base, "alice", PASSWORD)
        assert code == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"]
        assert "emod_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        jar = {"Cookie": cookie.split(";")[0]}
        code, _, body = request(v.base, "/api/stats", headers=jar)
        assert code == 503 and "is emod running" in json.loads(body)["error"]
        code, _, page = request(v.base, "/", headers=jar)
        assert code == 200 and b'id="stream"' in page

        assert passwd("--delete", "alice", "--file", str(path)).returncode == 0
        assert request(v.base, "/api/stats", headers=jar)[0] == 401, "a deleted user's session still works"
        assert request(v.base, "/api/stats", headers={"Authorization": f"Bearer {token}"})[0] == 503
    finally:
        assert v.stop() == 0


def test_failed_logins_are_rate_limited_per_address(short_tmp, creds) -> None:
    """Five wrong passwords from one address, then 429 with Retry-After even for the right one; other addresses may log in; big or cross-origin logins are refused."""
    path, _ = creds
    v = View(short_tmp, short_tmp / "view.log", "--auth", "--passwd-file", str(path))
    try:
        codes = [login(v.base, "alice", f"wrong-{i}", source="127.0.0.5")[0] for i in range(5)]
        code, headers, body = login(v.base, "alice", PASSWORD, source="127.0.0.5")
        print(f"\nwrong logins: {codes}, then the right password from the same address: {code} (Retry-After {headers['Retry-After']} s)")
        assert codes == [401] * 5 and code == 429 and 0 < int(headers["Retry-After"]) <= 61
        assert b"Too many failed logins" in body
        assert request(v.base, "/api/stats", source="127.0.0.5", headers={"Authorization": "Bearer x"})[0] == 429
        # a locked-out browser at / (field case: it saw {"ok":false,...}) gets the login form with the wait
        code, headers, body = request(v.base, "/", source="127.0.0.5", headers={"Accept": "text/html,*/*;q=0.8"})
        print(f"locked-out browser at /: {code} {headers['Content-Type']} Retry-After {headers['Retry-After']}")
        assert code == 429 and headers["Content-Type"].startswith("text/html") and int(headers["Retry-After"]) > 0
        assert b"Too many failed logins. Try again in" in body and b'name="password"' in body and b'"ok"' not in body
        # siblings: GET /login and a browser opening another page (no Accept) say the same; scripts keep JSON
        for path, accept in (("/login", ""), ("/history.json", "text/html")):
            code, headers, body = request(v.base, path, source="127.0.0.5", headers={"Accept": accept} if accept else None)
            assert code == 429 and b"Try again in" in body and headers["Content-Type"].startswith("text/html"), (path, code, body[:80])
        code, headers, body = request(v.base, "/api/stats", source="127.0.0.5")
        assert code == 429 and json.loads(body)["ok"] is False
        assert login(v.base, "alice", PASSWORD, source="127.0.0.6")[0] == 303
        assert login(v.base, "mallory", PASSWORD, source="127.0.0.6")[0] == 401  # unknown users fail the same way
        code, _, _ = request(v.base, "/login", "POST", {**FORM, "Origin": "http://evil.example"},
                             urlencode({"user": "alice", "password": PASSWORD}).encode(), source="127.0.0.7")
        assert code == 403
        code, _, body = request(v.base, "/login", "POST", FORM, b"user=alice&password=" + b"a" * 1_000_000, source="127.0.0.8")
        assert code == 413, (code, body[:200])  # bodies are capped at 16 KiB
    finally:
        assert v.stop() == 0


def test_tls_serves_https_with_secure_cookies(short_tmp, creds) -> None:
    """--tls-cert/--tls-key serve HTTPS; the session cookie is then Secure; plain HTTP to it fails."""
    import ssl

    path, _ = creds
    cert, key = short_tmp / "cert.pem", short_tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    v = View(short_tmp, short_tmp / "view.log", "--auth", "--passwd-file", str(path), "--tls-cert", str(cert),
             "--tls-key", str(key), scheme="https")
    ctx = ssl.create_default_context(cafile=str(cert))
    try:
        assert "serving https://" in v.output()
        code, headers, _ = login(v.base, "alice", PASSWORD, context=ctx)
        assert code == 303 and "Secure" in headers["Set-Cookie"]
        code, _, _ = request(v.base, "/stats.json", context=ctx)
        assert code == 401
        with pytest.raises(Exception):
            request(v.base.replace("https", "http"), "/stats.json", timeout=5)
    finally:
        assert v.stop() == 0
    r = subprocess.run([str(BIN / "emod-view"), "--runtime-dir", str(short_tmp), "--http", str(free_port()), "--tls-cert",
                        str(cert), "--tls-key", str(short_tmp / "missing.pem")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "missing.pem" in r.stderr


def test_daemon_down_every_endpoint_answers_503_at_once(short_tmp) -> None:
    """With no daemon, every data endpoint answers 503 within a second with the reason; the page itself loads to show it."""
    v = View(short_tmp, short_tmp / "view.log")
    try:
        for p in DATA_PATHS:
            t0 = time.monotonic()
            code, headers, body = request(v.base, p, timeout=5)
            took = time.monotonic() - t0
            if p in ("/", "/static/app.js", "/static/style.css"):
                assert code == 200, p
                continue
            assert code == 503 and took < 1.0, (p, code, took)
            assert headers["Retry-After"] and "is emod running" in json.loads(body)["error"], (p, body)
    finally:
        assert v.stop() == 0
