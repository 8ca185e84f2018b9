"""``emod``: run the daemon, run one stage, validate a config, analyse files, install the service."""

from __future__ import annotations

import argparse
import os
import sys

from emod import config, protocol
from emod.cli.argtypes import add_instance_arg, positive_float
from emod.cli.pipe import safe_stdio


def _common_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (default: none; the service uses /etc/emod/emod.toml)")
    p.add_argument("--runtime-dir", help="directory of sockets and lock (env EMOD_RUNTIME_DIR; default /run/emod)")


def _overrides(args) -> dict:
    o: dict[str, dict] = {}
    if getattr(args, "runtime_dir", None):
        o.setdefault("daemon", {})["runtime_dir"] = args.runtime_dir
    if getattr(args, "state_dir", None):
        o.setdefault("daemon", {})["state_dir"] = args.state_dir
    if getattr(args, "source", None):
        o.setdefault("capture", {})["source"] = args.source
    if getattr(args, "loop", False):
        o.setdefault("capture", {})["loop"] = True
    if getattr(args, "model", None):
        o.setdefault("infer", {})["model"] = args.model
    return o


def cmd_run(args) -> int:
    from emod import bus
    from emod import log as emod_log
    from emod.launcher.main import AlreadyRunning, Launcher
    from emod.models.registry import ModelError

    overrides = _overrides(args)
    try:
        cfg = config.load(args.config, overrides=overrides)
    except config.ConfigError as e:
        print(f"emod: config error: {e}", file=sys.stderr)
        return config.EXIT_CONFIG
    if args.instance:  # one emod per camera: BASE/NAME directories (emod.bus), resolved once for the stages and reloads
        from emod import bus

        os.environ[protocol.INSTANCE_ENV] = args.instance  # the stages' default MQTT device id (emod.mqtt)
        d = overrides.setdefault("daemon", {})
        d["runtime_dir"] = cfg.daemon.runtime_dir = str(bus.runtime_dir(cfg.daemon.runtime_dir or None, args.instance))
        d["state_dir"] = cfg.daemon.state_dir = str(bus.state_dir(cfg.daemon.state_dir or None, args.instance))
    from emod.sources.spec import problem

    if (err := problem(cfg.capture.source)) is not None:  # a file that is not there will not appear by retrying
        print(f"emod: config error: {err}", file=sys.stderr)
        return config.EXIT_CONFIG
    log = emod_log.setup("launcher", cfg.daemon.log_format, cfg.daemon.log_level)
    try:
        launcher = Launcher(cfg, log, args.config, overrides, args.duration, explicit_model=bool(args.model))
        return launcher.run()
    except AlreadyRunning as e:  # on the runtime directory, or on the state directory
        print(f"emod: {e}", file=sys.stderr)
        return protocol.EXIT_ALREADY_RUNNING
    except bus.RuntimeDirError as e:  # too long a path for its sockets, a symlink, not ours: retrying cannot help
        print(f"emod: {e}", file=sys.stderr)
        return protocol.EXIT_CONFIG
    except ModelError as e:  # --model on the command line is a bad request (2); the config's model a bad config (78)
        print(f"emod: {e}", file=sys.stderr)
        return protocol.EXIT_CODES[protocol.E_UNKNOWN_MODEL] if args.model else config.EXIT_CONFIG
    except OSError as e:  # e.g. the runtime directory cannot be created
        print(f"emod: {e}", file=sys.stderr)
        return protocol.EXIT_FAILURE


def cmd_stage(args) -> int:
    from emod import log as emod_log
    from emod.stages import load_stage_class

    try:
        if args.config_json:
            cfg = config.from_json(args.config_json)
        else:
            cfg = config.load(args.config, overrides=_overrides(args))
    except config.ConfigError as e:
        print(f"emod: config error: {e}", file=sys.stderr)
        return config.EXIT_CONFIG
    from emod import bus

    cfg.daemon.runtime_dir = str(bus.runtime_dir(cfg.daemon.runtime_dir or None))
    cfg.daemon.state_dir = str(bus.state_dir(cfg.daemon.state_dir or None))
    log = emod_log.setup(args.name, cfg.daemon.log_format, cfg.daemon.log_level)
    return load_stage_class(args.name)(cfg, log).run()


