"""MQTT stage (``[mqtt] enabled``): emotions to a broker, and emod as a Home Assistant device.

It subscribes to the ``emotions`` stream like any client and publishes with paho-mqtt
(topics and payloads in :mod:`emod.mqtt`):

* ``availability``: ``online`` (retained) on every connect; the broker's last will says
  ``offline`` if emod dies, and a clean stop publishes ``offline`` itself;
* ``dominant_emotion`` and ``faces`` (retained) when they change, at most twice a second;
* ``fps`` and ``watts`` (retained) every ``STATS_PERIOD_S``, from the launcher's snapshot;
* ``events``: one JSON object per track start, label change and track end;
* Home Assistant discovery configs (retained) on every connect, when ``discovery`` is on;
* ``instance``: a non-retained claim on connect and every ``STATS_PERIOD_S``, to notice a second
  emod under the same device id (:mod:`emod.mqtt_instance`): named in the log and in ``problems``;
* on connect, empty retained payloads on the retained topics the previous run (same state
  directory, same broker) published and this one does not: a renamed device leaves no ghost.

The client id is ``emod-<device_id>-<8 hex>``, one per instance (:func:`emod.mqtt_instance.client_id`).

paho's network thread connects and reconnects with backoff (1 s doubling to 30 s). The
broker being down or slow never reaches the pipeline: this is a separate process, and the
emotions socket drops for it at its high-water mark. While disconnected nothing is queued:
messages are counted as ``dropped`` (telemetry), so memory stays flat; on reconnect the
current states are published again.
"""

from __future__ import annotations

import json
import threading
import time

from emod import protocol
from emod.events import Subscriber, TrackEvents
from emod import bus, mqtt_instance
from emod.mqtt import (NO_FACE, CredentialError, Debounced, DominantWindow, Topics, check_ca_file, default_device_id,
                       discovery_configs, read_password)
from emod.stages.base import Stage

STATS_PERIOD_S = 5.0
CREDENTIAL_RETRY_MAX_S = 60.0  # a bad password/CA file: read it again after 2 s, doubling to this
MAX_PENDING = 100  # QoS 0 messages handed to paho but not yet written to the socket (slow broker)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("emod")
    except Exception:
        return "unknown"


