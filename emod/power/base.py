"""The interface every power backend implements, its error type, and the ``none`` backend."""

from __future__ import annotations

from typing import Any


class BackendUnavailable(OSError):
    """A requested power backend cannot work on this machine; the message says why."""


class PowerBackend:
    """A source of instantaneous power readings, in watts.

    ``read()`` returns the current power or ``None`` when there is no trustworthy reading;
    it never raises (a failure is recorded in ``last_error`` for diagnostics instead).
    """

    name: str = "?"

    def __init__(self) -> None:
        self.last_error: str | None = None

    def read(self) -> float | None:
        """Return the power in watts now, or ``None``."""
        raise NotImplementedError

    def prime(self) -> None:
        """Take any baseline the backend needs before its first real reading (no-op by default)."""

    def close(self) -> None:
        """Release resources (nothing to release by default)."""

    def __enter__(self) -> PowerBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class NullBackend(PowerBackend):
    """The ``none`` backend: no sensor, every reading is ``None``."""

    name = "none"

    def __init__(self, reason: str = "no power sensor") -> None:
        super().__init__()
        self.last_error = reason

    def read(self) -> float | None:
        return None
