"""EnergyAttributor: joules per inference per model from power readings and inference events."""

from __future__ import annotations

import pytest

from emod.power.energy import EnergyAttributor


def _readings(attributor: EnergyAttributor, watts, start: int = 0, stop: int = 10) -> None:
    for t in range(start, stop + 1):
        attributor.add_power(float(t), watts(t) if callable(watts) else watts)


def test_constant_power_splits_over_inferences() -> None:
    """At a constant 5 W, 20 inferences over 2 s cost 0.5 J each."""
    a = EnergyAttributor()
    _readings(a, 5.0)
    a.add_inference(0.0, "mobilenet", 0)
    a.add_inference(1.0, "mobilenet", 10)
    a.add_inference(2.0, "mobilenet", 10)
    assert a.joules_per_inference() == {"mobilenet": pytest.approx(0.5)}
    assert a.models["mobilenet"].joules == pytest.approx(10.0)


def test_power_is_interpolated_between_readings() -> None:
    """Energy is the trapezoid integral of linearly interpolated power, also inside one sampling period."""
    a = EnergyAttributor()
    _readings(a, lambda t: float(t))  # a ramp: P(t) = t watts
    a.add_inference(2.0, "m", 0)
    a.add_inference(4.5, "m", 1)  # integral of t from 2 to 4.5 = (4.5^2 - 2^2) / 2
    assert a.joules_per_inference()["m"] == pytest.approx((4.5**2 - 4) / 2)


def test_each_interval_goes_to_the_model_that_closes_it() -> None:
    """Two models used in turn each get the energy of their own intervals."""
    a = EnergyAttributor()
    _readings(a, lambda t: 2.0 if t <= 5 else 8.0)
    a.add_inference(0.0, "small", 0)
    for t in (1, 2, 3, 4, 5):
        a.add_inference(float(t), "small", 4)
    a.add_inference(6.0, "big", 1)  # 5..6 s: the ramp from 2 to 8 W, 5 J
    a.add_inference(7.0, "big", 1)
    result = a.joules_per_inference()
    assert result["small"] == pytest.approx(0.5)
    assert result["big"] == pytest.approx((5.0 + 8.0) / 2)


def test_first_event_only_opens_the_window() -> None:
    """The first event's count is not attributed, since when its work began is unknown."""
    a = EnergyAttributor()
    _readings(a, 4.0)
    a.add_inference(1.0, "m", 100)
    assert a.joules_per_inference() == {"m": None}
    a.add_inference(2.0, "m", 2)
    assert a.models["m"].inferences == 2
    assert a.joules_per_inference() == {"m": pytest.approx(2.0)}


def test_no_power_readings_gives_none() -> None:
    """A model whose intervals no reading covers has None, and its inferences are counted as uncovered."""
    a = EnergyAttributor(max_delay=1.0)
    for t in range(10):
        a.add_inference(float(t), "m", 3)
    assert a.joules_per_inference() == {"m": None}
    assert a.models["m"].uncovered > 0
    assert a.models["m"].inferences == 0


def test_gap_in_readings_leaves_interval_uncovered() -> None:
    """An interval spanning a missing reading (None) is not attributed; intervals around it are."""
    a = EnergyAttributor()
    _readings(a, lambda t: None if t == 5 else 1.0)
    for t in range(0, 10):
        a.add_inference(t + 0.5, "m", 1)
    m = a.models["m"]
    assert m.uncovered == 3  # 3.5..4.5, 4.5..5.5 and 5.5..6.5 need the missing reading at 5 s
    assert m.inferences == 6 and m.joules_per_inference == pytest.approx(1.0)


def test_readings_before_or_after_only_do_not_cover() -> None:
    """An interval is covered only when readings bracket it on both sides."""
    a = EnergyAttributor()
    _readings(a, 3.0, start=5, stop=10)
    a.add_inference(4.0, "m", 0)
    a.add_inference(6.0, "m", 1)  # starts before the first reading
    a.add_inference(7.0, "m", 1)
    assert a.models["m"].uncovered == 1 and a.models["m"].inferences == 1
    a.add_inference(12.0, "m", 1)  # ends after the last reading: pending until one arrives
    assert a.models["m"].inferences == 1
    a.add_power(12.0, 3.0)
    assert a.models["m"].inferences == 2
    assert a.joules_per_inference()["m"] == pytest.approx((3.0 + 15.0) / 2)


def test_idle_gap_longer_than_max_gap_is_not_attributed() -> None:
    """A long pause between inferences is idle time, not the next inference's energy."""
    a = EnergyAttributor(max_gap=2.0)
    _readings(a, 1.0)
    a.add_inference(0.0, "m", 0)
    a.add_inference(1.0, "m", 1)
    a.add_inference(9.0, "m", 1)
    assert a.models["m"].inferences == 1 and a.models["m"].uncovered == 1
    assert a.joules_per_inference()["m"] == pytest.approx(1.0)


def test_events_may_arrive_before_the_readings_that_cover_them() -> None:
    """Events reported ahead of the power readings are settled once the readings arrive."""
    a = EnergyAttributor()
    for t in range(6):
        a.add_inference(float(t), "m", 1)
    assert a.joules_per_inference() == {"m": None}
    _readings(a, 2.0, stop=6)
    assert a.models["m"].inferences == 5
    assert a.joules_per_inference()["m"] == pytest.approx(2.0)


def test_memory_stays_bounded_over_a_long_run() -> None:
    """Settled readings are dropped, so a day of samples does not pile up."""
    a = EnergyAttributor()
    for t in range(20_000):
        a.add_power(float(t), 1.0)
        a.add_inference(t + 0.5, "m", 1)
    assert len(a._times) < 20 and len(a._pending) < 5
    assert a.joules_per_inference()["m"] == pytest.approx(1.0)
