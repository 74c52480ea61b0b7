"""The fault switch: makes the sandbox's Stripe API fail, for outage tests.

`error` answers 500 api_error (what Stripe sends when it breaks); `hang` holds the request for
`seconds` before that 500, so a client with a shorter timeout sees the network fail. Either way
the request has no effect, as if Stripe never received it. A fault lasts for the next `count`
API calls, or until cleared when no count is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultMode(StrEnum):
    ERROR = "error"
    HANG = "hang"


@dataclass(frozen=True, slots=True)
class Fault:
    mode: FaultMode
    seconds: float


class FaultSwitch:
    def __init__(self) -> None:
        self._fault: Fault | None = None
        self._remaining: int | None = None
        self.injected = 0

    def set(self, mode: FaultMode, *, count: int | None = None, seconds: float = 5.0) -> None:
        self._fault = Fault(mode, seconds)
        self._remaining = count

    def clear(self) -> None:
        self._fault = None
        self._remaining = None

    def take(self) -> Fault | None:
        """The fault for this API call, if one is armed (and one use of it spent)."""
        fault = self._fault
        if fault is None:
            return None
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self.clear()
        self.injected += 1
        return fault

    def describe(self) -> dict[str, Any]:
        fault = self._fault
        return {
            "mode": fault.mode.value if fault else None,
            "seconds": fault.seconds if fault else None,
            "remaining": self._remaining,
            "injected": self.injected,
        }
