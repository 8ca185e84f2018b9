"""Every command's --help is plain text: no reStructuredText markup from the docstrings it shows."""

from __future__ import annotations

import re
import subprocess

import pytest
from _fixtures import BIN, REPO

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
    described = r.stdout.split("\n\n")[1]  # after the usage lines: a description, not straight into the options
    described = re.sub(r"\s+", " ", described)  # argparse wraps at the terminal's width
    assert not described.lstrip().startswith(("options:", "positional arguments:")), described[:80]
    inner = re.search(r"(?<!-m )\bemod(?:\.[a-z_]+)+\b(?<!emod\.toml)", described)  # "python -m emod.x" is a command
    assert not inner, f"names an internal module: {inner.group(0)}"


RUN_HELP = """
import contextlib, io, json, runpy, sys
out = {}
for f in list(sys.argv[1:]):
    buf, code = io.StringIO(), None
    sys.argv = [f, "--help"]
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(f, run_name="__main__")
    except SystemExit as e:
        code = e.code
    out[f] = [code, buf.getvalue()]
print(json.dumps(out))
"""


def test_every_tools_help_is_plain_text() -> None:
    import json
    import sys

    tools = sorted(str(p) for p in (REPO / "tools").glob("*.py"))
    r = subprocess.run([sys.executable, "-c", RUN_HELP, *tools], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    helps = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(helps) == len(tools) > 10
    for tool, (code, text) in helps.items():
        assert code == 0 and text.startswith("usage:"), (tool, code, text[:200])
        assert not MARKUP.search(text), (tool, MARKUP.search(text).group(0))


def test_emod_view_help_gives_the_exit_statuses_it_uses() -> None:
    """The no-daemon status in --help is the one emod-view exits with (3: tests/test_exit_codes.py)."""
    r = subprocess.run([str(BIN / "emod-view"), "--help"], capture_output=True, text=True, timeout=60)
    assert "3 no daemon" in r.stdout and "1 no frame in time / no daemon" not in r.stdout
