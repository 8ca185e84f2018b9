"""Choosing a power backend by name, or automatically.

"auto" tries ``pi5-pmic``, then ``hwmon``, then ``rapl`` and falls back to ``none``.
``pi5-pmic`` and ``hwmon`` count as usable when they give a real reading now; ``rapl``
when its counters are readable (its first reading never has a value). Naming one
backend that cannot work raises :class:`BackendUnavailable` (an ``OSError``) saying why;
an unknown name raises ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path

from emod.power.base import BackendUnavailable, NullBackend, PowerBackend
from emod.power.hwmon import HwmonBackend
from emod.power.pmic import DEFAULT_TIMEOUT, PmicBackend
from emod.power.rapl import RaplBackend

BACKENDS = ("pi5-pmic", "hwmon", "rapl", "none")
AUTO_ORDER = ("pi5-pmic", "hwmon", "rapl")


def _open(name: str, vcgencmd: str, hwmon_root: str | Path, rapl_root: str | Path,
          pmic_timeout: float) -> PowerBackend:
    if name == "none":
        return NullBackend("power backend 'none' selected")
    if name == "rapl":
        return RaplBackend(rapl_root)
    backend: PowerBackend = PmicBackend(vcgencmd, pmic_timeout) if name == "pi5-pmic" else HwmonBackend(hwmon_root)
    if backend.read() is None:
        backend.close()
        raise BackendUnavailable(f"{name}: no reading ({backend.last_error})")
    return backend


def open_backend(name: str = "auto", *, vcgencmd: str = "vcgencmd", hwmon_root: str | Path = "/sys/class/hwmon",
                 rapl_root: str | Path = "/sys/class/powercap", pmic_timeout: float = DEFAULT_TIMEOUT) -> PowerBackend:
    """Open the backend NAME (one of :data:`BACKENDS` or "auto"); see the module docstring."""
    if name not in BACKENDS and name != "auto":
        raise ValueError(f"unknown power backend {name!r}; expected auto or one of {', '.join(BACKENDS)}")
    if name != "auto":
        return _open(name, vcgencmd, hwmon_root, rapl_root, pmic_timeout)
    reasons = []
    for candidate in AUTO_ORDER:
        try:
            return _open(candidate, vcgencmd, hwmon_root, rapl_root, pmic_timeout)
        except BackendUnavailable as e:
            reasons.append(str(e))
    return NullBackend("no power backend usable: " + "; ".join(reasons))
