"""Steps of a local run and what happened when, shared by the live view and the summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Step:
    """One stage of the scenario (start the platform, train, stream, ...)."""

    name: str
    status: StepStatus = StepStatus.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    detail: str = ""

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.monotonic()) - self.started_at


@dataclass
class Timeline:
    """Ordered steps plus a log of notable events, timed from the start of the run."""

    steps: dict[str, Step]
    started_at: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str]] = field(default_factory=list)
    #: Called with (seconds since start, text) for every event and step change (plain output).
    listener: Callable[[float, str], None] | None = None

    @classmethod
    def of(cls, *names: str) -> Timeline:
        return cls({name: Step(name) for name in names})

    def start(self, name: str, detail: str = "") -> None:
        step = self.steps[name]
        step.status, step.started_at, step.detail = StepStatus.RUNNING, time.monotonic(), detail
        self._tell(f"{name}: started" + (f" ({detail})" if detail else ""))

    def done(self, name: str, detail: str | None = None) -> None:
        self._finish(name, StepStatus.DONE, detail)

    def fail(self, name: str, detail: str) -> None:
        self._finish(name, StepStatus.FAILED, detail)

    def skip(self, name: str, detail: str) -> None:
        self._finish(name, StepStatus.SKIPPED, detail)

    def note(self, text: str) -> None:
        """Record an event at the current time (shown in the live view's log)."""
        self.events.append((self.elapsed_s, text))
        self._tell(text)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    def running(self) -> list[Step]:
        return [step for step in self.steps.values() if step.status is StepStatus.RUNNING]

    def _finish(self, name: str, status: StepStatus, detail: str | None) -> None:
        step = self.steps[name]
        step.status, step.finished_at = status, time.monotonic()
        if step.started_at is None:
            step.started_at = step.finished_at
        if detail is not None:
            step.detail = detail
        self._tell(f"{name}: {status} after {step.duration_s or 0:.1f} s"
                   + (f" ({step.detail})" if step.detail else ""))

    def _tell(self, text: str) -> None:
        if self.listener is not None:
            self.listener(self.elapsed_s, text)
