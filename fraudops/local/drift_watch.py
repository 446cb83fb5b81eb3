"""The demo's monitoring loop: run drift checks, follow the retraining they start, see the switch.

A check runs as `fraudops drift check --json` (a child process) once drifted traffic has been
decided for a while, and again at an interval while no drift is found. When the drift job's
policy triggers, it starts the training pipeline itself (its command launcher, in a session of
its own) and reports that process's pid; the watch follows the pid until retraining ends, then
watches the predictor until it serves the new champion.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fraudops.local import services
from fraudops.local.exceptions import ProcessFailedError
from fraudops.local.platform import LocalPlatform
from fraudops.local.summary import DriftOutcome
from fraudops.local.supervisor import ManagedProcess


@dataclass(frozen=True)
class DriftWatchConfig:
    """When to check: `delay_s` after drifted events start flowing, then every `interval_s`."""

    delay_s: float
    interval_s: float
    max_checks: int = 4


class DriftWatch:
    """Drives drift checks during the stream and records what happened in a `DriftOutcome`."""

    def __init__(self, platform: LocalPlatform, config: DriftWatchConfig, data_path: Path,
                 window_s: Callable[[], float], stream_started_at: float,
                 outcome: DriftOutcome) -> None:
        self._platform = platform
        self._config = config
        self._data_path = data_path
        self._window_s = window_s
        self._t0 = stream_started_at
        self.outcome = outcome
        self._check: ManagedProcess | None = None
        self._next_check_at: float | None = None
        self._retrain_pid: int | None = None
        self._retrain_started: float | None = None
        self._champion_before: str | None = None
        self.report_location: str | None = None
        self.problems: list[str] = []

    @property
    def busy(self) -> bool:
        """A check or a retraining is in progress."""
        return self._check is not None or self._retrain_pid is not None

    @property
    def finished(self) -> bool:
        """Nothing more will happen: the model switched, or no further check is planned."""
        outcome = self.outcome
        if outcome.switched_at_s is not None:
            return True
        if self.busy:
            return False
        if outcome.detected_at_s is None:
            return outcome.checks >= self._config.max_checks
        return outcome.promoted is False  # promoted: wait for the switch

    def drift_started(self, at: float) -> None:
        """Drifted events began to flow at monotonic time `at`: schedule the first check."""
        if self._next_check_at is None:
            self._next_check_at = at + self._config.delay_s

    def poll(self, served_versions: str | None) -> None:
        """Advance: start a due check, collect a finished one, follow retraining and switch."""
        now = time.monotonic()
        if self._check is not None and not self._check.running:
            self._collect(self._check)
        elif self._check is None and self._due(now):
            self._start_check()
        if self._retrain_pid is not None and not _alive(self._retrain_pid):
            self._retraining_ended(now)
        self._follow_switch(served_versions, now)

    def _due(self, now: float) -> bool:
        return (self._next_check_at is not None and now >= self._next_check_at
                and self.outcome.detected_at_s is None
                and self.outcome.checks < self._config.max_checks)

    def _start_check(self) -> None:
        spec = services.drift_check(self._platform.layout, window_s=self._window_s(),
                                    data_path=self._data_path)
        self._check = self._platform.start_job(spec)
        self._next_check_at = None
        self._platform.timeline.note(f"drift check #{self.outcome.checks + 1} started")

    def _collect(self, check: ManagedProcess) -> None:
        self._check, self.outcome.checks = None, self.outcome.checks + 1
        now = time.monotonic()
        try:
            self._platform.supervisor.finish_job(check)
            result = parse_outcome(check.stdout_path.read_text() if check.stdout_path else "")
        except (ProcessFailedError, ValueError, OSError) as error:
            self.problems.append(f"drift check failed: {error}".splitlines()[0])
            self._platform.timeline.note(f"[red]drift check failed[/] (log: {check.log_path})")
            self._next_check_at = now + self._config.interval_s
            return
        self._judge(result, now)

    def _judge(self, result: dict, now: float) -> None:
        timeline = self._platform.timeline
        if result.get("status") != "checked":
            timeline.note(f"drift check skipped: {result.get('detail', '')}")
            self._next_check_at = now + self._config.interval_s
            return
        share, decision = result.get("drift_share") or 0.0, result.get("decision") or {}
        self.report_location = result.get("report_location") or self.report_location
        drifted = ", ".join(result.get("drifted_features") or []) or "none"
        timeline.note(f"drift share {share:.2f} ({drifted}): {decision.get('decision')}")
        launch = result.get("launch")
        if not launch:
            self._next_check_at = now + self._config.interval_s
            return
        self.outcome.detected_at_s = now - self._t0
        self.outcome.report = self.report_location
        self._retrain_pid, self._retrain_started = int(launch["run_id"]), now
        self._champion_before = self._platform.champion_versions()
        timeline.note(f"[red]drift detected[/]: retraining started (pid {self._retrain_pid})")

    def _retraining_ended(self, now: float) -> None:
        self._retrain_pid = None
        self.outcome.retrained = True
        self.outcome.retraining_s = now - (self._retrain_started or now)
        champion = self._platform.champion_versions()
        self.outcome.promoted = champion != self._champion_before
        self._platform.timeline.note(
            f"retraining finished in {self.outcome.retraining_s:.0f} s; champion "
            f"{self._champion_before} -> {champion}")

    def _follow_switch(self, served: str | None, now: float) -> None:
        if served is None:
            return
        if self.outcome.initial_versions is None:
            self.outcome.initial_versions = served
        self.outcome.final_versions = served
        if served != self.outcome.initial_versions and self.outcome.switched_at_s is None:
            self.outcome.switched_at_s = now - self._t0
            self._platform.timeline.note(f"[green]predictor switched to {served}[/] (live)")


def parse_outcome(stdout: str) -> dict:
    """The JSON outcome `fraudops drift check --json` printed, amid other lines.

    MLflow prints run links to stdout, and the retraining it launches inherits that stdout
    and writes after it; the outcome is the first top-level ``{`` ... ``}`` block.
    """
    lines = stdout.splitlines()
    try:
        start = lines.index("{")
        end = lines.index("}", start)
    except ValueError:
        raise ValueError(f"no JSON outcome in the drift check's output: {stdout[:300]!r}") \
            from None
    return json.loads("\n".join(lines[start:end + 1]))


def _alive(pid: int) -> bool:
    """True while `pid` runs (it is not our child: the drift job started it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"
