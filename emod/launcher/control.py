"""The control command table: one entry per command, with its help text.

Each handler runs in the launcher as ``handler(launcher, args) -> result`` and raises
:class:`CommandError` with a code from :mod:`emod.protocol` on failure. A handler that
must wait (``set-model`` waits for the infer stage) returns :data:`DEFERRED` and the
launcher replies later. Clients find the same table through ``emod-ctl --help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from emod import protocol

DEFERRED = object()


class CommandError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Callable[[Any, dict, str, bytes], Any]


def _status(launcher, args, rid, identity):
    snap = launcher.snapshot()
    return {"model": launcher.active_model, "uptime_s": snap["uptime_s"], "ready": launcher.ready_sent,
            "healthy": snap["healthy"], "problems": snap["problems"], "source": snap["source"],
            "processed_fps": snap["processed_fps"],
            "inference_ms_p50": snap["inference_ms"]["p50"], "watts": (snap["power"] or {}).get("watts"),
            "stages": {n: {"pid": s["pid"], "alive": s["alive"], "restarts": s["restarts"]} for n, s in snap["stages"].items()},
            "runtime_dir": str(launcher.rundir), "state_dir": str(launcher.state_dir),
            "history": str(launcher.history.path) if launcher.history is not None else None}


def _stats(launcher, args, rid, identity):
    return launcher.snapshot()


def _models(launcher, args, rid, identity):
    from emod.models import registry

    out = []
    for name, info in sorted(registry.available(launcher.state_dir).items()):
        m = info.manifest
        metrics = m.get("metrics") or {}
        out.append({"name": name, "format": m["format"], "input_size": m["input_size"], "active": name == launcher.active_model,
                    "description": m.get("description", ""), "trained_on": m.get("trained_on", "fer2013"),
                    "accuracy": (metrics.get("private") or {}).get("accuracy"),
                    "accuracy_ferplus": (metrics.get("private_ferplus") or {}).get("accuracy"),
                    "balanced_accuracy": (metrics.get("private") or {}).get("balanced_accuracy"),
                    "balanced_accuracy_ferplus": (metrics.get("private_ferplus") or {}).get("balanced_accuracy"),
                    "path": str(info.path)})
    return out


def _set_model(launcher, args, rid, identity):
    from emod.models import registry

    name = args.get("name")
    if not isinstance(name, str):
        raise CommandError(protocol.E_BAD_REQUEST, "set-model needs a model name")
    try:
        registry.find(name, launcher.state_dir)
    except registry.ModelError as e:
        raise CommandError(protocol.E_UNKNOWN_MODEL, str(e)) from None
    launcher.forward_set_model(name, rid, identity)
    return DEFERRED


def _reload(launcher, args, rid, identity):
    return launcher.reload()


def _quit(launcher, args, rid, identity):
    launcher.running = False
    return {"stopping": True}


def _ping(launcher, args, rid, identity):
    return {"pong": True}


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("status", "one-screen summary: model, health, fps, stages", _status),
    Command("stats", "the full telemetry snapshot (what emod-stats prints)", _stats),
    Command("models", "models in the registry, and which one is active", _models),
    Command("set-model", "switch the classifier live: set-model NAME", _set_model),
    Command("reload", "re-read the config file and apply it (same as SIGHUP)", _reload),
    Command("quit", "stop emod (same as SIGTERM)", _quit),
    Command("ping", "check that the daemon answers", _ping),
)}


def execute(launcher, req: dict, identity: bytes) -> dict | None:
    """Run one request; returns the reply, or None when the reply is deferred."""
    cmd = COMMANDS.get(req["cmd"])
    if cmd is None:
        return protocol.reply_error(req["id"], protocol.E_UNKNOWN_COMMAND,
                                    f"unknown command {req['cmd']!r} (commands: {', '.join(COMMANDS)})")
    try:
        result = cmd.handler(launcher, req["args"], req["id"], identity)
    except CommandError as e:
        return protocol.reply_error(req["id"], e.code, e.message)
    except Exception as e:  # a handler bug must not kill the launcher
        return protocol.reply_error(req["id"], protocol.E_INTERNAL, f"{type(e).__name__}: {e}")
    return None if result is DEFERRED else protocol.reply_ok(req["id"], result)
