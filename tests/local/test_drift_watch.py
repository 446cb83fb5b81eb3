"""Reading the drift job's outcome from its (noisy) standard output."""

from __future__ import annotations

import json

import pytest

from fraudops.local.drift_watch import parse_outcome


def test_outcome_is_found_between_mlflow_lines_and_the_retraining_output() -> None:
    outcome = {"status": "checked", "drift_share": 0.5, "launch": {"run_id": "42"},
               "decision": {"decision": "trigger"}}
    stdout = ("🏃 View run drift-1 at: http://127.0.0.1:5000/#/experiments/2/runs/abc\n"
              + json.dumps(outcome, indent=1) + "\n"
              + "🏃 View run retrain at: http://...\n{'promoted': False}\n}\n")
    assert parse_outcome(stdout) == outcome


def test_missing_outcome_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no JSON outcome"):
        parse_outcome("Traceback (most recent call last):\n  boom\n")
