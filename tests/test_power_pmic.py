"""The pi5-pmic backend: parsing `vcgencmd pmic_read_adc`, pairing rails by name, and refusing broken output."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from emod.power.pmic import PmicBackend, parse_pmic, total_watts
from emod.testing import PI5_PMIC_READ_ADC, write_fake_vcgencmd

FIXTURE_NAME = "vcgencmd_pmic_read_adc.pi5-load.txt"
_REPO = Path(__file__).resolve().parents[1]
_FIXTURES = [p / FIXTURE_NAME for p in (_REPO / "shared" / "fixtures", _REPO.parent / "shared" / "fixtures")]
FIXTURE = next((p for p in _FIXTURES if p.is_file()), None)
needs_fixture = pytest.mark.skipif(FIXTURE is None, reason=f"{FIXTURE_NAME} not found in shared/fixtures")

# 7.24 W minus the VDD_CORE rail (0.86173300 V x 6.22421000 A).
CORE_W = 0.86173300 * 6.22421000


def _edit(text: str, drop: str = "", replace: tuple[str, str] = ("", "")) -> str:
    lines = [ln for ln in text.splitlines(keepends=True) if not (drop and drop in ln)]
    return "".join(lines).replace(*replace) if replace[0] else "".join(lines)


@needs_fixture
def test_real_capture_sums_to_7_24_w() -> None:
    """The recorded Pi 5 capture sums to 7.24 W over its twelve paired rails."""
    rails = parse_pmic(FIXTURE.read_text())
    assert len(rails) == 14
    assert sum(1 for r in rails.values() if "A" in r and "V" in r) == 12
    assert total_watts(rails) == pytest.approx(7.24, abs=0.01)


@needs_fixture
def test_shipped_sample_is_the_recorded_capture() -> None:
    """emod.testing ships the recorded capture unchanged."""
    assert PI5_PMIC_READ_ADC == FIXTURE.read_text()


def test_rails_are_paired_by_name_not_channel_index() -> None:
    """Current and voltage are paired by rail name; voltage-only rails are kept but not summed."""
    rails = parse_pmic(PI5_PMIC_READ_ADC)
    assert rails["VDD_CORE"] == {"A": 6.22421, "V": 0.861733}
    assert rails["3V7_WL_SW"] == {"A": 0.09368929, "V": 3.699776}
    assert rails["EXT5V"] == {"V": 5.09066} and rails["BATT"] == {"V": 0.0}
    reordered = "".join(reversed(PI5_PMIC_READ_ADC.splitlines(keepends=True)))
    assert total_watts(parse_pmic(reordered)) == pytest.approx(total_watts(rails))


def test_leading_spaces_and_crlf_do_not_matter() -> None:
    """Lines parse whatever their leading whitespace and line endings."""
    text = "VDD_CORE_A current(7)=2.0A\r\n\t    VDD_CORE_V volt(15)=0.5V\r\n"
    assert total_watts(parse_pmic(text)) == pytest.approx(1.0)


def test_nan_on_voltage_only_rail_is_ignored() -> None:
    """A nan on BATT_V (voltage only, not summed) leaves the total intact."""
    text = _edit(PI5_PMIC_READ_ADC, replace=("BATT_V volt(25)=0.00000000V", "BATT_V volt(25)=nanV"))
    assert total_watts(parse_pmic(text)) == pytest.approx(7.24, abs=0.01)


@pytest.mark.parametrize("old,new", [("VDD_CORE_V volt(15)=0.86173300V", "VDD_CORE_V volt(15)=nanV"),
                                     ("HDMI_A current(22)=0.02417580A", "HDMI_A current(22)=nanA"),
                                     ("HDMI_A current(22)=0.02417580A", "HDMI_A current(22)=??A")])
def test_bad_value_on_paired_rail_gives_none(old: str, new: str) -> None:
    """A nan or unparseable value on a paired rail makes the whole reading None, not a partial sum."""
    text = _edit(PI5_PMIC_READ_ADC, replace=(old, new))
    assert text != PI5_PMIC_READ_ADC
    assert total_watts(parse_pmic(text)) is None


def test_rail_missing_its_counterpart_is_skipped() -> None:
    """A rail whose voltage line is missing is left out of the sum."""
    text = _edit(PI5_PMIC_READ_ADC, drop="VDD_CORE_V")
    assert total_watts(parse_pmic(text)) == pytest.approx(total_watts(parse_pmic(PI5_PMIC_READ_ADC)) - CORE_W)


@pytest.mark.parametrize("text", ["", "error=1 error_msg=\"Command not registered\"\n", "garbage\n\x00\n",
                                  "".join(ln + "\n" for ln in PI5_PMIC_READ_ADC.splitlines() if "_A " in ln)])
def test_no_paired_rail_gives_none(text: str) -> None:
    """Empty, unparseable or current-only output has no paired rail and gives None."""
    assert total_watts(parse_pmic(text)) is None


def test_backend_reads_fake_vcgencmd(tmp_path: Path) -> None:
    """The backend runs the (fake) command and reports the capture's 7.24 W under the name pi5-pmic."""
    backend = PmicBackend(str(write_fake_vcgencmd(tmp_path)))
    assert backend.name == "pi5-pmic"
    assert backend.read() == pytest.approx(7.24, abs=0.01)
    assert backend.last_error is None


def test_fake_rejects_other_commands(tmp_path: Path) -> None:
    """The fake vcgencmd fails, like the real one, on a command it does not know."""
    result = subprocess.run([write_fake_vcgencmd(tmp_path), "measure_temp"], capture_output=True, text=True)
    assert result.returncode != 0 and result.stdout == ""


def test_nonzero_exit_gives_none(tmp_path: Path) -> None:
    """Output that comes with a non-zero exit status is not trusted."""
    backend = PmicBackend(str(write_fake_vcgencmd(tmp_path, exit_code=1)))
    assert backend.read() is None
    assert "status 1" in backend.last_error


def test_nan_output_gives_none(tmp_path: Path) -> None:
    """A fake printing nanV on a paired rail yields None from the backend."""
    text = _edit(PI5_PMIC_READ_ADC, replace=("VDD_CORE_V volt(15)=0.86173300V", "VDD_CORE_V volt(15)=nanV"))
    backend = PmicBackend(str(write_fake_vcgencmd(tmp_path, output_text=text)))
    assert backend.read() is None
    assert backend.last_error


def test_timeout_gives_none_promptly(tmp_path: Path) -> None:
    """A vcgencmd that hangs past the timeout is killed and gives None without waiting for it."""
    backend = PmicBackend(str(write_fake_vcgencmd(tmp_path, sleep=30)), timeout=0.5)
    start = time.monotonic()
    assert backend.read() is None
    assert time.monotonic() - start < 10
    assert "timed out" in backend.last_error


def test_missing_vcgencmd_gives_none(tmp_path: Path) -> None:
    """A vcgencmd that is not installed gives None, not an exception."""
    backend = PmicBackend(str(tmp_path / "no-such-vcgencmd"))
    assert backend.read() is None
    assert "no-such-vcgencmd" in backend.last_error
