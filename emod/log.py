"""structlog set-up: JSON lines when stdout is not a TTY (journald), readable lines on a TTY.

Every line carries the process's ``stage`` (``launcher`` for the supervisor, or a CLI name).
Identical lines are rate-limited (:class:`RepeatLimiter`): the first one is written, repeats
within the window are counted, and the next one after it carries ``repeated=N``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class RepeatLimiter:
    """A structlog processor: an identical event (same level, message and fields) at most once per ``window`` seconds.

    Suppressed repeats are counted; the first line after the window carries ``repeated`` (how
    many were left out). Keeps at most ``max_keys`` distinct lines in mind.
    """

    def __init__(self, window: float = 30.0, max_keys: int = 256, clock=time.monotonic):
        self.window, self.max_keys, self.clock = window, max_keys, clock
        self.seen: OrderedDict[str, list] = OrderedDict()  # key -> [time written, repeats since]

    def __call__(self, logger, method_name: str, event_dict: dict) -> dict:
        try:
            key = method_name + json.dumps(event_dict, sort_keys=True, default=repr)
        except (TypeError, ValueError):
            return event_dict
        now = self.clock()
        entry = self.seen.get(key)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            raise structlog.DropEvent
        if entry is not None and entry[1]:
            event_dict["repeated"] = entry[1]
        self.seen[key] = [now, 0]
        self.seen.move_to_end(key)
        while len(self.seen) > self.max_keys:
            self.seen.popitem(last=False)
        return event_dict


def _with_stage(stage: str):
    """A processor that adds ``stage`` to lines logged where the context variable is not set (other threads: paho's)."""

    def add(logger, method_name: str, event_dict: dict) -> dict:
        event_dict.setdefault("stage", stage)
        return event_dict

    return add


def setup(stage: str, fmt: str = "auto", level: str = "info") -> structlog.stdlib.BoundLogger:
    if fmt == "auto":
        fmt = "console" if sys.stdout.isatty() else "json"
    renderer = structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _with_stage(stage),  # contextvars are per thread: a library's thread (paho's callbacks) has none
            structlog.processors.add_log_level,
            RepeatLimiter(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),  # one write per line: stages share one pipe
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(stage=stage)
    return structlog.get_logger()
