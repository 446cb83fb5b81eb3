"""Following the drift job's decisions log: checks, the triggered retraining, the switch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from local.drift_watch import DriftWatch, LogTail
from local.summary import DriftOutcome
from local.timeline import Timeline


def _append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_log_tail_returns_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    tail = LogTail(path)
    assert tail.read() == []  # no file yet
    _append(path, '{"a": 1}\nnot json\n{"b": ')
    assert tail.read() == [{"a": 1}]
    assert tail.skipped == ["not json"]
    _append(path, '2}\n')
    assert tail.read() == [{"b": 2}]
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
    path = tmp_path / "decisions.jsonl"
    platform = _Registry()
    watch = DriftWatch(platform, path, time.monotonic(), DriftOutcome())
    _append(path, json.dumps({"decision": "skipped", "reason": "too_few_rows"}) + "\n")
    _append(path, json.dumps({"decision": "hold", "reason": "no_drift", "drift_share": 0.1,
                              "drifted_features": [], "report_location": "/r/1"}) + "\n")
    watch.poll("1/1")
    assert watch.outcome.checks == 1 and watch.outcome.detected_at_s is None
    assert not watch.awaiting_new_model
    # Drift found; the policy waits for data of the new regime before retraining.
    _append(path, json.dumps({"decision": "hold", "reason": "awaiting_data", "drifted": True,
                              "drift_share": 0.6, "drifted_features": ["amount_log"],
                              "report_location": "/r/2"}) + "\n")
    watch.poll("1/1")
    assert watch.outcome.detected_at_s is not None and not watch.retraining
    assert watch.outcome.retraining_started_at_s is None
    assert watch.awaiting_new_model and not watch.finished
    retraining = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    _append(path, json.dumps({"decision": "trigger", "reason": "drift", "drift_share": 0.6,
                              "drifted_features": ["amount_log"], "report_location": "/r/3",
                              "launch": {"launcher": "command", "run_id": str(retraining.pid)}})
            + "\n")
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
    path = tmp_path / "decisions.jsonl"
    watch = DriftWatch(_Registry(), path, time.monotonic(), DriftOutcome())
    watch.stream_done = True
    for _ in range(2):
        assert not watch.finished
        _append(path, json.dumps({"decision": "hold", "reason": "no_drift"}) + "\n")
        watch.poll(None)
    assert watch.finished and watch.outcome.detected_at_s is None


def test_failed_retraining_is_told_apart_from_a_kept_champion(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    watch = DriftWatch(_Registry(), path, time.monotonic(), DriftOutcome())
    retraining = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    retraining.wait()
    _append(path, json.dumps({"decision": "trigger", "reason": "drift",
                              "launch": {"run_id": str(retraining.pid)}}) + "\n")
    watch.poll("1/1")  # the pipeline died before registering anything
    watch.poll("1/1")
    assert watch.outcome.retrained and watch.outcome.challenger is None
    assert watch.finished and not watch.outcome.promoted
