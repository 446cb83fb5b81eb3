"""The whole loop on this machine, through the real command line: `fraudops demo` (short).

Everything is real: the tansu broker, the MLflow server, the training pipeline (kfp.local), the
KServe predictor, the consumer, the gateway and the drift job, each a child process of the demo.
The test reads what the demo left behind (summary.json, the decision store, the logs) and checks
that no process of the run survives it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

# `alone`: `make test` runs these after the parallel part, on an otherwise idle machine (the
# demo's drift-to-retraining timing is what they check).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.alone]

SERVICES = ("kafka", "mlflow", "predictor", "consumer", "gateway")


def fraudops_cli() -> list[str]:
    script = Path(sys.executable).with_name("fraudops")
    return [str(script)] if script.exists() else [
        sys.executable, "-c", "from fraudops.cli import main; main()"]


def processes_of(home: Path) -> list[str]:
    """Live processes started for the state dir `home` (every child gets FRAUDOPS_HOME)."""
    marker = str(home.resolve())
    found = []
    for process in psutil.process_iter():
        try:
            if (process.environ().get("FRAUDOPS_HOME") == marker
                    and process.status() != psutil.STATUS_ZOMBIE):
                found.append(f"{process.pid}: {' '.join(process.cmdline())[:120]!r}")
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.timeout(1500)
def test_short_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    # The default scenario (bust_out_wave), at a third of the default scale.
    command = [*fraudops_cli(), "demo", "--duration", "60", "--rate", "200", "--rows", "20000",
               "--plain", "--home", str(home)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False,
                            env={**os.environ, "COLUMNS": "160"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = json.loads((home / "summary.json").read_text())

    for name in SERVICES:  # every process came up
        assert summary["processes"][name]["ready_s"] is not None, (name, summary["processes"])
    assert summary["sent"] >= 11_000
    assert summary["decided"] >= 0.95 * summary["sent"]
    with sqlite3.connect(home / "fraudops.db") as db:  # ... and are in the store
        stored = db.execute("SELECT count(*) FROM decisions").fetchone()[0]
    assert stored >= summary["decided"]

    drift = summary["drift"]
    assert drift["detected_at_s"] is not None and drift["retrained"], drift
    assert drift["retraining_s"] > 0
    # Retraining waited for data of the new regime (the policy's new_regime_wait) ...
    assert drift["retraining_started_at_s"] > drift["detected_at_s"], drift
    checks = [json.loads(line) for line in
              (home / "drift-reports" / "decisions.jsonl").read_text().splitlines()]
    reasons = [c.get("reason") for c in checks]
    assert "awaiting_data" in reasons, reasons
    # ... and started once (the first trigger), after the wait.
    triggers = [c for c in checks if c.get("decision") == "trigger"]
    assert len(triggers) == 1 and reasons.index("awaiting_data") < checks.index(triggers[0])
    assert drift["challenger"] is not None  # the retraining run reached the registry
    if drift["promoted"]:  # then the predictor switched while the demo ran ...
        assert drift["switched_at_s"] is not None and drift["final_versions"] != \
            drift["initial_versions"]
        # ... and the stream went on long enough for the new model to show how it does.
        new_model = [label for label in summary["by_model"] if label.endswith(":2")]
        assert new_model and summary["by_model"][new_model[0]]["transactions"] >= 1000, \
            summary["by_model"]
    assert summary["throughput_tx_s"] > 0
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
    assert sum(summary["decisions"].values()) == summary["decided"]
    for part in ("all", "before drift", "after drift"):
        assert 0.0 <= summary["quality"][part]["recall"] <= 1.0
    assert summary["links"]["MLflow UI"].startswith("http://127.0.0.1:")
    for words in ("precision", "drift detected", "MLflow UI", "throughput"):
        assert words in output

    assert processes_of(home) == []  # all child processes gone


@pytest.mark.timeout(600)
def test_interrupt_stops_every_process(tmp_path: Path) -> None:
    """Ctrl-C while the platform runs a job: every process stops, the state dir is released."""
    home = tmp_path / "demo"
    demo = subprocess.Popen(
        [*fraudops_cli(), "demo", "--duration", "60", "--rows", "20000", "--plain",
         "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_line(demo, "training: started", timeout=300)
        time.sleep(3)  # the pipeline is running now
        assert len(processes_of(home)) >= 3  # broker, MLflow, training job (+ its children)
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert code == 130
    assert processes_of(home) == []
    assert not (home / "run.json").exists()
    assert (home / "logs" / "training.log").exists()


def _wait_for_line(process: subprocess.Popen, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"{text!r} not seen; output:\n{''.join(seen)[-4000:]}")
