"""Debian packages some tests need: a missing one skips the test with the command that installs it, never fails it.

`make system-deps` (which `make test` and .ci/run run) installs them as root, or prints the same command.
"""

from __future__ import annotations

import shutil

import pytest


def skip_without(package: str, present: bool) -> None:
    """Skip the calling test when Debian's `package` is not installed (present False), naming the fix."""
    if not present:
        pytest.skip(f"Debian's {package} is not installed: sudo apt-get install {package} (or make system-deps as root)")


def executable(package: str, *names: str) -> str:
    """The path of the first of `names` on PATH (or /usr/sbin), else skip the test naming Debian's `package`."""
    for name in names:
        exe = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if exe:
            return exe
    skip_without(package, False)
    raise AssertionError("unreachable")
