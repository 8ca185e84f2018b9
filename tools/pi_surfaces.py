#!/usr/bin/env python3
"""Every surface a Pi owner uses, tried against one install's commands (``make pi-check``'s ``surfaces_ok``).

    VENV/bin/python tools/pi_surfaces.py [--bin VENV/bin] [--json FILE] [--timeout S]

In a temporary directory it starts Debian's mosquitto on 127.0.0.1 and a free port, and one daemon,
``emod run --source demo --loop`` with ``[mqtt]`` pointed at it, then checks, one entry each:

- ``web_page``: ``emod-view --http 127.0.0.1:PORT`` serves ``/`` (HTML), ``/api/emotions`` (JSON) and
  ``/events`` (an event stream with a ``data:`` line);
- ``passwd_argon2id``: ``emod-view passwd USER --stdin --file F`` writes an Argon2id hash;
- ``login_off_loopback``: ``emod-view --http 0.0.0.0:PORT --passwd-file F`` answers ``/`` with the login
  form (401), logs that user in, and then serves ``/api/emotions``;
- ``mqtt_online_discovery``: the broker holds ``online`` and the Home Assistant discovery config;
- ``events_json``: ``emod events --json --count 3`` prints three JSON lines;
- ``doctor_json``: ``emod doctor --json`` prints its checks as JSON;
- ``set_model_full_quant``: ``emod-ctl set-model full`` then ``set-model quant`` both succeed (on an
  install without PyTorch, ``full`` serves from its ONNX twin);
- ``systemd_verify``: ``systemd-analyze verify`` accepts emod.service, emod@cam1.service and
  emod-view.service rendered for this venv (``null`` where systemd-analyze is not installed);
- ``no_traceback``: no process printed a Python traceback.

``mqtt_online_discovery`` is ``null`` without a mosquitto binary. Prints (and writes to ``--json``)
``{"surfaces_ok": {name: true | false | null}, "details": {name: text}}``; exit 0 when no entry is
false, else 1. Only the standard library and paho-mqtt (a base dependency): it runs with the venv's
Python, inside an emulated root (tools/pi_check.py) or on this machine (tests/test_pi_surfaces.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

SURFACES = ("web_page", "passwd_argon2id", "login_off_loopback", "mqtt_online_discovery", "events_json", "doctor_json",
            "set_model_full_quant", "systemd_verify", "no_traceback")
DEVICE = "pisurfaces"
PASSWORD = "a long pass phrase for pi-check"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.3):
    """PREDICATE's first truthy value within TIMEOUT seconds, else None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def request(port: int, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None,
            timeout: float = 30.0, first_line: bytes | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request to 127.0.0.1:PORT; with FIRST_LINE, the body is read only until it appears."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        if first_line is None:
            return r.status, dict(r.getheaders()), r.read()
        data = b""
        while first_line not in data:
            chunk = r.read1(4096) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            data += chunk
        return r.status, dict(r.getheaders()), data
    except OSError as e:
        return 0, {}, str(e).encode()
    finally:
        conn.close()