def cmd_validate(args) -> int:
    """Check the file, every ``EMOD_*`` variable, the model name (against the registry) and a file source; all errors at once."""
    from emod import bus
    from emod.models import registry
    from emod.sources.spec import problem

    errors: list[str] = []
    try:
        cfg = config.load(args.file)
    except config.ConfigError as e:
        errors += str(e).splitlines()
        cfg = e.config
    if cfg is not None:
        try:
            registry.find(cfg.infer.model, bus.state_dir(cfg.daemon.state_dir or None))
        except registry.ModelError as e:
            errors.append(f"infer.model: {e}")
        if (err := problem(cfg.capture.source)) is not None:
            errors.append(f"capture.source: {err}")
        from emod import preflight

        errors += preflight.problems(cfg)  # what the config points at: credentials, the Prometheus port, socket paths
    if errors:
        print(f"emod: invalid config ({len(errors)} error{'s' if len(errors) > 1 else ''}):", file=sys.stderr)
        for line in errors:
            print(f"  {line}", file=sys.stderr)
        return config.EXIT_CONFIG
    print(f"{args.file}: valid")
    if args.show:
        print(cfg.to_json())
    return 0


def main(argv: list[str] | None = None) -> int:
    safe_stdio()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "install-systemd":
        from emod.cli import install_systemd

        return install_systemd.main(argv[1:])
    if argv and argv[0] == "analyze":
        from emod.cli import analyze

        return analyze.main(argv[1:])
    if argv and argv[0] == "events":
        from emod.cli import events

        return events.main(argv[1:])
    if argv and argv[0] == "doctor":
        from emod.cli import doctor

        return doctor.main(argv[1:])
    if argv and argv[0] == "mqtt-forget":
        from emod.cli import mqtt_forget

        return mqtt_forget.main(argv[1:])
    if argv and argv[0] == "keygen":
        from emod.cli import keygen

        return keygen.main(argv[1:])
    p = argparse.ArgumentParser(prog="emod", description="Edge facial-emotion recognition daemon.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the daemon: launcher + capture, infer, display and power stages",
                       description="Run the daemon in the foreground: a launcher that starts and supervises the capture, "
                                   "infer, display and power stages (and mqtt with [mqtt] in the config) until Ctrl-C, "
                                   "SIGTERM, emod-ctl quit or --duration. Without --source it uses the config's, "
                                   "'auto' by default: the camera, or the bundled demo clip when there is none. "
                                   f"Exit {protocol.EXIT_OK} on a clean stop, {protocol.EXIT_FAILURE} after too many restarts "
                                   f"of one core stage, {protocol.EXIT_USAGE} for an unknown or broken --model, "
                                   f"{protocol.EXIT_ALREADY_RUNNING} when another emod runs on this runtime or state directory, "
                                   f"{protocol.EXIT_CONFIG} for a bad config, an unusable runtime directory or a --source file or folder that does not "
                                   "exist (python -m emod.protocol prints the whole table).")
    _common_run_args(r)
    r.add_argument("--source", help="auto, picamera2, demo, /dev/videoN, a video file or URL, or an image folder")
    r.add_argument("--model", help="model name (emod-ctl models); overrides the persisted choice")
    r.add_argument("--state-dir", help="persistent state directory (default /var/lib/emod for root)")
    r.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    add_instance_arg(r)  # one emod per camera: its own runtime and state directories and MQTT device id
    r.add_argument("--loop", action="store_true", help="loop a file source")
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("stage", help="run one stage on its own (the launcher does this for each stage)")
    s.add_argument("name", choices=["capture", "infer", "display", "power", "mqtt"])
    _common_run_args(s)
    s.add_argument("--config-json", help=argparse.SUPPRESS)
    s.add_argument("--source")
    s.add_argument("--model")
    s.add_argument("--state-dir")
    s.set_defaults(func=cmd_stage)
    v = sub.add_parser("validate", help="check a config file; exit 78 on error",
                       description="Check a TOML config file as emod run would read it, without starting anything: "
                                   f"exit {protocol.EXIT_OK} and 'FILE: valid' when it is, {protocol.EXIT_CONFIG} and one line "
                                   "per error on stderr when it is not.")
    v.add_argument("file")
    v.add_argument("--show", action="store_true", help="print the resolved config as JSON")
    v.set_defaults(func=cmd_validate)
    sub.add_parser("analyze", help="analyse images and videos offline (emod analyze --help)")
    sub.add_parser("install-systemd", help="install the systemd service (emod install-systemd --help)")
    sub.add_parser("events", help="print the live per-face emotions of a running emod (emod events --help)")
    sub.add_parser("doctor", help="check this machine for what emod needs, with fixes (emod doctor --help)")
    sub.add_parser("keygen", help="create CURVE keys for remote viewers (emod keygen --help)")
    sub.add_parser("mqtt-forget", help="delete a device's retained MQTT topics, so Home Assistant forgets it (emod mqtt-forget --help)")
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
