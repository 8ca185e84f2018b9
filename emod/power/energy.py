"""Energy per inference, attributed to models from power readings and inference events.

Inputs, each in non-decreasing time order (one monotonic clock for both):

* power readings ``add_power(t, watts)``; ``watts=None`` (no reading) makes a gap;
* inference events ``add_inference(t, model, count)``: MODEL finished COUNT inferences
  during the interval since the previous event (of any model). The first event only
  opens the first interval: when its work began is unknown, so its count is not used;
  an event older than the previous one is counted as uncovered.
  An event with ``count=0`` just marks a start, e.g. after loading a model.

Attribution: power is interpolated linearly between consecutive readings, and the energy
of each interval is integrated over it and attributed, with the event's count, to the
event's model. An interval counts only if power readings bracket it with no gap in
between; otherwise its inferences are tallied as ``uncovered`` and its energy is unknown.
Intervals longer than ``max_gap`` seconds are idle time, not inference work: they are
left out the same way. ``joules_per_inference`` = attributed joules / attributed count,
``None`` for a model whose intervals no reading covers (yet).

An interval is settled once a reading at or after its end has arrived, or once the data
has moved ``max_delay`` seconds past it; only the readings that open intervals may still
need are kept, so memory stays bounded. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass


@dataclass
class ModelEnergy:
    """What is attributed to one model so far."""

    joules: float = 0.0
    inferences: int = 0  # inferences in intervals with known energy
    uncovered: int = 0  # inferences in intervals without power coverage (or idle gaps)

    @property
    def joules_per_inference(self) -> float | None:
        return self.joules / self.inferences if self.inferences else None


class EnergyAttributor:
    """Accumulates :class:`ModelEnergy` per model; see the module docstring for the rules."""

    def __init__(self, max_gap: float = 10.0, max_delay: float = 10.0) -> None:
        self.max_gap = max_gap
        self.max_delay = max_delay
        self.models: dict[str, ModelEnergy] = {}
        self._times: list[float] = []
        self._watts: list[float | None] = []
        self._pending: deque[tuple[float, float, str, int]] = deque()  # (start, end, model, count)
        self._last_event: float | None = None

    def add_power(self, t: float, watts: float | None) -> None:
        """Record a power reading (watts, or ``None`` for "no reading") taken at time T."""
        if watts is not None and not math.isfinite(watts):
            watts = None
        i = bisect_right(self._times, t)
        self._times.insert(i, t)
        self._watts.insert(i, watts)
        self._settle()

    def add_inference(self, t: float, model: str, count: int = 1) -> None:
        """Record that MODEL finished COUNT inferences since the previous event, at time T."""
        m = self.models.setdefault(model, ModelEnergy())
        if self._last_event is not None and t < self._last_event:
            m.uncovered += count  # out of order: its interval is unknown
            return
        if self._last_event is not None:
            self._pending.append((self._last_event, t, model, count))
        self._last_event = t
        self._settle()

    def joules_per_inference(self) -> dict[str, float | None]:
        """Joules per inference of every model seen since start (``None`` where nothing is covered)."""
        return {name: m.joules_per_inference for name, m in self.models.items()}

    def energy(self, start: float, end: float) -> float | None:
        """Joules between START and END from the readings still kept, or ``None`` if not covered."""
        i = bisect_right(self._times, start) - 1  # last reading at or before start
        j = bisect_left(self._times, end)  # first reading at or after end
        if i < 0 or j >= len(self._times) or any(w is None for w in self._watts[i:j + 1]):
            return None
        joules = 0.0
        for k in range(i, j):
            t0, t1, w0, w1 = self._times[k], self._times[k + 1], self._watts[k], self._watts[k + 1]
            lo, hi = max(t0, start), min(t1, end)
            if hi > lo:
                wl = w0 + (w1 - w0) * (lo - t0) / (t1 - t0)  # type: ignore[operator]
                wh = w0 + (w1 - w0) * (hi - t0) / (t1 - t0)  # type: ignore[operator]
                joules += (wl + wh) / 2 * (hi - lo)
        return joules

    def _settle(self) -> None:
        latest_reading = self._times[-1] if self._times else -math.inf
        latest = max(latest_reading, self._last_event if self._last_event is not None else -math.inf)
        while self._pending:
            start, end, model, count = self._pending[0]
            if latest_reading < end and latest - end <= self.max_delay:
                break
            self._pending.popleft()
            joules = self.energy(start, end) if end - start <= self.max_gap else None
            m = self.models[model]
            if joules is None:
                m.uncovered += count
            else:
                m.joules += joules
                m.inferences += count
        # Keep the readings that open intervals may still need: from the last one at or before `keep`.
        keep = self._pending[0][0] if self._pending else max(
            self._last_event if self._last_event is not None else -math.inf, latest_reading - self.max_delay)
        cut = bisect_right(self._times, keep) - 1
        if cut > 0:
            del self._times[:cut], self._watts[:cut]
