"""The decisions log's contract: what the drift job writes is what its readers parse."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from monitoring.decisions import LOG_NAME, DecisionEntry, DecisionLog, parse_entry
from monitoring.policy import PastDecision
from monitoring.trigger import Launch

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _trigger(pid: int) -> DecisionEntry:
    return DecisionEntry(decided_at=T0, decision="trigger", reason="drift", detail="share 0.6",
                         report_id="r1", window_end="2026-03-01T00:00:00+00:00",
                         drift_share=0.6, drifted_features=["amount_log"], drifted=True,
                         consecutive=2, triggered=True,
                         launch=Launch("command", detail="fraudops pipeline run", pid=pid))


def test_entries_round_trip_and_feed_the_policy(tmp_path: Path) -> None:
    log = DecisionLog(str(tmp_path))
    skipped = DecisionEntry(decided_at=T0 - timedelta(hours=1), decision="skipped",
                            reason="too_few_rows", detail="12 scored rows")
    log.append(skipped)
    log.append(_trigger(4242))
    assert log.entries() == [skipped, _trigger(4242)]
    assert log.entries()[1].launch.pid == 4242  # the process the watch follows, typed
    assert log.history() == [PastDecision(T0, "2026-03-01T00:00:00+00:00", drifted=True,
                                          triggered=True, degraded=False)]


def test_a_line_of_the_previous_release_still_parses(tmp_path: Path) -> None:
    """Lines written before the model (dicts, no pid, the pid in run_id) keep the history."""
    line = {"decided_at": T0.isoformat(), "report_id": "r0", "window_end": "2026-02-28",
            "drift_share": 0.1, "drifted_features": [], "decision": "hold",
            "reason": "no_drift", "detail": "", "drifted": False, "quality_degraded": False,
            "consecutive": 0, "triggered": False, "launch": None, "launch_error": None,
            "note": "", "report_location": "/reports/r0"}
    (tmp_path / LOG_NAME).write_text(json.dumps(line) + "\n")
    [entry] = DecisionLog(str(tmp_path)).entries()
    assert entry.report_location == "/reports/r0" and entry.launch is None
    old_launch = parse_entry(json.dumps({**line, "decision": "trigger", "triggered": True,
                                         "launch": {"launcher": "command", "run_id": "77"}}))
    assert old_launch.launch == Launch("command", run_id="77")


@pytest.mark.parametrize("line", [
    "not json",
    json.dumps({"decision": "hold", "reason": "no_drift"}),  # no decided_at
    json.dumps({"decided_at": T0.isoformat(), "decision": "maybe", "reason": "x"}),
    json.dumps({"decided_at": T0.isoformat(), "decision": "trigger", "reason": "drift",
                "launch": {"launcher": "command", "pid": "not a pid"}}),
])
def test_a_bad_line_is_refused_by_the_parser_and_skipped_by_the_log(
        tmp_path: Path, line: str, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValidationError):
        parse_entry(line)
    log = DecisionLog(str(tmp_path))
    log.append(_trigger(1))
    with (tmp_path / LOG_NAME).open("a") as handle:
        handle.write(line + "\n")
    log.append(_trigger(2))
    with caplog.at_level(logging.WARNING, logger="monitoring.decisions"):
        assert [e.launch.pid for e in log.entries()] == [1, 2]  # nothing else lost
    assert "line 2 skipped" in caplog.text


entries = st.builds(
    DecisionEntry,
    decided_at=st.datetimes(timezones=st.just(UTC)),
    decision=st.sampled_from(["trigger", "hold", "skipped"]),
    reason=st.text(max_size=20), detail=st.text(max_size=60),
    window_end=st.none() | st.text(max_size=30),
    drift_share=st.none() | st.floats(0, 1),
    drifted_features=st.lists(st.text(max_size=12), max_size=4),
    score_drift=st.dictionaries(st.text(max_size=12), st.booleans(), max_size=3),
    drifted=st.booleans(), triggered=st.booleans(),
    launch=st.none() | st.builds(Launch, launcher=st.sampled_from(["command", "kfp", "none"]),
                                 run_id=st.none() | st.text(max_size=20),
                                 detail=st.text(max_size=40),
                                 pid=st.none() | st.integers(1, 2**22)),
    launch_error=st.none() | st.text(max_size=40))


@settings(max_examples=50, deadline=None)
@given(entries)
def test_any_entry_survives_its_log_line(entry: DecisionEntry) -> None:
    """Whatever the job writes (text with newlines or quotes included) reads back equal."""
    assert parse_entry(entry.model_dump_json()) == entry
    assert "\n" not in entry.model_dump_json()  # one line per entry, always
