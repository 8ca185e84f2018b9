"""The hwmon, rapl and none backends on fake sysfs trees, and how open_backend chooses among all four."""

from __future__ import annotations

from pathlib import Path

import pytest

from emod.power import BackendUnavailable, NullBackend, PowerBackend, open_backend
from emod.power.hwmon import HwmonBackend
from emod.power.rapl import RaplBackend
from emod.testing import write_fake_vcgencmd


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def _hwmon(root: Path, index: int, microwatts: int | None = None) -> Path:
    _write(root / f"hwmon{index}" / "name", f"sensor{index}")
    if microwatts is not None:
        _write(root / f"hwmon{index}" / "power1_input", str(microwatts))
    return root / f"hwmon{index}"


def _zone(root: Path, name: str, energy_uj: int, max_uj: int = 262143328850, label: str = "package-0") -> Path:
    _write(root / name / "name", label)
    _write(root / name / "max_energy_range_uj", str(max_uj))
    return _write(root / name / "energy_uj", str(energy_uj))


class Clock:
    """A settable clock standing in for time.monotonic."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# hwmon

def test_hwmon_reads_microwatts_as_watts(tmp_path: Path) -> None:
    """power1_input in microwatts is reported in watts, from the first hwmon that has it."""
    _hwmon(tmp_path, 0)
    _hwmon(tmp_path, 1, 5_250_000)
    _hwmon(tmp_path, 2, 9_000_000)
    backend = HwmonBackend(tmp_path)
    assert backend.name == "hwmon"
    assert backend.path == tmp_path / "hwmon1" / "power1_input"
    assert backend.read() == pytest.approx(5.25)


def test_hwmon_scans_in_numeric_order(tmp_path: Path) -> None:
    """hwmon2 comes before hwmon10."""
    _hwmon(tmp_path, 10, 1_000_000)
    _hwmon(tmp_path, 2, 2_000_000)
    assert HwmonBackend(tmp_path).read() == pytest.approx(2.0)


def test_hwmon_without_power_input_is_unavailable(tmp_path: Path) -> None:
    """A tree with no power1_input raises BackendUnavailable naming the missing file."""
    _hwmon(tmp_path, 0)
    with pytest.raises(BackendUnavailable, match="power1_input"):
        HwmonBackend(tmp_path)


@pytest.mark.parametrize("breakage", ["garbage", "vanished", "directory"])
def test_hwmon_failure_at_run_time_gives_none(tmp_path: Path, breakage: str) -> None:
    """A sensor file that turns unreadable or unparseable gives None, never an exception."""
    dev = _hwmon(tmp_path, 0, 3_000_000)
    backend = HwmonBackend(tmp_path)
    assert backend.read() == pytest.approx(3.0)
    (dev / "power1_input").unlink()
    if breakage == "garbage":
        _write(dev / "power1_input", "n/a")
    elif breakage == "directory":
        (dev / "power1_input").mkdir()
    assert backend.read() is None
    assert backend.last_error


# rapl

def test_rapl_first_read_is_none_then_delta_over_time(tmp_path: Path) -> None:
    """The first reading has no delta (None); then watts = energy delta / elapsed time."""
    energy = _zone(tmp_path, "intel-rapl:0", 1_000_000)
    clock = Clock()
    backend = RaplBackend(tmp_path, clock=clock)
    assert backend.name == "rapl"
    assert backend.read() is None
    clock.t += 2.0
    energy.write_text("21000000\n")
    assert backend.read() == pytest.approx(10.0)


def test_rapl_counter_wrap(tmp_path: Path) -> None:
    """A counter that wrapped at max_energy_range_uj still gives the right power."""
    energy = _zone(tmp_path, "intel-rapl:0", 999_000_000, max_uj=1_000_000_000)
    clock = Clock()
    backend = RaplBackend(tmp_path, clock=clock)
    backend.prime()
    clock.t += 1.0
    energy.write_text("4000000\n")  # 1 J up to the wrap, 4 J after it
    assert backend.read() == pytest.approx(5.0)


def test_rapl_sums_packages_and_skips_subzones_and_psys(tmp_path: Path) -> None:
    """Top-level package zones are summed; sub-zones (already inside a package) and psys are not."""
    p0 = _zone(tmp_path, "intel-rapl:0", 0)
    p1 = _zone(tmp_path, "intel-rapl:1", 0, label="package-1")
    sub = _zone(tmp_path, "intel-rapl:0:0", 0, label="core")
    psys = _zone(tmp_path, "intel-rapl:2", 0, label="psys")
    clock = Clock()
    backend = RaplBackend(tmp_path, clock=clock)
    backend.prime()
    clock.t += 1.0
    for path, uj in ((p0, 3_000_000), (p1, 4_000_000), (sub, 2_000_000), (psys, 50_000_000)):
        path.write_text(f"{uj}\n")
    assert backend.read() == pytest.approx(7.0)


def test_rapl_failure_at_run_time_gives_none_then_recovers(tmp_path: Path) -> None:
    """An unreadable counter gives None; readings resume with a fresh delta once it is back."""
    energy = _zone(tmp_path, "intel-rapl:0", 0)
    clock = Clock()
    backend = RaplBackend(tmp_path, clock=clock)
    backend.prime()
    energy.write_text("oops\n")
    clock.t += 1.0
    assert backend.read() is None
    energy.write_text("1000000\n")
    clock.t += 1.0
    assert backend.read() is None  # no baseline after the failure
    energy.write_text("3000000\n")
    clock.t += 1.0
    assert backend.read() == pytest.approx(2.0)


def test_rapl_without_readable_counters_is_unavailable(tmp_path: Path) -> None:
    """No zones, or zones whose counter cannot be read, raise BackendUnavailable saying why."""
    with pytest.raises(BackendUnavailable, match="energy_uj"):
        RaplBackend(tmp_path)
    _write(tmp_path / "intel-rapl:0" / "energy_uj", "")
    with pytest.raises(BackendUnavailable, match="cannot read"):
        RaplBackend(tmp_path)


# none and failing backends

def test_none_backend_always_gives_none() -> None:
    """The none backend never has a reading."""
    backend = NullBackend()
    assert backend.name == "none"
    assert [backend.read() for _ in range(3)] == [None, None, None]
    backend.close()


def test_base_interface_is_a_context_manager() -> None:
    """Backends close themselves when used in a with block."""
    closed = []

    class Probe(PowerBackend):
        name = "probe"

        def read(self) -> float | None:
            return 1.0

        def close(self) -> None:
            closed.append(True)

    with Probe() as backend:
        assert backend.read() == 1.0
    assert closed == [True]


# selection

@pytest.fixture
def machine(tmp_path: Path) -> dict:
    """A fake machine with all three sensors: a Pi 5 PMIC (7.24 W), hwmon (3 W) and RAPL."""
    hwmon_root, rapl_root = tmp_path / "hwmon", tmp_path / "powercap"
    _hwmon(hwmon_root, 0, 3_000_000)
    _zone(rapl_root, "intel-rapl:0", 0)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    return {"vcgencmd": str(write_fake_vcgencmd(bin_dir)), "hwmon_root": hwmon_root, "rapl_root": rapl_root}


def test_auto_prefers_pmic_then_hwmon_then_rapl_then_none(machine: dict, tmp_path: Path) -> None:
    """auto picks the first usable of pi5-pmic, hwmon, rapl, and falls back to none."""
    assert open_backend(**machine).name == "pi5-pmic"
    machine["vcgencmd"] = str(tmp_path / "absent")
    assert open_backend(**machine).name == "hwmon"
    (machine["hwmon_root"] / "hwmon0" / "power1_input").unlink()
    assert open_backend(**machine).name == "rapl"
    machine["rapl_root"] = tmp_path / "empty"
    backend = open_backend(**machine)
    assert backend.name == "none" and backend.read() is None
    assert "pi5-pmic" in backend.last_error and "rapl" in backend.last_error


def test_auto_skips_pmic_with_broken_output(machine: dict, tmp_path: Path) -> None:
    """A vcgencmd that answers but gives no valid reading is passed over in favour of hwmon."""
    machine["vcgencmd"] = str(write_fake_vcgencmd(tmp_path, exit_code=255))
    backend = open_backend(**machine)
    assert backend.name == "hwmon" and backend.read() == pytest.approx(3.0)


@pytest.mark.parametrize("name", ["pi5-pmic", "hwmon", "rapl"])
def test_named_unavailable_backend_raises(tmp_path: Path, name: str) -> None:
    """Asking for a backend this machine lacks raises BackendUnavailable (an OSError) naming it and why."""
    with pytest.raises(BackendUnavailable, match=name) as info:
        open_backend(name, vcgencmd=str(tmp_path / "absent"), hwmon_root=tmp_path, rapl_root=tmp_path)
    assert isinstance(info.value, OSError)


def test_named_backends_open(machine: dict) -> None:
    """Each backend opens by name when its sensor is there, and none always opens."""
    for name in ("pi5-pmic", "hwmon", "rapl", "none"):
        assert open_backend(name, **machine).name == name


def test_unknown_backend_name_is_a_value_error() -> None:
    """A misspelt backend name raises ValueError listing the valid ones."""
    with pytest.raises(ValueError, match="pi5-pmic"):
        open_backend("pmic")
