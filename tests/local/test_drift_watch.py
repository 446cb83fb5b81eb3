"""Following the drift job's decisions log: checks, the triggered retraining, the switch.

The lines are written as the drift job writes them (`DecisionLog.append` of a `DecisionEntry`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from local.drift_watch import DriftWatch, LogTail
from local.summary import DriftOutcome
from local.timeline import Timeline
from monitoring.decisions import LOG_NAME, DecisionEntry, DecisionLog
from monitoring.trigger import Launch


def _append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def _log(path: Path, decision: str, reason: str, **fields: object) -> None:
    """One line, written by the drift job's own writer."""
    DecisionLog(str(path.parent)).append(DecisionEntry(
        decided_at=datetime.now(UTC), decision=decision, reason=reason, **fields))


def test_log_tail_returns_only_new_complete_entries(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    tail = LogTail(path)
    assert tail.read() == []  # no file yet
    _log(path, "hold", "no_drift")
    _append(path, 'not json\n{"decided_at": "2026-03-01T00:00:00Z", "decision": "hold"}\n')
    line = DecisionEntry(decided_at=datetime.now(UTC), decision="skipped",
                         reason="too_few_rows").model_dump_json()
    _append(path, line[:20])  # a line being written
    assert [e.reason for e in tail.read()] == ["no_drift"]
    assert tail.skipped[0] == "not json" and '"hold"' in tail.skipped[1]  # no reason: refused
    _append(path, line[20:] + "\n")
    assert [e.reason for e in tail.read()] == ["too_few_rows"]
    assert tail.read() == []


class _Registry:
    """Stands in for the platform's MLflow alias lookups (the champion moves on promotion)."""

    def __init__(self) -> None:
        self.timeline = Timeline.of()
        self.aliases = {"champion": "1/1", "challenger": "1/1"}

    def champion_versions(self) -> str:
        return self.aliases["champion"]

    def alias_versions(self, alias: str) -> str:
        return self.aliases[alias]


def test_watch_follows_trigger_retraining_promotion_and_switch(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    platform = _Registry()
    watch = DriftWatch(platform, path, time.monotonic(), DriftOutcome())
    _log(path, "skipped", "too_few_rows")
    _log(path, "hold", "no_drift", drift_share=0.1, report_location="/r/1")
    watch.poll("1/1")
    assert watch.outcome.checks == 1 and watch.outcome.detected_at_s is None
    assert not watch.awaiting_new_model
    # Drift found; the policy waits for data of the new regime before retraining.
    _log(path, "hold", "awaiting_data", drifted=True, drift_share=0.6,
         drifted_features=["amount_log"], report_location="/r/2")
    watch.poll("1/1")
    assert watch.outcome.detected_at_s is not None and not watch.retraining
    assert watch.outcome.retraining_started_at_s is None
    assert watch.awaiting_new_model and not watch.finished
    retraining = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    _log(path, "trigger", "drift", drift_share=0.6, drifted_features=["amount_log"],
         report_location="/r/3", triggered=True,
         launch=Launch("command", detail="fraudops pipeline run --local", pid=retraining.pid))
    watch.poll("1/1")
    assert watch.outcome.retraining_started_at_s >= watch.outcome.detected_at_s
    assert watch.retraining and watch.awaiting_new_model
    assert watch.outcome.report == "/r/2" and not watch.finished
    platform.aliases = {"champion": "2/2", "challenger": "2/2"}  # registered and promoted
    retraining.wait()
    watch.poll("1/1")
    assert watch.outcome.retrained and watch.outcome.promoted and not watch.retraining
    assert watch.outcome.challenger == "2/2"
    assert not watch.finished  # the predictor has not switched yet
    watch.poll("2/2")
    assert watch.outcome.switched_at_s is not None and watch.finished
    assert (watch.outcome.initial_versions, watch.outcome.final_versions) == ("1/1", "2/2")


def test_no_drift_finishes_after_two_checks_past_the_stream(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    watch = DriftWatch(_Registry(), path, time.monotonic(), DriftOutcome())
    watch.stream_done = True
    for _ in range(2):
        assert not watch.finished
        _log(path, "hold", "no_drift")
        watch.poll(None)
    assert watch.finished and watch.outcome.detected_at_s is None


def test_failed_retraining_is_told_apart_from_a_kept_champion(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    watch = DriftWatch(_Registry(), path, time.monotonic(), DriftOutcome())
    retraining = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    retraining.wait()
    _log(path, "trigger", "drift", triggered=True,
         launch=Launch("command", pid=retraining.pid))
    watch.poll("1/1")  # the pipeline died before registering anything
    watch.poll("1/1")
    assert watch.outcome.retrained and watch.outcome.challenger is None
    assert watch.finished and not watch.outcome.promoted


def test_a_launch_without_a_process_is_reported_not_followed(tmp_path: Path) -> None:
    """A Kubeflow run (no pid): the watch says it cannot follow it instead of guessing."""
    path = tmp_path / LOG_NAME
    watch = DriftWatch(_Registry(), path, time.monotonic(), DriftOutcome())
    _log(path, "trigger", "drift", drifted=True, triggered=True,
         launch=Launch("kfp", run_id="run-42"))
    watch.poll("1/1")
    assert watch.outcome.detected_at_s is not None and not watch.retraining
    assert len(watch.problems) == 1 and "kfp launcher" in watch.problems[0]