class Broker:
    """Debian's mosquitto on 127.0.0.1 and a free port, with a paho client that records every message."""

    def __init__(self, exe: str, root: Path):
        import paho.mqtt.client as paho

        self.port = free_port()
        conf = root / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.messages: dict[str, list[bytes]] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pi-surfaces-{os.getpid()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("#")
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 2)
        self.client.connect_async("127.0.0.1", self.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.setdefault(msg.topic, []).append(msg.payload)

    def get(self, topic: str) -> list[bytes]:
        with self.lock:
            return list(self.messages.get(topic, []))

    def close(self) -> None:
        self.client.loop_stop()
        self.proc.terminate()
        self.proc.wait(10)


class Surfaces:
    """The checks against the commands in BIN, in a scratch directory; :meth:`run` returns the report."""

    def __init__(self, bin_dir: Path, timeout: float):
        self.bin, self.timeout = Path(bin_dir).absolute(), timeout  # commands run in a temporary cwd
        self.tmp = Path(tempfile.mkdtemp(prefix="emod-surfaces-"))
        self.rundir, self.logs, self.procs = self.tmp / "run", [], []
        self.ok: dict[str, bool | None] = dict.fromkeys(SURFACES)
        self.details: dict[str, str] = {}

    # --- helpers ---------------------------------------------------------------------------------------------
    def cmd(self, *args, input: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([str(self.bin / args[0]), *map(str, args[1:])], input=input, capture_output=True, text=True,
                           timeout=timeout or self.timeout, cwd=self.tmp)
        self.logs.append(r.stdout + r.stderr)
        return r

    def start(self, name: str, *args) -> tuple[subprocess.Popen, Path]:
        log = self.tmp / f"{name}.log"
        p = subprocess.Popen([str(self.bin / args[0]), *map(str, args[1:])], stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                             cwd=self.tmp, start_new_session=True)
        self.procs.append((p, log))
        return p, log

    def record(self, name: str, ok: bool, detail: str) -> None:
        self.ok[name], self.details[name] = bool(ok), detail.strip()[-600:]

    def view(self, name: str, listen: str, *extra) -> tuple[int, subprocess.Popen]:
        port = free_port()
        p, log = self.start(name, "emod-view", "--runtime-dir", self.rundir, "--http", f"{listen}:{port}", *extra)
        wait_for(lambda: p.poll() is not None or b"serving http" in log.read_bytes(), self.timeout)
        return port, p

    # --- the checks ------------------------------------------------------------------------------------------
    def run(self) -> dict:
        mosquitto = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
        broker = Broker(mosquitto, self.tmp) if mosquitto else None
        cfg = self.tmp / "emod.toml"
        cfg.write_text("[power]\nbackend = \"none\"\n" + (f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n'
                                                          f'device_id = "{DEVICE}"\nkeepalive = 5\n' if broker else ""))
        daemon, dlog = self.start("daemon", "emod", "run", "--source", "demo", "--loop", "--config", cfg,
                                  "--runtime-dir", self.rundir, "--state-dir", self.tmp / "state")
        try:
            ready = wait_for(lambda: daemon.poll() is not None or b"first result" in dlog.read_bytes(), self.timeout)
            if not ready or daemon.poll() is not None:
                detail = f"the daemon never reached its first result: {dlog.read_text(errors='replace')[-400:]}"
                for name in SURFACES:
                    self.record(name, False, detail)
                return self.report()
            self.check_web()
            self.check_passwd_and_login()
            self.check_mqtt(broker)
            self.check_events()
            self.check_doctor(cfg)
            self.check_set_model()
            self.check_systemd()
            daemon.send_signal(signal.SIGTERM)
            rc = daemon.wait(self.timeout)
            if rc != 0:
                self.details["daemon"] = f"emod run exited {rc} on SIGTERM"
        finally:
            for p, _ in self.procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        os.killpg(p.pid, signal.SIGKILL)
            if broker:
                broker.close()
        texts = self.logs + [log.read_text(errors="replace") for _, log in self.procs]
        bad = [t for t in texts if "Traceback (most recent call last)" in t]
        self.record("no_traceback", not bad, bad[0] if bad else "no traceback in any output")
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.report()

    def report(self) -> dict:
        return {"surfaces_ok": self.ok, "details": self.details}

    def check_web(self) -> None:
        port, _ = self.view("view", "127.0.0.1")
        page = request(port, "/")
        emotions = wait_for(lambda: (r := request(port, "/api/emotions"))[0] == 200 and r, self.timeout) or request(port, "/api/emotions")
        events = request(port, "/events", timeout=self.timeout, first_line=b"data:")
        try:
            json.loads(emotions[2])
            emotions_json = True
        except ValueError:
            emotions_json = False
        ok = (page[0] == 200 and b"<html" in page[2].lower() and emotions[0] == 200 and emotions_json
              and events[0] == 200 and b"data:" in events[2])
        self.record("web_page", ok, f"/ {page[0]}, /api/emotions {emotions[0]}, /events {events[0]} "
                                    f"({'a data line' if b'data:' in events[2] else events[2][:120]!r})")

    def check_passwd_and_login(self) -> None:
        pw = self.tmp / "viewer.passwd"
        r = self.cmd("emod-view", "passwd", "alice", "--stdin", "--file", pw, input=PASSWORD + "\n")
        text = pw.read_text() if pw.is_file() else ""
        self.record("passwd_argon2id", r.returncode == 0 and "$argon2id$" in text,
                    f"exit {r.returncode}; {'an Argon2id hash' if '$argon2id$' in text else 'no Argon2id hash'} in {pw.name}")
        port, _ = self.view("view-lan", "0.0.0.0", "--passwd-file", pw)
        page = request(port, "/")
        body = urlencode({"user": "alice", "password": PASSWORD, "next": "/"}).encode()
        login = request(port, "/login", "POST", {"Content-Type": "application/x-www-form-urlencoded"}, body)
        cookie = (login[1].get("Set-Cookie") or "").split(";", 1)[0]
        after = request(port, "/api/emotions", headers={"Cookie": cookie}) if cookie else (0, {}, b"")
        ok = page[0] == 401 and b'action="/login"' in page[2] and login[0] in (302, 303) and bool(cookie) and after[0] == 200
        self.record("login_off_loopback", ok, f"/ without a login {page[0]}, POST /login {login[0]}, "
                                              f"/api/emotions with the session {after[0]}")

    def check_mqtt(self, broker: Broker | None) -> None:
        if broker is None:
            self.ok["mqtt_online_discovery"], self.details["mqtt_online_discovery"] = None, "no mosquitto here"
            return
        online = wait_for(lambda: b"online" in broker.get(f"emod/{DEVICE}/availability"), self.timeout)
        config_topic = f"homeassistant/sensor/{DEVICE}/dominant_emotion/config"
        disc = wait_for(lambda: broker.get(config_topic), self.timeout)
        state = json.loads(disc[0]).get("state_topic") if disc else None
        self.record("mqtt_online_discovery", bool(online and state),
                    f"availability {'online' if online else 'missing'}; discovery {config_topic}: state_topic {state}")

    def check_events(self) -> None:
        r = self.cmd("emod", "events", "--runtime-dir", self.rundir, "--json", "--count", "3", "--timeout", self.timeout)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        try:
            parsed = [json.loads(ln) for ln in lines]
        except ValueError:
            parsed = []
        self.record("events_json", r.returncode == 0 and len(parsed) == 3, f"exit {r.returncode}, {len(parsed)} JSON line(s)")

    def check_doctor(self, cfg: Path) -> None:
        r = self.cmd("emod", "doctor", "--json", "--config", cfg)
        try:
            checks = json.loads(r.stdout)["checks"]
        except (ValueError, KeyError, TypeError):
            checks = []
        self.record("doctor_json", bool(checks), f"exit {r.returncode}, {len(checks)} check(s)")

    def check_set_model(self) -> None:
        out = []
        ok = True
        for name in ("full", "quant"):
            r = self.cmd("emod-ctl", "--runtime-dir", self.rundir, "set-model", name)
            out.append(f"set-model {name}: exit {r.returncode} {(r.stdout + r.stderr).strip()[-120:]}")
            ok &= r.returncode == 0
        self.record("set_model_full_quant", ok, "; ".join(out))

    def check_systemd(self) -> None:
        exe = shutil.which("systemd-analyze")
        if exe is None:
            self.ok["systemd_verify"], self.details["systemd_verify"] = None, "systemd-analyze is not installed"
            return
        from emod.cli.install_systemd import DEFAULT_CONFIG, UNITS, render_unit, unit_source_dir

        units = self.tmp / "units"
        units.mkdir()
        src = unit_source_dir()
        for name in UNITS:
            (units / name).write_text(render_unit((src / name).read_text(), str(self.bin.parent), DEFAULT_CONFIG))
        out, ok = [], True
        for name in ("emod.service", "emod@cam1.service", "emod-view.service"):
            r = subprocess.run([exe, "verify", str(units / name)], capture_output=True, text=True, cwd=units, timeout=self.timeout)
            ours = [ln for ln in (r.stdout + r.stderr).splitlines() if any(u in ln for u in ("emod.service", "emod@", "emod-view"))]
            ok &= r.returncode == 0 and not ours
            out.append(f"{name}: exit {r.returncode}" + (f" ({ours[0]})" if ours else ""))
        self.record("systemd_verify", ok, "; ".join(out))


def main(argv: list[str] | None = None) -> int:
    from emod.cli.argtypes import plain  # the venv's emod, as every command checked here

    p = argparse.ArgumentParser(description=plain(__doc__.split("\n\n")[0]))
    p.add_argument("--bin", type=Path, default=Path(sys.executable).parent, help="the venv's bin/ (default: this Python's)")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds each step may take (emulation is slow)")
    args = p.parse_args(argv)
    report = Surfaces(args.bin, args.timeout).run()
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 1 if any(v is False for v in report["surfaces_ok"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
