"""argparse helpers shared by the CLIs: value types (a bad value is a usage error, exit 2, naming the
value) and :func:`plain`, a module docstring made fit for ``--help``."""

from __future__ import annotations

import argparse
import re

_ROLE = re.compile(r":(?:func|mod|class|data|meth|attr|obj|exc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(doc: str) -> str:
    """A reStructuredText docstring as ``--help`` text: roles (``:func:`x```) and literals (````x````) become x."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", doc))


def instance(text: str) -> str:
    """An instance name (see :func:`emod.bus.instance_name`)."""
    from emod.bus import instance_name

    try:
        return instance_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_instance_arg(p: argparse.ArgumentParser) -> None:
    """``-i/--instance NAME``: the emod run as ``emod run -i NAME`` or ``emod@NAME.service`` (runtime dir /run/emod/NAME)."""
    p.add_argument("-i", "--instance", type=instance, metavar="NAME",
                   help="the emod instance NAME (emod@NAME.service): its sockets are in /run/emod/NAME (BASE/NAME "
                        "with --runtime-dir BASE)")


def positive_float(text: str) -> float:
    """A number > 0 (seconds, minutes); ``0``, negatives, ``nan`` and ``inf`` are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (a stride, a count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value
