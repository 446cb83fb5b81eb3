"""The retraining adapter keeps pipeline inputs and drops the trigger's descriptive parameters."""

from __future__ import annotations

import subprocess
import sys

from fraudops.local.retrain import split_params


def test_trigger_metadata_is_dropped_and_inputs_kept() -> None:
    argv = ["fraudops", "pipeline", "run", "--local", "--param", "trigger_reason=drift",
            "--param", "window_end=2026-01-14T23:58:38+00:00", "--param", "drift_report_id=r1",
            "--param", "data_path=/d/x=y.parquet", "--param", "champion_version=3"]
    kept, dropped = split_params(argv)
    assert kept == ["fraudops", "pipeline", "run", "--local",
                    "--param", "window_end=2026-01-14T23:58:38+00:00",
                    "--param", "data_path=/d/x=y.parquet"]
    assert dropped == {"trigger_reason": "drift", "drift_report_id": "r1",
                       "champion_version": "3"}


def test_adapter_replaces_itself_with_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fraudops.local.retrain", sys.executable, "-c",
         "import sys; print(sys.argv[1:])", "--param", "a=1", "--param", "trigger_reason=x"],
        capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "['--param', 'a=1']"
    assert "trigger_reason" in result.stderr
