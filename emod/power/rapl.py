"""RAPL power: deltas of the ``energy_uj`` counters under ``/sys/class/powercap`` (root configurable).

Zones used: the top-level ``intel-rapl:N`` zones (sub-zones such as ``intel-rapl:0:0`` are
already contained in their package), except ``psys`` (platform power, which includes the
packages) unless it is the only one. Watts = sum of energy deltas / elapsed time.
A counter that went backwards wrapped at its ``max_energy_range_uj``; the wrap is added
back. The first reading (no previous counter value) is ``None``, as is any reading after a
failed one. Reading ``energy_uj`` usually needs root on current kernels.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from emod.power.base import BackendUnavailable, PowerBackend

DEFAULT_ROOT = "/sys/class/powercap"


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def find_zones(root: str | Path = DEFAULT_ROOT) -> list[Path]:
    """Return the top-level RAPL zone directories to sum (see the module docstring), in numeric order."""
    zones = [p for p in Path(root).glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", p.name)
             and (p / "energy_uj").is_file()]
    zones.sort(key=lambda p: int(p.name.split(":")[1]))

    def zone_name(p: Path) -> str:
        try:
            return (p / "name").read_text().strip()
        except OSError:
            return ""

    non_psys = [p for p in zones if zone_name(p) != "psys"]
    return non_psys or zones


class RaplBackend(PowerBackend):
    """The ``rapl`` backend. Raises :class:`BackendUnavailable` when no zone's ``energy_uj`` is readable.

    ``clock`` returns seconds (default :func:`time.monotonic`); tests inject their own.
    """

    name = "rapl"

    def __init__(self, root: str | Path = DEFAULT_ROOT, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        zones = find_zones(root)
        if not zones:
            raise BackendUnavailable(f"rapl: no {root}/intel-rapl:N/energy_uj")
        try:
            for z in zones:
                _read_int(z / "energy_uj")
        except (OSError, ValueError) as e:
            raise BackendUnavailable(f"rapl: cannot read energy counters ({e}); reading them usually needs root") from e
        self.zones = zones
        self.clock = clock
        self._max: list[int | None] = []
        for z in zones:
            try:
                self._max.append(_read_int(z / "max_energy_range_uj"))
            except (OSError, ValueError):
                self._max.append(None)
        self._last: tuple[float, list[int]] | None = None

    def prime(self) -> None:
        """Take the baseline counter values so that the next :meth:`read` has a delta."""
        self.read()

    def read(self) -> float | None:
        try:
            t = self.clock()
            energies = [_read_int(z / "energy_uj") for z in self.zones]
        except Exception as e:
            self.last_error = f"cannot read RAPL counters: {e}"
            self._last = None
            return None
        last, self._last = self._last, (t, energies)
        if last is None:
            self.last_error = "first RAPL reading: no delta yet"
            return None
        t0, e0 = last
        dt = t - t0
        if dt <= 0:
            self.last_error = "RAPL readings without elapsed time"
            return None
        total_uj = 0
        for before, after, wrap in zip(e0, energies, self._max):
            delta = after - before
            if delta < 0:
                if not wrap:
                    self.last_error = "RAPL counter went backwards and its max_energy_range_uj is unknown"
                    return None
                delta += wrap
            total_uj += delta
        self.last_error = None
        return total_uj / 1e6 / dt
