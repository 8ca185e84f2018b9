"""tools/power_monitor.py run end to end as a subprocess, against a fake vcgencmd and fake sysfs trees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emod.testing import PI5_PMIC_READ_ADC, write_fake_vcgencmd

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "power_monitor.py"


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = tmp_path / "report.json"
    isolated = ["--hwmon-root", str(tmp_path / "no-hwmon"), "--rapl-root", str(tmp_path / "no-rapl")]
    result = subprocess.run([sys.executable, str(TOOL), "--json", str(out), *isolated, *args], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    return result, json.loads(out.read_text()) if out.exists() else None


def test_reports_average_from_fake_pmic(tmp_path: Path) -> None:
    """With the fake Pi 5 vcgencmd it prints each sample and the summary, and writes the JSON report."""
    fake = write_fake_vcgencmd(tmp_path)
    result, report = _run(tmp_path, "--backend", "pi5-pmic", "--vcgencmd", str(fake), "--duration", "0.3",
                          "--period", "0.1")
    assert result.returncode == 0, result.stderr
    assert "[3/3]" in result.stdout and "average: 7.240 W" in result.stdout and "pi5-pmic" in result.stdout
    assert report["backend"] == "pi5-pmic"
    assert len(report["samples"]) == 3 and report["valid_samples"] == 3
    for key in ("mean_w", "min_w", "max_w"):
        assert report[key] == pytest.approx(7.24, abs=0.01)
    assert report["duration_s"] >= 0.3


def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    """-q leaves out the per-sample lines but keeps the summary."""
    fake = write_fake_vcgencmd(tmp_path)
    result, report = _run(tmp_path, "-q", "--vcgencmd", str(fake), "--duration", "0.2", "--period", "0.1")
    assert result.returncode == 0, result.stderr
    assert "[1/2]" not in result.stdout and "average: 7.240 W" in result.stdout
    assert report["backend"] == "pi5-pmic"


def test_broken_output_exits_non_zero_with_null_mean(tmp_path: Path) -> None:
    """A named backend with broken output (nanV on a paired rail) is refused: it says why, exits 2, mean is null."""
    text = PI5_PMIC_READ_ADC.replace("VDD_CORE_V volt(15)=0.86173300V", "VDD_CORE_V volt(15)=nanV")
    fake = write_fake_vcgencmd(tmp_path, output_text=text)
    result, report = _run(tmp_path, "--backend", "pi5-pmic", "--vcgencmd", str(fake), "--duration", "0.1",
                          "--period", "0.1")
    assert result.returncode == 2  # pi5-pmic cannot be opened: its probe reading is None
    assert "no reading" in result.stderr
    assert report["mean_w"] is None and report["samples"] == []


def test_no_sensor_at_all_exits_non_zero(tmp_path: Path) -> None:
    """With auto and no sensor it falls back to none, says there is no usable reading and exits 1."""
    result, report = _run(tmp_path, "--vcgencmd", str(tmp_path / "absent"), "--duration", "0.2", "--period", "0.1")
    assert result.returncode == 1
    assert "no usable power reading" in result.stderr
    assert report["backend"] == "none" and report["mean_w"] is None and report["max_w"] is None
    assert [s["watts"] for s in report["samples"]] == [None, None]


def test_hwmon_backend_by_name(tmp_path: Path) -> None:
    """--backend hwmon reads a fake hwmon tree."""
    sensor = tmp_path / "hwmon" / "hwmon0" / "power1_input"
    sensor.parent.mkdir(parents=True)
    sensor.write_text("4500000\n")
    result, report = _run(tmp_path, "--backend", "hwmon", "--hwmon-root", str(tmp_path / "hwmon"),
                          "--duration", "0.2", "--period", "0.1")
    assert result.returncode == 0, result.stderr
    assert report["backend"] == "hwmon" and report["mean_w"] == pytest.approx(4.5)


def test_rapl_backend_has_a_reading_from_the_first_sample(tmp_path: Path) -> None:
    """--backend rapl takes its baseline before sampling, so every sample has a reading."""
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text("123456\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    result, report = _run(tmp_path, "--backend", "rapl", "--rapl-root", str(tmp_path / "powercap"),
                          "--duration", "0.2", "--period", "0.1")
    assert result.returncode == 0, result.stderr
    assert report["backend"] == "rapl" and report["valid_samples"] == 2 and report["mean_w"] == 0.0
