"""Issue 28 kind 1: core stages and optional parts. Only the core counts for the give-up rule; an optional stage is
retried with backoff forever; a stage that cannot import a package is reported with the pip install and not restart-looped."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from _fixtures import REPO, short_tmp  # noqa: F401
from emod.launcher.supervisor import MISSING_MODULE_RETRY_S, GiveUp, Supervisor
from emod.launcher.telemetry import problems
from emod.stages.base import EXIT_MISSING_MODULE


class Log:
    def __init__(self):
        self.lines = []

    def _log(self, level, event, **kw):
        self.lines.append((level, event, kw))

    def info(self, event, **kw):
        self._log("info", event, **kw)

    warning = error = info


FAIL = [sys.executable, "-c", "raise SystemExit(1)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
MISSING = [sys.executable, "-c", f"raise SystemExit({EXIT_MISSING_MODULE})"]


def run_checks(sv: Supervisor, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sv.check()
        time.sleep(0.05)


def test_an_optional_stage_that_keeps_failing_never_makes_the_launcher_give_up() -> None:
    sv = Supervisor({"capture": SLEEP, "mqtt": FAIL, "power": FAIL}, Log(), max_restarts=1, restart_window=60)
    try:
        sv.start_all()
        run_checks(sv, 2.5)  # backoff 0.5, 1 s: two or more restarts each, over the core's limit of 1
        assert sv.stages["mqtt"].restarts > 1 and sv.stages["power"].restarts > 1
        assert sv.stages["capture"].alive and sv.stages["capture"].restarts == 0  # the core is untouched
        lines = problems(sv, {"state": "ok"}, {"mqtt": {"error": "IndexError: list index out of range"}})
        assert any(l.startswith("stage mqtt (optional) is down") and "IndexError" in l for l in lines), lines
    finally:
        sv.stop_all()


def test_a_core_stage_that_keeps_failing_makes_it_give_up() -> None:
    sv = Supervisor({"capture": FAIL}, Log(), max_restarts=1, restart_window=60)
    try:
        sv.start_all()
        with pytest.raises(GiveUp, match="stage capture restarted 2 times"):
            run_checks(sv, 8.0)
    finally:
        sv.stop_all()


def test_a_missing_package_is_not_restart_looped() -> None:
    """A stage exiting EXIT_MISSING_MODULE (core or optional) waits MISSING_MODULE_RETRY_S before the next try: no loop, no give-up."""
    log = Log()
    sv = Supervisor({"infer": MISSING, "mqtt": MISSING}, log, max_restarts=0, restart_window=60)
    try:
        sv.start_all()
        run_checks(sv, 1.0)
        for st in sv.stages.values():
            assert st.restarts == 1 and st.proc is None and st.next_start - time.monotonic() > MISSING_MODULE_RETRY_S - 5
        assert any(e == "stage cannot start, a package is missing; retrying" for _, e, _ in log.lines)
    finally:
        sv.stop_all()


def test_a_stage_without_its_package_says_which_pip_install(short_tmp) -> None:
    """The real mqtt stage with paho unimportable exits EXIT_MISSING_MODULE and logs the pip install that fixes it."""
    code = ("import sys; sys.modules['paho'] = None\n"
            "from emod.cli.main import main\n"
            f"sys.exit(main(['stage', 'mqtt', '--runtime-dir', {str(short_tmp)!r}, '--state-dir', {str(short_tmp / 's')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(REPO), "EMOD_DAEMON_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"})
    events = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    err = [e for e in events if e["event"] == "stage cannot start: a package is missing"]
    assert r.returncode == EXIT_MISSING_MODULE and err and "pip install paho-mqtt" in err[0]["error"], r.stdout + r.stderr
    assert err[0]["stage"] == "mqtt" and "Traceback" not in r.stdout + r.stderr
