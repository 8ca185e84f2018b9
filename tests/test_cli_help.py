"""Every command's --help is plain text: no reStructuredText markup from the docstrings it shows."""

from __future__ import annotations

import re
import subprocess

import pytest
from _fixtures import BIN

from emod.cli.argtypes import plain

COMMANDS = [["emod"], ["emod", "run"], ["emod", "analyze"], ["emod", "events"], ["emod", "doctor"], ["emod", "keygen"],
            ["emod", "install-systemd"], ["emod", "validate"], ["emod-view"], ["emod-view", "passwd"], ["emod-stats"],
            ["emod-ctl"]]
MARKUP = re.compile(r"``|:(?:func|mod|class|data|meth|attr|obj|exc):`")


def test_plain_turns_roles_and_literals_into_text() -> None:
    assert plain("see :func:`emod.a.b` and :class:`~x.Y`, run ``emod run``") == "see emod.a.b and x.Y, run emod run"


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help_is_plain_text(cmd) -> None:
    r = subprocess.run([str(BIN / cmd[0]), *cmd[1:], "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("usage:"), r.stderr
    assert not MARKUP.search(r.stdout), MARKUP.search(r.stdout).group(0)
