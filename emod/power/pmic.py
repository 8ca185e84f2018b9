"""Raspberry Pi 5 PMIC power: ``vcgencmd pmic_read_adc``, parsed and summed per rail.

The command prints one line per ADC channel, with varying leading spaces::

     3V7_WL_SW_A current(0)=0.09368929A
     3V7_WL_SW_V volt(8)=3.69977600V
        EXT5V_V volt(24)=5.09066000V

The number in parentheses is the ADC channel index; it does *not* pair a current with
a voltage. Rails are paired by name (``3V7_WL_SW``), and the total is the sum of V x I
over the rails that have both (the prototype's "SoC power"; it excludes 5 V loads such as
USB and HATs). Voltage-only rails (``EXT5V``, ``BATT``) are not part of the sum, so a
``nan`` there does not matter.

Policy for broken output: the reading is ``None`` (never a partial or made-up total) when
a *paired* rail has a non-finite value (``nanA``/``nanV``) or a value that does not parse,
when no rail is paired at all, when the command is missing, exits non-zero or times out.
Rails lacking a counterpart are skipped.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess

from emod.power.base import PowerBackend

DEFAULT_TIMEOUT = 2.0

_LINE = re.compile(
    r"^\s*(?P<rail>\S+)_(?P<suffix>[AV])\s+(?P<kind>current|volt)\(\d+\)=(?P<value>\S*?)(?P<unit>[AV])\s*$")
_KIND_UNIT = {"current": "A", "volt": "V"}


def parse_pmic(text: str) -> dict[str, dict[str, float]]:
    """Parse ``pmic_read_adc`` output into ``{rail: {"A": amps, "V": volts}}`` (keys present as printed).

    Lines that are not rail readings are ignored. A rail reading whose value does not parse
    (``nan``, garbage) is stored as ``nan`` so that :func:`total_watts` rejects it.
    """
    rails: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or not (m["suffix"] == m["unit"] == _KIND_UNIT[m["kind"]]):
            continue
        try:
            value = float(m["value"])
        except ValueError:
            value = math.nan
        rails.setdefault(m["rail"], {})[m["unit"]] = value
    return rails


def total_watts(rails: dict[str, dict[str, float]]) -> float | None:
    """Sum V x I over the rails that have both; ``None`` if none does or any paired value is not finite."""
    paired = [(r["V"], r["A"]) for r in rails.values() if "V" in r and "A" in r]
    if not paired or not all(math.isfinite(v) and math.isfinite(a) for v, a in paired):
        return None
    return sum(v * a for v, a in paired)


def run_vcgencmd(vcgencmd: str = "vcgencmd", timeout: float = DEFAULT_TIMEOUT) -> str:
    """Return the stdout of ``VCGENCMD pmic_read_adc``; raise ``OSError`` or ``subprocess.SubprocessError`` on failure.

    The command runs in its own session and the whole group is killed on timeout, so a
    wrapper script that spawned children cannot keep us waiting.
    """
    proc = subprocess.Popen([vcgencmd, "pmic_read_adc"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, [vcgencmd, "pmic_read_adc"], out, err)
    return out


class PmicBackend(PowerBackend):
    """The ``pi5-pmic`` backend: total PMIC rail power of a Raspberry Pi 5."""

    name = "pi5-pmic"

    def __init__(self, vcgencmd: str = "vcgencmd", timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.vcgencmd = vcgencmd
        self.timeout = timeout

    def read(self) -> float | None:
        try:
            text = run_vcgencmd(self.vcgencmd, self.timeout)
        except subprocess.TimeoutExpired:
            self.last_error = f"{self.vcgencmd} pmic_read_adc timed out after {self.timeout:g} s"
            return None
        except subprocess.CalledProcessError as e:
            self.last_error = f"{self.vcgencmd} pmic_read_adc exited with status {e.returncode}"
            return None
        except Exception as e:  # not installed, not executable, undecodable output, ...
            self.last_error = f"cannot run {self.vcgencmd}: {e}"
            return None
        watts = total_watts(parse_pmic(text))
        self.last_error = None if watts is not None else "pmic_read_adc output has no complete, finite rail pairs"
        return watts
