"""``emod doctor``: what a Pi owner runs when something is wrong.

Each check is one row of :data:`emod.doctor.checks.CHECKS`: a name, what it looks at, and
a function ``(Context) -> Result`` that never raises (an unexpected exception becomes a
failed result naming it). A :class:`Result` is one line of verdict, the fix when there is
one, and details for ``--json``. A check ``fail`` s when emod would not work as configured;
``warn`` is worth knowing but does not stop emod. To add a check, write its function and
append a :class:`Check` row to the table.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Result:
    status: str  # ok | warn | fail
    verdict: str  # one line
    fix: str | None = None
    details: dict = field(default_factory=dict)


def ok(verdict: str, **details) -> Result:
    return Result(OK, verdict, None, details)


def warn(verdict: str, fix: str | None = None, **details) -> Result:
    return Result(WARN, verdict, fix, details)


def fail(verdict: str, fix: str | None = None, **details) -> Result:
    return Result(FAIL, verdict, fix, details)


@dataclass
class Context:
    """What every check may use: the config (defaults when it fails to load) and where the service would look."""

    config_path: str | None
    cfg: object  # emod.config.Config
    config_error: str | None
    unit_dir: Path
    user: str = "emod"  # the service's user (install-systemd creates it)
    broken_imports: dict = field(default_factory=dict)  # {module: error} from the python check; later checks avoid them


@dataclass(frozen=True)
class Check:
    name: str
    about: str
    run: Callable[[Context], Result]


def run_checks(ctx: Context, checks=None) -> list[tuple[Check, Result]]:
    """Run each check in table order; a check that raises is reported as failed with its exception."""
    from emod.doctor.checks import CHECKS

    out = []
    for check in CHECKS if checks is None else checks:
        try:
            res = check.run(ctx)
        except Exception as e:  # a doctor must finish: the exception is the finding
            tb = traceback.extract_tb(e.__traceback__)[-1]
            res = fail(f"the check itself failed: {type(e).__name__}: {e} ({Path(tb.filename).name}:{tb.lineno})",
                       "report this with the output of `emod doctor --json`")
        out.append((check, res))
    return out


def exit_code(results: list[tuple[Check, Result]]) -> int:
    """1 when any check failed (emod would not work as configured), else 0."""
    return 1 if any(r.status == FAIL for _, r in results) else 0


def as_json(results: list[tuple[Check, Result]]) -> dict:
    return {"ok": exit_code(results) == 0,
            "checks": [{"name": c.name, "about": c.about, "status": r.status, "verdict": r.verdict, "fix": r.fix,
                        "details": r.details} for c, r in results]}


def as_text(results: list[tuple[Check, Result]]) -> str:
    width = max(len(c.name) for c, _ in results)
    lines = []
    for c, r in results:
        lines.append(f"{r.status.upper():4}  {c.name:{width}}  {r.verdict}")
        if r.fix:
            lines.append(f"{'':4}  {'':{width}}  fix: {r.fix}")
    failed = [c.name for c, r in results if r.status == FAIL]
    lines.append(f"emod doctor: {len(failed)} problem(s) that stop emod: {', '.join(failed)}" if failed
                 else "emod doctor: nothing stops emod")
    return "\n".join(lines)
