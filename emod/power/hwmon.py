"""Linux hwmon power sensor: ``power1_input`` (microwatts) of the first hwmon device that has one.

Devices are scanned in numeric order (``hwmon2`` before ``hwmon10``) under a root that
defaults to ``/sys/class/hwmon`` and is configurable for tests.
"""

from __future__ import annotations

import re
from pathlib import Path

from emod.power.base import BackendUnavailable, PowerBackend

DEFAULT_ROOT = "/sys/class/hwmon"


def _index(path: Path) -> tuple[int, str]:
    m = re.fullmatch(r"hwmon(\d+)", path.name)
    return (int(m[1]) if m else 1 << 30, path.name)


def find_power_input(root: str | Path = DEFAULT_ROOT) -> Path | None:
    """Return ``ROOT/hwmonN/power1_input`` of the lowest N that has one, or ``None``."""
    for dev in sorted(Path(root).glob("hwmon*"), key=_index):
        candidate = dev / "power1_input"
        if candidate.is_file():
            return candidate
    return None


class HwmonBackend(PowerBackend):
    """The ``hwmon`` backend. Raises :class:`BackendUnavailable` when no device has ``power1_input``."""

    name = "hwmon"

    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        super().__init__()
        path = find_power_input(root)
        if path is None:
            raise BackendUnavailable(f"hwmon: no {root}/hwmon*/power1_input")
        self.path = path

    def read(self) -> float | None:
        try:
            watts = int(self.path.read_text().strip()) / 1e6
        except Exception as e:  # vanished device, EIO from the driver, garbage
            self.last_error = f"cannot read {self.path}: {e}"
            return None
        if watts < 0:
            self.last_error = f"{self.path}: implausible value {watts}"
            return None
        self.last_error = None
        return watts
