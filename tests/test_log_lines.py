"""Stages share one stdout pipe (emod run, journald): each log line must reach it whole, never spliced with another's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _fixtures import REPO

WRITER = """
import sys
from emod import log
logger = log.setup(sys.argv[1], fmt="json")
for i in range(int(sys.argv[2])):
    logger.info("stage stopped", i=i, pad="x" * 200)
"""


def test_concurrent_stages_never_splice_log_lines() -> None:
    n, procs = 400, 4
    r, w = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [subprocess.Popen([sys.executable, "-c", WRITER, f"s{k}", str(n)], stdout=w, env=env) for k in range(procs)]
    os.close(w)
    with os.fdopen(r) as f:
        lines = f.read().splitlines()
    assert all(c.wait(timeout=120) == 0 for c in children)
    events = [json.loads(ln) for ln in lines]  # a spliced line fails here, an empty one too
    assert len(events) == n * procs
    assert {e["stage"] for e in events} == {f"s{k}" for k in range(procs)}