class MqttStage(Stage):
    name = "mqtt"

    def setup(self) -> None:
        import paho.mqtt.client as paho

        m = self.cfg.mqtt
        self.topics = Topics(m.topic_prefix, m.device_id or default_device_id(), m.discovery_prefix)
        self.sub = Subscriber(self.rundir, ctx=self.ctx, hwm=100)
        self.track_events = TrackEvents()
        self.dominant = DominantWindow(m.dominant_window)
        self.states = {protocol.MQTT_DOMINANT: Debounced(), protocol.MQTT_FACES: Debounced(),
                       protocol.MQTT_FPS: Debounced(0.0), protocol.MQTT_WATTS: Debounced(0.0)}
        self.published = self.dropped = self.connects = self.pending = 0
        self.lock = threading.Lock()
        self.next_stats = 0.0
        self.client_id = mqtt_instance.client_id(self.topics.device_id, self.rundir)
        self.claims = mqtt_instance.ClashDetector(self.topics.device_id, self.client_id, self.rundir)
        self.record = mqtt_instance.PublishedRecord(bus.state_dir(self.cfg.daemon.state_dir or None))
        self.state, self.error = "connecting", None  # connecting, connected, disconnected, refused, error
        self.client = None
        self.retry_at, self.retry_s = 0.0, 2.0
        self.password: str | None = None
        self._paho = paho
        self._try_start()

    def _try_start(self) -> None:
        """Read the credentials and start paho's network thread; a bad file is reported (state ``error``) and retried."""
        m = self.cfg.mqtt
        try:
            password = read_password(m.password_file) if m.username and m.password_file else None
            if m.tls and m.ca_file:
                check_ca_file(m.ca_file)
            c = self._paho.Client(self._paho.CallbackAPIVersion.VERSION2, client_id=self.client_id)
            if m.username:
                c.username_pw_set(m.username, password)
            self.password = password
            if m.tls:
                c.tls_set(ca_certs=m.ca_file or None)
        except (CredentialError, OSError, ValueError) as e:  # ssl.SSLError is an OSError
            self.retry_at, self.retry_s = time.monotonic() + self.retry_s, min(self.retry_s * 2, CREDENTIAL_RETRY_MAX_S)
            if self.error != str(e):
                self.log.error("mqtt cannot start; the sensor keeps running, retrying", error=str(e), retry_s=self.retry_s)
            self.state, self.error = "error", str(e)
            return
        c.will_set(self.topics.availability, "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.max_queued_messages_set(MAX_PENDING)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.message_callback_add(self.topics.state(protocol.MQTT_INSTANCE), self._on_claim)
        self.client = c
        self.state, self.error = "connecting", None
        c.connect_async(m.host, m.port, keepalive=m.keepalive)
        c.loop_start()
        self.log.info("mqtt connecting", host=m.host, port=m.port, base=self.topics.base, client_id=self.client_id)

    # --- paho's thread ------------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:  # e.g. "Not authorized": paho retries with backoff
            if self.error != f"broker refused the connection: {reason_code}":
                self.log.warning("mqtt connection refused", reason=str(reason_code))
            self.state, self.error = "refused", f"broker refused the connection: {reason_code}"
            return
        self.state, self.error = "connected", None
        self.connects += 1
        self.log.info("mqtt connected", broker=f"{self.cfg.mqtt.host}:{self.cfg.mqtt.port}", connects=self.connects)
        with self.lock:
            self.pending = 0
        claim_topic = self.topics.state(protocol.MQTT_INSTANCE)
        client.subscribe(claim_topic, qos=0)
        client.publish(claim_topic, self.claims.claim(), qos=0)
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        configs = discovery_configs(self.topics, _version())
        if self.cfg.mqtt.discovery:
            for topic, config in configs.items():
                client.publish(topic, json.dumps(config, separators=(",", ":")), qos=1, retain=True)
        self._clear_stale(client, mqtt_instance.retained_topics(self.topics, self.cfg.mqtt.discovery, configs))
        for state in self.states.values():
            state.forget()  # the main loop publishes the current values again

    def _clear_stale(self, client, current: list[str]) -> None:
        """Delete the retained topics the previous run published and this one does not (a rename); remember this run's."""
        broker = f"{self.cfg.mqtt.host}:{self.cfg.mqtt.port}"
        previous, stale = self.record.stale(broker, current)
        if stale:
            n = mqtt_instance.clear(client.publish, stale)
            self.log.info("mqtt cleared the retained topics of the previous device id", previous=previous,
                          device_id=self.topics.device_id, topics=n)
        try:
            self.record.save(broker, self.topics.device_id, current)
        except OSError as e:
            self.log.warning("mqtt cannot remember its retained topics; a later rename leaves them", error=str(e))

    def _on_claim(self, client, userdata, msg) -> None:
        began = self.claims.on_claim(msg.payload, bool(msg.retain))
        if began:
            self.log.warning("mqtt device id clash: " + began, other=self.claims.other, client_id=self.client_id)

    def _on_connect_fail(self, client, userdata) -> None:
        if self.state != "refused":
            self.state, self.error = "disconnected", f"cannot reach the broker at {self.cfg.mqtt.host}:{self.cfg.mqtt.port}"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.running:
            if self.state == "connected":
                self.log.warning("mqtt disconnected; reconnecting with backoff", reason=str(reason_code))
                self.state, self.error = "disconnected", f"lost the broker at {self.cfg.mqtt.host}:{self.cfg.mqtt.port}: {reason_code}"
            elif self.state != "refused":
                self.state = "disconnected"

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.lock:
            self.pending = max(0, self.pending - 1)

    # --- the stage loop -----------------------------------------------------------------------------
    def _send(self, topic: str, payload: str, retain: bool = False) -> bool:
        """Publish at QoS 0 if connected and the broker keeps up; otherwise count it as dropped."""
        with self.lock:
            if self.client is None or not self.client.is_connected() or self.pending >= MAX_PENDING:
                self.dropped += 1
                return False
            self.pending += 1
        info = self.client.publish(topic, payload, qos=0, retain=retain)
        if info.rc != 0:
            with self.lock:
                self.pending = max(0, self.pending - 1)
                self.dropped += 1
            return False
        self.published += 1
        return True

    def _reread_password(self) -> None:
        """While the broker refuses the login: read the password file again; a new password is used on the next try."""
        m = self.cfg.mqtt
        self.retry_at = time.monotonic() + 5.0
        try:
            password = read_password(m.password_file)
        except CredentialError as e:
            self.error = str(e)
            return
        if password != self.password:
            self.password = password
            self.client.username_pw_set(m.username, password)
            self.log.info("mqtt password file changed; logging in again")

    def step(self) -> None:
        if self.client is None and time.monotonic() >= self.retry_at:
            self._try_start()
        elif self.state == "refused" and self.cfg.mqtt.password_file and time.monotonic() >= self.retry_at:
            self._reread_password()
        message = self.sub.recv(timeout=0.2)
        if message is not None:
            self.dominant.add(message)
            self.states[protocol.MQTT_DOMINANT].set(self.dominant.label())
            self.states[protocol.MQTT_FACES].set(str(len(message["faces"])))
            for event in self.track_events.feed(message):
                self._send(self.topics.events, json.dumps(event, separators=(",", ":"), allow_nan=False))
        elif self.sub.last_t is None or time.monotonic() - self.sub.last_t > self.cfg.mqtt.dominant_window:
            self.states[protocol.MQTT_DOMINANT].set(NO_FACE)  # no frames at all: nobody seen
            self.states[protocol.MQTT_FACES].set("0")
        now = time.monotonic()
        if now >= self.next_stats:
            self.next_stats = now + STATS_PERIOD_S
            self._poll_stats()
            self._send(self.topics.state(protocol.MQTT_INSTANCE), self.claims.claim())
        for suffix, state in self.states.items():
            value = state.due(now)
            if value is not None and self._send(self.topics.state(suffix), value, retain=True):
                state.mark_sent(now)

    def _poll_stats(self) -> None:
        from emod.client import Client, ClientError

        try:
            snap = Client(self.rundir, timeout=1.0).call("stats")
        except ClientError:
            return
        fps = snap.get("processed_fps")
        watts = (snap.get("power") or {}).get("watts")
        self.states[protocol.MQTT_FPS].set(f"{fps:.1f}" if fps is not None else "0.0")
        self.states[protocol.MQTT_WATTS].set(f"{watts:.2f}" if watts is not None else "None")  # Home Assistant: unknown

    def teardown(self) -> None:
        if self.client is None:
            self.sub.close()
            return
        if self.claims.current():  # another emod publishes under this device id: its availability stands
            self.log.info("mqtt leaves availability to the other instance of this device id", other=self.claims.other)
            self._publish_wait(self.topics.state(protocol.MQTT_INSTANCE), self.claims.claim(leaving=True), retain=False)
        else:
            self._publish_wait(self.topics.availability, "offline", retain=True)
        self.client.disconnect()
        self.client.loop_stop()
        self.sub.close()

    def _publish_wait(self, topic: str, payload: str, retain: bool) -> None:
        """Publish at QoS 1 and wait up to 2 s for the broker's ack (a clean stop's last words)."""
        if not self.client.is_connected():
            return
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(timeout=2.0)
        except (RuntimeError, ValueError):
            pass

    def stats(self) -> dict:
        connected = self.client is not None and self.client.is_connected()
        state = "connected" if connected else ("connecting" if self.state == "connected" else self.state)
        return {"connected": connected, "state": state, "error": None if connected else self.error, "connects": self.connects,
                "published": self.published, "dropped": self.dropped, "received": self.sub.received,
                "client_id": self.client_id, "clash": self.claims.clash}
