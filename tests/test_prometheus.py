"""The Prometheus /metrics endpoint: the renderer on a fixed snapshot, the server, and a live daemon scraped over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from _fixtures import BIN, EMOD, Daemon, free_port, hamilton, short_tmp, tiny_models, wait_for  # noqa: F401
from emod.launcher.prometheus import MetricsError, MetricsServer, parse_address, render

SNAPSHOT = {
    "version": 1, "time": 1_800_000_000.0, "uptime_s": 12.5, "model": "quant",
    "stages": {
        "capture": {"pid": 10, "alive": True, "restarts": 0, "fps": 30.0, "rss_mb": 64.0, "cpu_percent": 5.5},
        "infer": {"pid": 11, "alive": False, "restarts": 2, "fps": 9.5, "rss_mb": None, "cpu_percent": None},
        "launcher": {"pid": 9, "alive": True, "restarts": 0, "fps": None, "rss_mb": 32.0, "cpu_percent": 1.0},
    },
    "frames": {"captured": 300, "processed": 95, "dropped": 180},
    "processed_fps": 9.5,
    "latency_ms": {"p50": 80.25, "p95": 120.0},
    "inference_ms": {"model": "quant", "p50": 40.0, "p95": 61.5},
    "faces_per_s": 4.0,
    "power": {"watts": 6.75, "backend": "pi5-pmic"},
    "energy_per_inference_j": {"quant": 0.7, "full": None},
    "rejected": {"total": 3, "by_socket": {"launcher.telemetry": 3}},
    "total_rss_mb": 96.0,
    "source": {"name": 'cam "0"\\x', "error": None, "eos": False},
}


def families(text: str) -> dict:
    """Parsed families by name -> {(sample name, frozenset(labels)): value}."""
    out = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = (fam.type, {(s.name, frozenset(s.labels.items())): s.value for s in fam.samples})
    return out


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def test_render_fixed_snapshot() -> None:
    """A fixed snapshot renders to parseable exposition text with the expected families, types and values."""
    text = render(SNAPSHOT)
    assert text.endswith("\n") and "# HELP emod_processed_fps " in text and "# TYPE emod_frames_total counter" in text
    f = families(text)
    assert f["emod_processed_fps"] == ("gauge", {("emod_processed_fps", frozenset()): 9.5})
    assert f["emod_frames"][0] == "counter"
    assert f["emod_frames"][1] == {("emod_frames_total", frozenset({("kind", k)})): v
                                   for k, v in (("captured", 300), ("processed", 95), ("dropped", 180))}
    lat = f["emod_latency_ms"][1]
    assert lat[("emod_latency_ms", frozenset({("quantile", "0.5")}))] == 80.25
    assert lat[("emod_latency_ms", frozenset({("quantile", "0.95")}))] == 120.0
    assert f["emod_inference_ms"][1][("emod_inference_ms", frozenset({("quantile", "0.95"), ("model", "quant")}))] == 61.5
    assert f["emod_power_watts"][1] == {("emod_power_watts", frozenset({("backend", "pi5-pmic")})): 6.75}
    assert f["emod_energy_per_inference_joules"][1] == {("emod_energy_per_inference_joules", frozenset({("model", "quant")})): 0.7}
    up = f["emod_stage_up"][1]
    assert up[("emod_stage_up", frozenset({("stage", "infer")}))] == 0 and up[("emod_stage_up", frozenset({("stage", "capture")}))] == 1
    assert f["emod_stage_restarts"][1][("emod_stage_restarts_total", frozenset({("stage", "infer")}))] == 2
    rss = f["emod_stage_rss_bytes"][1]
    assert rss[("emod_stage_rss_bytes", frozenset({("stage", "capture")}))] == 64 * 2**20
    assert ("emod_stage_rss_bytes", frozenset({("stage", "infer")})) not in rss  # null: left out
    assert f["emod_rejected_messages"][1] == {("emod_rejected_messages_total", frozenset()): 3}
    info = f["emod_info"][1]
    assert info == {("emod_info", frozenset({("model", "quant"), ("source", 'cam "0"\\x')})): 1}  # escaping round-trips


def test_null_power_is_omitted() -> None:
    """Without a power reading (watts null) there is no emod_power_watts family at all."""
    s = dict(SNAPSHOT, power={"watts": None, "backend": "none"}, processed_fps=None)
    text = render(s)
    assert "emod_power_watts" not in text and "emod_processed_fps" not in text
    assert ("emod_frames_total", frozenset({("kind", "processed")})) in families(text)["emod_frames"][1]


def test_parse_address() -> None:
    """HOST:PORT parses; an empty host means 127.0.0.1; IPv6 in brackets; garbage is a MetricsError."""
    assert parse_address("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_address(":9100") == ("127.0.0.1", 9100)
    assert parse_address("[::1]:9100") == ("::1", 9100)
    for bad in ("9100", "host:", "host:port", "h:99999"):
        with pytest.raises(MetricsError):
            parse_address(bad)


def test_server_serves_metrics_and_404() -> None:
    """The server answers /metrics with the text format, 404 elsewhere, and frees its port on close()."""
    calls = []

    def snapshot():
        calls.append(1)
        return SNAPSHOT

    server = MetricsServer("127.0.0.1:0", snapshot)
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        status, ctype, body = get(server.url)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4") and calls
        assert "emod_processed_fps 9.5" in body
        assert get(server.url.replace("/metrics", "/"))[0] == 404
        assert get(server.url.replace("/metrics", "/other"))[0] == 404
        server.update(dict(SNAPSHOT, processed_fps=1.25))  # push mode: scrapes serve the pushed snapshot
        n = len(calls)
        assert "emod_processed_fps 1.25" in get(server.url)[2] and len(calls) == n
    finally:
        server.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)


def test_port_in_use_is_a_clear_error() -> None:
    """Binding a port already taken raises MetricsError naming the address."""
    first = MetricsServer("127.0.0.1:0", lambda: SNAPSHOT)
    try:
        with pytest.raises(MetricsError, match=f"127.0.0.1:{first.port}"):
            MetricsServer(f"127.0.0.1:{first.port}", lambda: SNAPSHOT)
    finally:
        first.close()


def test_snapshot_failure_is_a_500_not_a_crash() -> None:
    """A snapshot function that raises gives HTTP 500 and the server keeps serving."""
    def broken():
        raise KeyError("boom")

    server = MetricsServer("127.0.0.1:0", broken)
    try:
        assert get(server.url)[0] == 500
        server.update(SNAPSHOT)
        assert get(server.url)[0] == 200
    finally:
        server.close()


def validate(root, addr: str) -> subprocess.CompletedProcess:
    toml = root / "prom.toml"
    toml.write_text(f'[telemetry]\nprometheus = "{addr}"\n')
    return subprocess.run([str(EMOD), "validate", str(toml)], capture_output=True, text=True, timeout=60)


def test_validate_and_doctor_check_the_prometheus_address(short_tmp) -> None:
    """Issue 28 kind 2 (field case 12): a port another program holds, an address not on this host, a malformed address: exit 78
    naming it; `emod doctor` says the same in its preflight row (a warning: emod runs without it)."""
    hold = socket.socket()
    hold.bind(("127.0.0.1", 0))
    hold.listen()
    port = hold.getsockname()[1]
    try:
        for addr, words in ((f"127.0.0.1:{port}", "already in use"), ("192.0.2.1:9100", "not an address of this host"),
                            ("localhost", "not HOST:PORT")):
            r = validate(short_tmp, addr)
            print(r.stderr.strip().splitlines()[-1])
            assert r.returncode == 78 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        doc = subprocess.run([str(EMOD), "doctor", "--json", "--config", str(validate(short_tmp, f"127.0.0.1:{port}").args[-1])],
                             capture_output=True, text=True, timeout=120)
        row = [c for c in json.loads(doc.stdout)["checks"] if c["name"] == "preflight"][0]
        assert row["status"] == "warn" and "already in use" in row["verdict"], row  # emod runs; Prometheus will not
    finally:
        hold.close()
    assert validate(short_tmp, f"127.0.0.1:{port}").returncode == 0  # free again


def test_live_daemon_metrics(short_tmp, tiny_models, hamilton) -> None:
    """A daemon started with EMOD_TELEMETRY_PROMETHEUS serves /metrics with live frame counts and all stages up.

    Issue 28 kinds 1 and 2 at once: the port is held by another program when emod starts, and MQTT's password file is empty
    (field cases 12 and 04). The sensor runs and keeps processing frames, no stage restarts, `problems` names both parts
    (emod-ctl status exits 5); once the port is free the endpoint comes up by itself (retried with backoff)."""
    hold = socket.socket()
    hold.bind(("127.0.0.1", 0))
    hold.listen()
    port = hold.getsockname()[1]
    (short_tmp / "pw").write_text("")
    toml = short_tmp / "mqtt.toml"
    toml.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = 1\nusername = "emod"\npassword_file = "{short_tmp / "pw"}"\n')
    d = Daemon(short_tmp, tiny_models, hamilton, env={"EMOD_TELEMETRY_PROMETHEUS": f"127.0.0.1:{port}"}, args=("--config", str(toml)))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        first = d.wait_processing()["frames"]["processed"]

        def both():
            s = d.stats()
            found = s and sorted(p for p in s["problems"] if p.startswith(("prometheus (optional)", "mqtt (optional)")))
            return found if found and len(found) == 2 else None

        found = wait_for(both, 20, 0.5, "problems naming Prometheus and MQTT")
        print("\n" + "\n".join(found))
        assert "is empty" in found[0] and "Address already in use" in found[1] and d.proc.poll() is None
        status = subprocess.run([str(BIN / "emod-ctl"), "status", "--runtime-dir", str(d.rundir)], capture_output=True, text=True,
                                timeout=30)
        assert status.returncode == 5 and "problem: mqtt (optional): error: mqtt.password_file" in status.stdout, status.stdout
        s = wait_for(lambda: (s := d.stats())["frames"]["processed"] > first + 10 and s, 20, 0.3, "frames.processed rising")
        assert all(st["restarts"] == 0 for st in s["stages"].values()), s["stages"]
        hold.close()
        def serving():
            try:
                return get(url)[0] == 200
            except OSError:
                return False

        wait_for(serving, 30, 0.5, "the endpoint once the port is free")
        assert validate(short_tmp, f"127.0.0.1:{port}").returncode == 0  # served by emod itself: not a conflict

        def scrape():
            status, _, body = get(url)
            f = families(body) if status == 200 else {}
            up = all(f.get("emod_stage_up", (None, {}))[1].get(("emod_stage_up", frozenset({("stage", s)}))) == 1
                     for s in ("capture", "infer", "display", "power"))
            processed = f.get("emod_frames", (None, {}))[1].get(("emod_frames_total", frozenset({("kind", "processed")})), 0)
            return f if up and processed > 0 else None  # the endpoint serves the launcher's latest report

        f = wait_for(scrape, 30, 0.5, "every stage up in /metrics")
        frames = f["emod_frames"][1]
        assert frames[("emod_frames_total", frozenset({("kind", "processed")}))] > 0
        assert frames[("emod_frames_total", frozenset({("kind", "captured")}))] > 0
        for name in ("emod_info", "emod_uptime_seconds", "emod_processed_fps", "emod_latency_ms", "emod_inference_ms",
                     "emod_stage_restarts", "emod_stage_rss_bytes", "emod_rejected_messages", "emod_total_rss_bytes"):
            assert name in f, name
        assert ("emod_info", frozenset({("model", "tiny"), ("source", str(hamilton))})) in f["emod_info"][1]
        assert f["emod_inference_ms"][1][("emod_inference_ms", frozenset({("quantile", "0.5"), ("model", "tiny")}))] > 0
        assert "emod_power_watts" not in f  # power backend none: watts null, left out
        assert f["emod_rejected_messages"][1][("emod_rejected_messages_total", frozenset())] == 0
        assert get(f"http://127.0.0.1:{port}/")[0] == 404

        def face_seconds():  # the demo clip's face, counted per smoothed label
            fams = families(get(url)[2])
            per_label = fams.get("emod_face_seconds", (None, {}))[1]
            return fams if len(per_label) == 7 and sum(per_label.values()) > 0 else None

        f = wait_for(face_seconds, 30, 0.5, "face-seconds in /metrics")
        assert f["emod_faces"][1][("emod_faces", frozenset())] >= 0 and f["emod_tracks"][1][("emod_tracks_total", frozenset())] >= 1
        assert d.stop() == 0
        with pytest.raises(OSError):  # closed with the daemon
            urllib.request.urlopen(url, timeout=2)
    finally:
        d.kill()
