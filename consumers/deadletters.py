"""Guards around the dead-letter path: a circuit breaker and a rate-limited warning log.

A poison message is dead-lettered and the stream goes on; but when most messages are poison,
the producer is broken, and dead-lettering the whole stream would only hide it. The breaker
watches the share of dead letters among the last messages handled and trips above a threshold:
the consumer then stops with an error (exit 1) without committing the batch, so nothing is lost
and an operator finds the reason in the log and on the dead-letter topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


class DeadLetterBreaker:
    """Trips when more than `max_share` of the last `window` messages were dead-lettered.

    A ring of the last `window` outcomes (one byte each): O(1) per message. `window` 0 turns
    it off. It only judges a full window, so a handful of poison messages at start-up never
    trips it.
    """

    def __init__(self, window: int, max_share: float) -> None:
        if window < 0 or not 0 < max_share <= 1:
            raise ValueError(f"invalid breaker: window={window}, max_share={max_share}")
        self.window = window
        self.max_share = max_share
        self._ring = bytearray(window)
        self._next = 0
        self._seen = 0
        self._dead = 0

    def record(self, dead: bool) -> None:
        """Count one handled message (dead-lettered or not)."""
        if not self.window:
            return
        slot = self._next
        self._dead += dead - self._ring[slot]
        self._ring[slot] = dead
        self._next = (slot + 1) % self.window
        self._seen += 1

    @property
    def share(self) -> float:
        """Share of dead letters among the last messages (up to `window` of them)."""
        seen = min(self._seen, self.window)
        return self._dead / seen if seen else 0.0

    @property
    def tripped(self) -> bool:
        return self._seen >= self.window > 0 and self._dead > self.max_share * self.window

    def describe(self) -> str:
        return (f"{self._dead} of the last {min(self._seen, self.window)} messages went to the "
                f"dead-letter topic (limit: {self.max_share:.0%} of {self.window})")


@dataclass
class _Allowance:
    started: float
    logged: int = 0
    suppressed: int = 0


class RateLimitedLog:
    """At most `burst` warnings per key (a dead-letter reason) every `interval_s`; the others
    are counted and reported in one line once their interval is over (`flush`, or the next
    warning of that key)."""

    def __init__(self, logger: logging.Logger, *, interval_s: float = 10.0, burst: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.burst = burst
        self.clock = clock
        self._keys: dict[str, _Allowance] = {}

    def warning(self, key: str, message: str, *args: object, exc_info: bool = False) -> None:
        now = self.clock()
        allowance = self._keys.get(key)
        if allowance is None or now - allowance.started >= self.interval_s:
            if allowance is not None:
                self._report(key, allowance)
            allowance = self._keys[key] = _Allowance(now)
        if allowance.logged < self.burst:
            allowance.logged += 1
            self.logger.warning(message, *args, exc_info=exc_info, stacklevel=2)
        else:
            allowance.suppressed += 1

    def flush(self) -> None:
        """Report the warnings suppressed in the intervals that are over."""
        now = self.clock()
        for key, allowance in list(self._keys.items()):
            if now - allowance.started >= self.interval_s:
                self._report(key, allowance)
                del self._keys[key]

    def _report(self, key: str, allowance: _Allowance) -> None:
        if allowance.suppressed:
            self.logger.warning("... and %d more %s warnings in %.0f s (not logged one by one)",
                                allowance.suppressed, key, self.interval_s)
