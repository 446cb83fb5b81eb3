"""The live view renders every stage of a run (before, during and after the stream)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from local.display import LiveStatus, render
from local.probe import StoreSnapshot
from local.stream import StreamProgress
from local.summary import DriftOutcome
from local.supervisor import ManagedProcess, ProcessSpec, ProcessState
from local.timeline import Timeline


def _text(status: LiveStatus) -> str:
    console = Console(width=160, record=True)
    console.print(render(status))
    return console.export_text()


def test_live_view_shows_steps_processes_stream_and_drift(tmp_path: Path) -> None:
    timeline = Timeline.of("platform", "training", "streaming")
    timeline.start("platform")
    timeline.done("platform", "broker + MLflow")
    timeline.start("training")
    timeline.note("MLflow ready at http://127.0.0.1:5000")
    status = LiveStatus("fraudops demo", tmp_path, timeline)
    assert "broker + MLflow" in _text(status)

    popen = subprocess.Popen([sys.executable, "-c", "pass"])
    popen.wait()
    spec = ProcessSpec("predictor", ("x",), url="http://127.0.0.1:8080/v2/models/fraud-scorer")
    status.processes.append(ManagedProcess(spec, popen, tmp_path / "p.log", time.monotonic(),
                                           state=ProcessState.READY))
    status.stream = StreamProgress(total=1000, sent=400, started_at=time.monotonic() - 2,
                                   drift_sent_at=time.monotonic())
    status.stream_started_at = status.stream.started_at
    status.store = StoreSnapshot(380, {"approve": 360, "review": 15, "block": 5}, {"1/1": 380})
    status.served = "1/1"
    status.drift = DriftOutcome(checks=1, detected_at_s=12.0, retrained=True, switched_at_s=40.0)
    text = _text(status)
    for expected in ("predictor", "ready", "400 / 1,000", "backlog 20", "review 15",
                     "detected at 12 s", "new model live at 40 s", "MLflow ready"):
        assert expected in text, expected
