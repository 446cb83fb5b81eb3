"""Follows the monitoring loop: drift checks, the retraining they start, the predictor's switch.

The drift job runs as a supervised service (`fraudops drift watch`) and appends one JSON line
per check to its decisions log, each a `monitoring.decisions.DecisionEntry` (monitoring owns the
contract; this is the one import of another unit the local platform makes). A check whose policy
triggered carries the pid of the training pipeline the job started (its command launcher, in a
session of its own); the watch follows that pid until retraining ends, asks MLflow whether the
challenger was promoted, and watches the predictor until it serves the new champion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from local.layout import pid_alive
from local.platform import LocalPlatform
from local.summary import DriftOutcome
from local.supervisor import ManagedProcess
from monitoring.decisions import SKIPPED, DecisionEntry, parse_entry


@dataclass
class LogTail:
    """New entries of the decisions log since the last read (unparseable lines kept aside)."""

    path: Path
    offset: int = 0
    skipped: list[str] = field(default_factory=list)

    def read(self) -> list[DecisionEntry]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line being written stays for next time
        self.offset += len(complete)
        entries = []
        for line in complete.decode(errors="replace").splitlines():
            try:
                entries.append(parse_entry(line))
            except ValidationError:
                self.skipped.append(line[:200])
        return entries


class DriftWatch:
    """Turns the decisions log, the retraining process and the predictor into a `DriftOutcome`."""

    def __init__(self, platform: LocalPlatform, log_path: Path, stream_started_at: float,
                 outcome: DriftOutcome, monitor: ManagedProcess | None = None) -> None:
        self._platform = platform
        #: The drift job's process: paused while retraining runs (two cores are not enough for
        #: both; its checks would only hit the cooldown), resumed afterwards.
        self._monitor = monitor
        self._log = LogTail(log_path)
        self._t0 = stream_started_at
        self.outcome = outcome
        self._retrain_pid: int | None = None
        self._retrain_started: float | None = None
        self._champion_before: str | None = None
        self._challenger_before: str | None = None
        self._checks_after_stream = 0
        self.stream_done = False
        self.problems: list[str] = []

    @property
    def retraining(self) -> bool:
        return self._retrain_pid is not None

    @property
    def awaiting_new_model(self) -> bool:
        """Drift was found and a new model may still go live (retraining or promotion pending)."""
        outcome = self.outcome
        if outcome.detected_at_s is None or outcome.switched_at_s is not None:
            return False
        return not outcome.retrained or bool(outcome.promoted)

    @property
    def finished(self) -> bool:
        """Nothing more to wait for: the switch happened, the gate kept the champion, or the
        stream is over and two more checks found no drift."""
        outcome = self.outcome
        if self.retraining:
            return False
        if outcome.switched_at_s is not None or (outcome.retrained and not outcome.promoted):
            return True
        return outcome.detected_at_s is None and self._checks_after_stream >= 2

    def poll(self, served_versions: str | None) -> None:
        """Read new checks, follow a running retraining, notice the predictor's switch."""
        now = time.monotonic()
        for entry in self._log.read():
            self._judge(entry, now)
        if self._retrain_pid is not None and not pid_alive(self._retrain_pid):
            self._retraining_ended(now)
        self._follow_switch(served_versions, now)

    def _judge(self, entry: DecisionEntry, now: float) -> None:
        timeline = self._platform.timeline
        if entry.decision == SKIPPED:
            return  # nothing scored in the window yet
        self.outcome.checks += 1
        if self.stream_done:
            self._checks_after_stream += 1
        if self.outcome.detected_at_s is None:  # keep the report that found the drift
            self.outcome.report = entry.report_location or self.outcome.report
        drifted = ", ".join(entry.drifted_features) or "none"
        timeline.note(f"drift check: share {entry.drift_share or 0:.2f} ({drifted}) -> "
                      f"{entry.decision} ({entry.reason})")
        launch = entry.launch
        if entry.launch_error:
            self.problems.append(f"retraining not started: {entry.launch_error}")
        if self.outcome.detected_at_s is None and (
                launch or entry.drifted or entry.quality_degraded):
            self.outcome.detected_at_s = now - self._t0
            timeline.note("[red]drift detected[/]" + ("" if launch else
                          ": retraining waits for data of the new regime"))
        if launch is None or self.outcome.retraining_started_at_s is not None:
            return
        if launch.pid is None:  # a Kubeflow run or an in-process call: no process to follow
            self.problems.append(f"retraining started by the {launch.launcher} launcher, which "
                                 "leaves no process to follow")
            return
        self.outcome.retraining_started_at_s = now - self._t0
        self._retrain_pid, self._retrain_started = launch.pid, now
        self._champion_before = self._platform.champion_versions()
        self._challenger_before = self._platform.alias_versions("challenger")
        timeline.note(f"retraining started (pid {self._retrain_pid})")
        if self._monitor is not None:
            self._platform.supervisor.pause(self._monitor)

    def _retraining_ended(self, now: float) -> None:
        self._retrain_pid = None
        if self._monitor is not None:
            self._platform.supervisor.resume(self._monitor)
        self.outcome.retrained = True
        self.outcome.retraining_s = now - (self._retrain_started or now)
        champion = self._platform.champion_versions()
        challenger = self._platform.alias_versions("challenger")
        # A run that reached the registry leaves a new challenger; a failed one leaves none.
        registered = challenger not in (self._challenger_before, "?/?")
        self.outcome.challenger = challenger if registered else None
        self.outcome.promoted = champion != self._champion_before
        self._platform.timeline.note(
            f"retraining finished in {self.outcome.retraining_s:.0f} s: "
            + (f"challenger {challenger}, champion {self._champion_before} -> {champion}"
               if registered else "[red]no model registered[/] (see the drift job's log)"))

    def _follow_switch(self, served: str | None, now: float) -> None:
        if served is None:
            return
        if self.outcome.initial_versions is None:
            self.outcome.initial_versions = served
        self.outcome.final_versions = served
        if served != self.outcome.initial_versions and self.outcome.switched_at_s is None:
            self.outcome.switched_at_s = now - self._t0
            self._platform.timeline.note(f"[green]predictor switched to {served}[/] (live)")

