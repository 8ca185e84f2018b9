"""Power sampling: one small backend per kind of sensor, chosen automatically.

Backends (each names itself in ``name``):

``pi5-pmic``  Raspberry Pi 5 PMIC rails via ``vcgencmd pmic_read_adc`` (:mod:`emod.power.pmic`);
``hwmon``     a ``power1_input`` sensor under ``/sys/class/hwmon`` (:mod:`emod.power.hwmon`);
``rapl``      Intel/AMD RAPL energy counters under ``/sys/class/powercap`` (:mod:`emod.power.rapl`);
``none``      no sensor: every reading is ``None`` (:mod:`emod.power.base`).

:func:`open_backend` picks one ("auto" tries them in that order). ``read()`` returns watts
or ``None`` and never raises: a missing or broken sensor is reported as "no reading",
never as a made-up number. :class:`EnergyAttributor` turns readings and inference
events into joules per inference for each model.

This package imports only the standard library (the power stage must stay light).
"""

from emod.power.base import BackendUnavailable, NullBackend, PowerBackend
from emod.power.energy import EnergyAttributor, ModelEnergy
from emod.power.select import BACKENDS, open_backend

__all__ = ["BACKENDS", "BackendUnavailable", "EnergyAttributor", "ModelEnergy", "NullBackend", "PowerBackend",
           "open_backend"]
