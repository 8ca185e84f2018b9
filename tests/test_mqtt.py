"""The mqtt stage against a real mosquitto: availability, Home Assistant discovery, states, events, broker outages."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from _fixtures import BIN, Daemon, clip, free_port, short_tmp, tiny_models, wait_for  # noqa: F401
from _system import executable
from emod import config
from emod.labels import LABELS
from emod.mqtt import NO_FACE, DominantWindow, Topics, discovery_configs


class Broker:
    """Debian's mosquitto on 127.0.0.1:PORT, anonymous, no persistence; start/stop at will."""

    def __init__(self, root: Path):
        self.exe = executable("mosquitto", "mosquitto")
        self.port = free_port()
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = root / "mosquitto.log"
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_for(self._accepts, 10, 0.1, "mosquitto to listen")

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """Kill it (SIGKILL: no goodbye to its clients)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Listener:
    """A real paho client subscribed to everything; keeps each topic's messages as (payload, retained)."""

    def __init__(self, port: int):
        import paho.mqtt.client as paho

        self.messages: dict[str, list[tuple[str, bool]]] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic_ns()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.setdefault(msg.topic, []).append((msg.payload.decode(), bool(msg.retain)))

    def get(self, topic: str) -> list[tuple[str, bool]]:
        with self.lock:
            return list(self.messages.get(topic, []))

    def count(self, topic: str) -> int:
        return len(self.get(topic))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_toml(root: Path, port: int) -> Path:
    p = root / "emod.toml"
    p.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "testpi"\nkeepalive = 5\n')
    return p


def test_discovery_configs_name_one_device_with_four_sensors():
    """Every discovery config is retained-ready JSON for one device, with a state topic under the device's prefix and the availability topic."""
    t = Topics("emod", "pi", "homeassistant")
    configs = discovery_configs(t, "1.0")
    assert set(configs) == {f"homeassistant/sensor/pi/{s}/config" for s in ("dominant_emotion", "faces", "fps", "watts")}
    ids = {json.dumps(c["device"], sort_keys=True) for c in configs.values()}
    assert len(ids) == 1 and all(c["state_topic"].startswith("emod/pi/") and c["availability_topic"] == "emod/pi/availability" for c in configs.values())
    assert configs["homeassistant/sensor/pi/dominant_emotion/config"]["options"] == [*LABELS, NO_FACE]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_dominant_emotion_is_the_label_with_most_face_time_in_the_window():
    """The dominant emotion follows face-time over the last seconds, and is `none` once the window holds no faces."""
    clock = FakeClock()
    w = DominantWindow(2.0, clock=clock)
    face = lambda label: {"label": label}  # noqa: E731
    for i in range(10):
        clock.t += 0.1
        w.add({"t_wall": i * 0.1, "faces": [face("happy")]})
    assert w.label() == "happy"
    for i in range(10, 40):
        clock.t += 0.1
        w.add({"t_wall": i * 0.1, "faces": [face("sad")]})
    assert w.label() == "sad"
    for i in range(40, 70):
        clock.t += 0.1
        w.add({"t_wall": i * 0.1, "faces": []})
    assert w.label() == NO_FACE


@pytest.mark.parametrize("step_s", [-3600.0, +3600.0])
def test_a_wall_clock_step_does_not_freeze_the_dominant_emotion(step_s):
    """Issue 28 kind 8 (field case 09): the wall clock stepped back (or forward) an hour right after the face left.

    The window ages on the monotonic clock: `dominant_emotion` turns `none` within dominant_window + 1 s of the last face,
    whether the messages' t_wall jumped or not, and also when no message comes at all (label() ages the window too).
    """
    clock, wall = FakeClock(), 1_765_000_000.0
    w = DominantWindow(5.0, clock=clock)
    for _ in range(200):  # 20 s of a happy face at 10 fps
        clock.t += 0.1
        wall += 0.1
        w.add({"t_wall": wall, "faces": [{"label": "happy"}]})
    assert w.label() == "happy"
    t_left, wall = clock.t, wall + step_s  # the face leaves; NTP steps the clock
    while w.label() != NO_FACE:
        clock.t += 0.1
        wall += 0.1
        w.add({"t_wall": wall, "faces": []})
        assert clock.t - t_left <= 5.0 + 1.0, "still not `none` after dominant_window + 1 s"
    # sibling: no messages at all after the face (display stopped): label() alone ages the window
    w2 = DominantWindow(5.0, clock=clock)
    w2.add({"t_wall": wall, "faces": [{"label": "sad"}]})
    clock.t += 5.5
    assert w2.label() == NO_FACE


