"""``emod mqtt-forget DEVICE_ID``: delete a device's retained topics from the broker, so Home Assistant forgets it.

    emod mqtt-forget kitchen --config /etc/emod/emod.toml

Finds the retained Home Assistant discovery configs (``<discovery_prefix>/+/DEVICE_ID/+/config``) and
states (``<topic_prefix>/DEVICE_ID/#``) on the broker of the config's ``[mqtt]`` section, and publishes
an empty retained payload on each, which deletes it. emod does this itself for its previous device id
after a rename (it remembers its retained topics in STATE_DIR/mqtt-retained.json); this command is for
the rest: a state directory that was wiped, a device retired, a rename on another host.
A running emod with that device id publishes them again on its next connect.

Exit status: 0 done (also when nothing was retained), 1 the broker cannot be reached, 2 bad arguments,
78 a bad config.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from pathlib import Path

from emod import config, protocol
from emod.cli.argtypes import plain


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emod mqtt-forget", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("device_id", help="the device id whose retained topics to delete (letters, digits, _ and -)")
    p.add_argument("--config", help="TOML config file with the [mqtt] broker settings (default: none: localhost:1883)")
    p.add_argument("--dry-run", action="store_true", help="list the retained topics, delete nothing")
    args = p.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.device_id):
        print(f"emod mqtt-forget: device id {args.device_id!r} may hold only letters, digits, _ and -", file=sys.stderr)
        return protocol.EXIT_USAGE
    try:
        cfg = config.load(args.config)
    except config.ConfigError as e:
        print(f"emod mqtt-forget: config error: {e}", file=sys.stderr)
        return config.EXIT_CONFIG
    import paho.mqtt.client as paho

    from emod.mqtt_instance import clear, retained_of

    m = cfg.mqtt
    broker = f"{m.host}:{m.port}"
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"emod-forget-{os.getpid()}")
    if m.username:
        c.username_pw_set(m.username, Path(m.password_file).read_text().splitlines()[0] if m.password_file else None)
    if m.tls:
        c.tls_set(ca_certs=m.ca_file or None)
    up = threading.Event()
    c.on_connect = lambda client, u, f, rc, props: up.set() if not rc.is_failure else None
    try:
        c.connect(m.host, m.port, keepalive=10)
    except (OSError, ValueError) as e:
        print(f"emod mqtt-forget: cannot reach the broker {broker}: {e}", file=sys.stderr)
        return protocol.EXIT_FAILURE
    c.loop_start()
    try:
        if not up.wait(10):
            print(f"emod mqtt-forget: the broker {broker} refused or did not answer the connection", file=sys.stderr)
            return protocol.EXIT_FAILURE
        topics = retained_of(m, args.device_id, client=c)
        if not args.dry_run:
            infos = []
            clear(lambda *a, **kw: infos.append(c.publish(*a, **kw)), topics)
            for info in infos:
                info.wait_for_publish(timeout=5.0)
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {len(topics)} retained topic{'s' if len(topics) != 1 else ''} of device {args.device_id!r} on {broker}")
        for t in topics:
            print(f"  {t}")
        return protocol.EXIT_OK
    finally:
        c.disconnect()
        c.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