@pytest.mark.parametrize("section, reason", [
    ('device_id = "a/b"', "device_id"),
    ('password_file = "EMPTY"\nusername = "u"', "is empty"),  # issue 28 kind 1: an empty password file
    ('password_file = "NEWLINE"\nusername = "u"', "is empty"),  # its sibling: a first line with nothing on it
    ('password_file = "/etc"\nusername = "u"', "cannot read"),  # a directory
    ('tls = true\nca_file = "/nonexistent/ca.pem"', "mqtt.ca_file: no such file"),
    ('password_file = "/nonexistent"\nusername = "u"', "password_file"),
    ('password_file = "/etc/hostname"', "needs mqtt.username"),
    ('topic_prefix = "emod/#"', "topic_prefix"),
    ("port = 70000", "port"),
    ('ca_file = "/etc/hostname"', "needs mqtt.tls"),
])
def test_emod_validate_checks_the_mqtt_section(tmp_path, section, reason):
    """`emod validate` exits 78 and names the key for a bad [mqtt] section; a good one is valid."""
    bad = tmp_path / "bad.toml"
    (tmp_path / "empty").write_text("")
    (tmp_path / "newline").write_text("\nsecond line\n")
    section = section.replace('"EMPTY"', f'"{tmp_path / "empty"}"').replace('"NEWLINE"', f'"{tmp_path / "newline"}"')
    bad.write_text(f"[mqtt]\nenabled = true\n{section}\n")
    r = subprocess.run([str(BIN / "emod"), "validate", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == config.EXIT_CONFIG and reason in r.stderr, r.stderr
    good = tmp_path / "good.toml"
    good.write_text('[mqtt]\nenabled = true\nhost = "broker.lan"\nusername = "emod"\npassword_file = "/etc/hostname"\n')
    assert subprocess.run([str(BIN / "emod"), "validate", str(good)], capture_output=True, timeout=60).returncode == 0


def _stage_pid(d: Daemon, name: str) -> int | None:
    s = d.stats()
    return s["stages"][name]["pid"] if s and name in s["stages"] else None


def test_home_assistant_sees_emod_and_an_outage_costs_nothing(short_tmp, tiny_models, clip):
    """With [mqtt] on a real mosquitto a subscriber sees retained `online`, the discovery config whose state topic carries a label;
    30 s without the broker leave fps and the daemon as they were, publishing resumes when it returns, and SIGTERM publishes `offline`."""
    broker = Broker(short_tmp)
    broker.start()
    early = Listener(broker.port)  # there from the start: sees the first track's start event
    d = Daemon(short_tmp, tiny_models, clip, args=("--config", str(mqtt_toml(short_tmp, broker.port))))
    listener = None
    try:
        d.wait_processing()
        listener = Listener(broker.port)  # comes later: sees what is retained
        t0 = time.monotonic()
        avail = wait_for(lambda: listener.get("emod/testpi/availability"), 20, what="the availability topic")
        assert avail[0] == ("online", True)
        cfg_topic = "homeassistant/sensor/testpi/dominant_emotion/config"
        ha = json.loads(wait_for(lambda: listener.get(cfg_topic), 20, what="the discovery config")[0][0])
        assert ha["device"]["identifiers"] == ["emod_testpi"] and listener.get(cfg_topic)[0][1] is True
        state = ha["state_topic"]
        wait_for(lambda: any(p in LABELS for p, _ in listener.get(state)), 20, what=f"a label on {state}")
        assert time.monotonic() - t0 < 20
        wait_for(lambda: early.get("emod/testpi/events"), 20, what="a track event")
        event = json.loads(early.get("emod/testpi/events")[0][0])
        assert event["event"] == "start" and isinstance(event["track"], int) and event["label"] in LABELS
        early.close()
        for sensor in ("faces", "fps", "watts"):
            wait_for(lambda: listener.get(f"emod/testpi/{sensor}"), 20, what=f"the {sensor} state")
        _second_instance_is_named_not_taken_over(d, broker, listener, short_tmp)

        def fps_over(seconds: float) -> float:
            samples, end = [], time.monotonic() + seconds
            while time.monotonic() < end:
                s = d.stats()
                if s and s["processed_fps"]:
                    samples.append(s["processed_fps"])
                time.sleep(1.0)
            return sum(samples) / max(1, len(samples))

        before = fps_over(8)
        mqtt_pid = _stage_pid(d, "mqtt")
        rss_before = psutil.Process(mqtt_pid).memory_info().rss
        listener.close()
        broker.stop()
        t_down = time.monotonic()
        during = fps_over(10)
        # issue 28 kind 7: the outage is visible in emod-stats (plain), emod-ctl status (exit 5, a problem line) and problems
        plain = subprocess.run([str(BIN / "emod-stats"), "--runtime-dir", str(d.rundir)], capture_output=True, text=True, timeout=30)
        status = subprocess.run([str(BIN / "emod-ctl"), "status", "--runtime-dir", str(d.rundir)], capture_output=True, text=True,
                                timeout=30)
        print("\n" + "\n".join(l for l in plain.stdout.splitlines() if "mqtt" in l) + f"\nemod-ctl status exit {status.returncode}")
        assert "mqtt DISCONNECTED" in plain.stdout and "problem: mqtt (optional): disconnected" in plain.stdout, plain.stdout
        assert status.returncode == 5 and "problem: mqtt (optional): disconnected" in status.stdout, status.stdout
        wait_for(lambda: time.monotonic() - t_down >= 12, 30, 0.5, "12 s of broker outage")
        s = d.stats()
        assert d.proc.poll() is None and s["stages"]["mqtt"]["alive"] and _stage_pid(d, "mqtt") == mqtt_pid
        # a stalled pipeline would fall to 0; the shared test machine's noise is far above the real cost
        # (measured side by side by tools/bench_outputs.py), so the bound only catches a stall
        assert during >= 0.5 * before, f"processed fps fell from {before:.1f} to {during:.1f} while the broker was down"
        rss_growth = psutil.Process(mqtt_pid).memory_info().rss - rss_before
        assert rss_growth < 20 * 2**20, f"the mqtt stage grew by {rss_growth / 2**20:.1f} MB during the outage"

        broker.start()
        listener = Listener(broker.port)  # a fresh broker: nothing retained, so everything seen is new
        wait_for(lambda: ("online", False) in listener.get("emod/testpi/availability")
                 or ("online", True) in listener.get("emod/testpi/availability"), 45, what="`online` after the broker returned")
        wait_for(lambda: listener.get("emod/testpi/fps") and listener.get(state), 30, what="publishing to resume")
        dropped = wait_for(lambda: (d.stats() or {}).get("stages", {}).get("mqtt") and _mqtt_dropped(d), 10, what="a dropped count")
        assert dropped > 0
        assert d.stop() == 0
        wait_for(lambda: listener.get("emod/testpi/availability")[-1][0] == "offline", 10, what="`offline` after SIGTERM")
        # every log line carries its stage, paho's callbacks (another thread) included
        events = [json.loads(l) for l in d.output().splitlines() if l.startswith("{")]
        paho_lines = [e for e in events if e.get("event", "").startswith(("mqtt connected", "mqtt disconnected"))]
        assert len(paho_lines) >= 2 and all(e.get("stage") == "mqtt" for e in paho_lines), paho_lines
        assert all("stage" in e for e in events), [e for e in events if "stage" not in e][:3]
    finally:
        for client in (early, listener):
            if client is not None:
                client.close()
        d.stop()
        broker.stop()


def _stage(toml: Path, root: Path) -> subprocess.Popen:
    """`emod stage mqtt` on its own (a second emod's mqtt stage), with its own runtime and state directories."""
    return subprocess.Popen([str(BIN / "emod"), "stage", "mqtt", "--config", str(toml), "--runtime-dir", str(root / "run"),
                             "--state-dir", str(root / "state")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _second_instance_is_named_not_taken_over(d: Daemon, broker: Broker, listener: Listener, root: Path) -> None:
    """Field case: two emods with one device id took each other's connection 27 times in 28 s. Now each has its own
    client id: both stay connected (no takeover, one connect each over an 8 s window), each names the clash in its
    log, the daemon in `problems`; the second one stopping leaves availability `online` and ends the clash."""
    other_root = root / "second"
    other_root.mkdir()
    other = _stage(mqtt_toml(root, broker.port), other_root)  # the same device_id "testpi"
    try:
        clash = lambda: [p for p in (d.stats() or {}).get("problems", []) if "device id 'testpi'" in p]  # noqa: E731
        named = wait_for(clash, 20, what="the clash in the daemon's problems")
        print(f"\nproblems: {named}")
        assert "another emod" in named[0] and "[mqtt] device_id" in named[0]
        time.sleep(6)  # the old client ids took each other's connection about once a second
        mq = d.stats()["mqtt"]
        assert mq["connected"] and mq["connects"] == 1 and mq["clash"], mq
        assert "already connected" not in broker.log.read_text(errors="replace")
        other.terminate()
        out = other.communicate(timeout=20)[0].decode()
        assert other.returncode == 0, out
        assert out.count('"mqtt connected"') == 1 and "mqtt device id clash" in out and mq["client_id"] in out, out[-2000:]
        assert listener.get("emod/testpi/availability")[-1][0] == "online"  # left to the daemon, no flap to offline
        wait_for(lambda: not clash(), 10, what="the clash to end when the second instance stopped")
    finally:
        if other.poll() is None:
            other.kill()
            other.wait(10)


def test_client_ids_are_unique_per_instance_and_stable_across_restarts(tmp_path):
    """emod-<device_id>-<hex>: two runtime directories (two cameras on one host) differ; the same one restarted is the same."""
    from emod.mqtt_instance import ClashDetector, client_id

    a, b = client_id("raspberrypi", tmp_path / "a"), client_id("raspberrypi", tmp_path / "b")
    assert a != b and a == client_id("raspberrypi", tmp_path / "a") and a.startswith("emod-raspberrypi-")
    me, other = ClashDetector("pi", a, tmp_path / "a"), ClashDetector("pi", b, tmp_path / "b")
    assert me.on_claim(me.claim().encode(), False) is None and me.clash is None  # its own claim
    assert me.on_claim(other.claim().encode(), True) is None and me.clash is None  # a retained claim proves nothing
    assert me.on_claim(b"garbage", False) is None and me.clash is None
    began = me.on_claim(other.claim().encode(), False, now=100.0)
    assert began and b in began and me.current(now=101.0) and not me.current(now=200.0)
    assert me.on_claim(other.claim().encode(), False, now=101.0) is None  # named once, not per claim
    me.on_claim(other.claim(leaving=True).encode(), False)
    assert me.clash is None


def test_a_renamed_device_leaves_no_ghost_and_mqtt_forget_clears_any(short_tmp):
    """Field case: device_id kitchen -> hall on one state directory left kitchen's 4 retained discovery configs.
    Now the next run deletes the previous id's retained topics; siblings: discovery turned off deletes the configs,
    and `emod mqtt-forget ID` deletes a device no state remembers."""
    broker = Broker(short_tmp)
    broker.start()

    def retained() -> set[str]:
        seen = Listener(broker.port)
        time.sleep(1.5)
        seen.close()
        return {t for t, msgs in seen.messages.items() if any(p and r for p, r in msgs)}

    def run(device_id: str, extra: str = "") -> None:
        toml = short_tmp / f"{device_id}.toml"
        toml.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\ndevice_id = "{device_id}"\n{extra}')
        watch = Listener(broker.port)
        stage = _stage(toml, short_tmp)
        try:
            wait_for(lambda: watch.get(f"emod/{device_id}/availability"), 20, what=f"{device_id} online")
            time.sleep(0.5)
            stage.terminate()
            out = stage.communicate(timeout=20)[0].decode()
            assert stage.returncode == 0, out
        finally:
            watch.close()
            if stage.poll() is None:
                stage.kill()
        return out

    try:
        run("kitchen")
        kitchen = {f"homeassistant/sensor/kitchen/{s}/config" for s in ("dominant_emotion", "faces", "fps", "watts")}
        wait_for(lambda: kitchen <= retained(), 15, what="kitchen's discovery configs")
        out = run("hall")
        assert "mqtt cleared the retained topics" in out
        left = wait_for(lambda: (r := retained()) and "homeassistant/sensor/hall/faces/config" in r
                        and not [t for t in r if "kitchen" in t] and r, 15, what="hall's configs and none of kitchen's")
        print(f"\nretained after kitchen -> hall: {sorted(left)}")
        run("hall", "discovery = false\n")  # sibling: discovery off removes the device from Home Assistant
        wait_for(lambda: not [t for t in retained() if t.startswith("homeassistant/")], 15, what="no discovery config")
        # sibling: a ghost no state directory remembers (a wiped state, another host)
        import paho.mqtt.client as paho

        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ghost-maker")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        for t in ("homeassistant/sensor/oldpi/faces/config", "homeassistant/binary_sensor/oldpi/x/config", "emod/oldpi/availability"):
            pub.publish(t, "{}", qos=1, retain=True).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        toml = short_tmp / "hall.toml"
        r = subprocess.run([str(BIN / "emod"), "mqtt-forget", "oldpi", "--config", str(toml)], capture_output=True, text=True, timeout=60)
        print(f"$ emod mqtt-forget oldpi --config hall.toml\n{r.stdout}")
        assert r.returncode == 0 and r.stdout.startswith("deleted 3 retained topics of device 'oldpi'"), r.stdout + r.stderr
        wait_for(lambda: not [t for t in retained() if "oldpi" in t], 15, what="oldpi forgotten")
        r = subprocess.run([str(BIN / "emod"), "mqtt-forget", "no/such", "--config", str(toml)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "may hold only" in r.stderr
    finally:
        broker.stop()


def _mqtt_dropped(d: Daemon) -> int:
    """The mqtt stage's dropped count as the launcher last heard it (from its telemetry), or 0."""
    from emod.client import Client

    raw = Client(d.rundir, timeout=3.0).call("stats")
    return int((raw.get("mqtt") or {}).get("dropped") or 0)


def _tls_files(root: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    f = {k: root / f"{k}.pem" for k in ("ca", "ca_key", "cert", "key")}
    csr, ext = root / "server.csr", root / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=emod test CA",
        "-keyout", str(f["ca_key"]), "-out", str(f["ca"]))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(f["key"]), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(f["ca"]), "-CAkey", str(f["ca_key"]), "-CAcreateserial", "-days", "2",
        "-extfile", str(ext), "-out", str(f["cert"]))
    return f


def test_tls_with_a_ca_file_and_a_password_file(short_tmp):
    """With tls, ca_file, username and password_file the mqtt stage logs in over TLS and announces itself, and SIGTERM publishes `offline`."""
    broker = Broker(short_tmp)
    tls = _tls_files(short_tmp)
    passwd = short_tmp / "passwd"
    subprocess.run([executable("mosquitto", "mosquitto_passwd"), "-b", "-c", str(passwd), "emod", "s3cret pass"], check=True, capture_output=True, timeout=30)
    (short_tmp / "mqtt-password").write_text("")  # issue 28 kind 1: first empty, then a password the broker refuses
    # mosquitto started by root drops to its own user before it reads these: let it
    short_tmp.chmod(0o755)
    for path in (passwd, *tls.values()):
        path.chmod(0o644)
    tls_port = free_port()
    broker.conf.write_text(
        f"per_listener_settings true\nlistener {broker.port} 127.0.0.1\nallow_anonymous true\n"
        f"listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
        f"cafile {tls['ca']}\ncertfile {tls['cert']}\nkeyfile {tls['key']}\npersistence false\n")
    broker.start()
    toml = short_tmp / "emod.toml"
    toml.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {tls_port}\ntls = true\nca_file = "{tls["ca"]}"\n'
                    f'username = "emod"\npassword_file = "{short_tmp / "mqtt-password"}"\ndevice_id = "tlspi"\n')
    listener = Listener(broker.port)  # the plain listener of the same broker
    stage = subprocess.Popen([str(BIN / "emod"), "stage", "mqtt", "--config", str(toml), "--runtime-dir", str(short_tmp / "run")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(iter(stage.stdout.readline, b"")), daemon=True).start()
    try:
        # issue 28 kind 1: an empty file and a refused login are reported and retried; fixing the file needs no restart
        wait_for(lambda: any(b"mqtt cannot start" in l and b"is empty" in l for l in out), 20, 0.2, "the empty file in the log")
        (short_tmp / "mqtt-password").write_text("wrong\n")
        wait_for(lambda: any(b"mqtt connection refused" in l for l in out), 20, 0.2, "the refused login in the log")
        assert stage.poll() is None
        (short_tmp / "mqtt-password").write_text("s3cret pass\n")
        wait_for(lambda: ("online", False) in listener.get("emod/tlspi/availability"), 20, what="`online` over TLS")
        assert any(b"mqtt password file changed" in l for l in out)
        wait_for(lambda: listener.get("homeassistant/sensor/tlspi/faces/config"), 10, what="a discovery config")
        stage.terminate()
        assert stage.wait(20) == 0
        wait_for(lambda: listener.get("emod/tlspi/availability")[-1][0] == "offline", 10, what="`offline` after SIGTERM")
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait(10)
        listener.close()
        broker.stop()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="reading as another user needs root and setpriv")
def test_a_password_file_the_service_user_cannot_read_is_named(short_tmp):
    """Issue 28 kind 1, sibling: a root-only (0600) password file, read by another user (the service's), is a one-line
    CredentialError naming the file, the user and the fix (validate/doctor/the mqtt stage all use read_password)."""
    from _fixtures import REPO

    short_tmp.chmod(0o755)  # the other user may reach the directory, not read the file
    pw = short_tmp / "mqtt-password"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    # the other user imports a copy of emod it can reach: the checkout may sit in a directory only root may enter
    shutil.copytree(REPO / "emod", short_tmp / "src" / "emod", ignore=shutil.ignore_patterns("zoo", "demo", "yunet", "__pycache__"))
    for d in (short_tmp / "src", *(short_tmp / "src").rglob("*")):
        d.chmod(0o755 if d.is_dir() else 0o644)
    code = ("import sys; sys.path.insert(0, sys.argv[1])\nfrom emod.mqtt import CredentialError, read_password\n"
            "try:\n    read_password(sys.argv[2])\nexcept CredentialError as e:\n    print(e)\n    sys.exit(78)\n")
    r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c", code,
                        str(short_tmp / "src"), str(pw)], capture_output=True, text=True, timeout=60)
    print(r.stdout.strip())
    assert r.returncode == 78 and "is not readable by user nobody" in r.stdout and "chmod 0640" in r.stdout, r.stdout + r.stderr
