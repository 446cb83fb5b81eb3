"""The comparison on generated windows (no services), report storage, and metric publishing.

Reports and the decisions log also go to fsspec URLs (S3 in a cluster); fsspec's in-memory
filesystem stands in for S3 here. The Pushgateway test uses the real Debian binary and skips
without it (tools/install_prometheus.sh).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta

import fsspec
import httpx
import numpy as np
import pandas as pd
import pytest

from fraudops.data import tabular
from fraudops.data.generate import GeneratorConfig, generate
from fraudops.features import build_spec
from fraudops.testing import free_port, wait_for_http
from monitoring.decisions import DecisionEntry, DecisionLog
from monitoring.drift_detection import compare
from monitoring.features import window_rows
from monitoring.job import CheckOutcome, update_metrics
from monitoring.metrics import DriftMetrics
from monitoring.policy import PolicyDecision
from monitoring.reports import save
from monitoring.settings import DriftSettings, RetrainPolicySettings
from monitoring.window import ScoredWindow

SPEC = build_spec()
POLICY = RetrainPolicySettings(min_labelled=100, min_labelled_fraud=3)


def _window(frame: pd.DataFrame, start, end, scores: np.random.Generator) -> ScoredWindow:
    loaded, in_window = window_rows(frame, start, end, timedelta(days=3))
    # Scores that carry signal: fraud rows score higher (so quality figures mean something).
    labels = loaded["label"].to_numpy(dtype=np.int8)
    probability = np.clip(scores.beta(1, 20, len(loaded)) + 0.5 * (labels == 1), 0, 1)
    return ScoredWindow(loaded, in_window, probability, scores.gamma(2, 1, len(loaded)), labels,
                        start.to_pydatetime(), end.to_pydatetime())


@pytest.fixture(scope="module")
def comparison():
    data = tabular.sort_by_time(generate(GeneratorConfig(
        rows=20_000, days=20, seed=4, drift="spending_shift", drift_start=0.5)))
    t0 = data["timestamp"].min().normalize()
    rng = np.random.default_rng(0)
    reference = _window(data, t0 + pd.Timedelta(days=5), t0 + pd.Timedelta(days=10), rng)
    current = _window(data, t0 + pd.Timedelta(days=14), t0 + pd.Timedelta(days=17), rng)
    return compare(reference, current, SPEC, DriftSettings(), POLICY,
                   {"name": "fraud-lstm-cnn", "version": "3"})


def test_spending_shift_drifts_amounts_and_quality_is_evaluated(comparison):
    result = comparison.result
    assert "amount_log" in result.drifted_features
    assert {c.column for c in result.scores} == {"fraud_probability", "anomaly_score"}
    assert result.quality["evaluated"] and result.quality["labelled"] > 1000
    assert 0 < result.quality["current"]["auprc"] <= 1
    assert comparison.quality_snapshot is not None
    assert result.current["rows"] > 2000 and result.champion["version"] == "3"


def test_few_labels_skip_quality(comparison):
    assert comparison.result.quality["labelled_fraud"] >= POLICY.min_labelled_fraud
    strict = RetrainPolicySettings(min_labelled=10**6)
    from monitoring.drift_detection import _quality  # the rule itself, without rerunning Evidently

    frame = pd.DataFrame({"label": [0, 1, -1] * 10, "fraud_probability": np.linspace(0, 1, 30)})
    quality, snapshot = _quality(frame, frame, strict)
    assert quality["evaluated"] is False and snapshot is None


def test_quality_reference_is_the_champion_holdout_when_logged():
    from monitoring.drift_detection import _quality

    rng = np.random.default_rng(1)
    labels = (rng.random(3000) < 0.05).astype(int)
    frame = pd.DataFrame({"label": labels,
                          "fraud_probability": np.clip(rng.random(3000) * 0.5 + 0.4 * labels, 0, 1)})
    window, _ = _quality(frame, frame, POLICY)
    assert window["reference_source"].startswith("reference window")
    assert window["reference"] == window["reference_window"]
    holdout = {POLICY.quality_metric: 0.123, "auprc": 0.5}
    logged, _ = _quality(frame, frame, POLICY, holdout)
    assert logged["reference_source"] == "champion holdout"
    assert logged["reference"] == holdout
    assert logged["reference_window"] == window["reference_window"]  # still reported
    # A holdout without the policy's metric (an older run) falls back to the window.
    other, _ = _quality(frame, frame, POLICY, {"auprc": 0.5})
    assert other["reference"] == window["reference_window"]


def test_reports_and_log_go_to_an_fsspec_url(comparison, tmp_path):
    url = "memory://fraudops-test/drift"
    decision = {"decision": "hold", "drifted": True}
    location = save(comparison, decision, url)
    fs = fsspec.filesystem("memory")
    root = f"/fraudops-test/drift/{comparison.result.report_id}"
    assert location.endswith(comparison.result.report_id)
    assert {p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)} == {
        "report.html", "report.json", "quality.html"}
    log = DecisionLog(url)
    log.append(DecisionEntry(decided_at="2026-03-01T00:00:00+00:00", decision="hold",
                             reason="awaiting_confirmation", window_end="w1", drifted=True))
    log.append(DecisionEntry(decided_at="2026-03-01T01:00:00+00:00", decision="trigger",
                             reason="drift", window_end="w2", drifted=True, triggered=True))
    assert [p.window_end for p in log.history()] == ["w1", "w2"]
    local = save(comparison, decision, str(tmp_path))
    assert (tmp_path / comparison.result.report_id / "report.json").is_file() and local


def _outcome(comparison) -> CheckOutcome:
    decision = PolicyDecision("hold", "awaiting_confirmation", "", True, False, 1)
    return CheckOutcome("checked", comparison.result.report_id, decision=decision, seconds=2.5)


def test_metrics_textfile_and_endpoint(comparison, tmp_path):
    metrics = DriftMetrics()
    update_metrics(metrics, comparison, _outcome(comparison), "auprc")
    path = tmp_path / "fraudops_drift.prom"
    metrics.write_textfile(str(path))
    text = path.read_text()
    assert f"fraud_drift_share {comparison.result.drift_share}" in text
    assert 'fraud_drift_feature_drifted{feature="amount_log"} 1.0' in text
    assert 'fraud_retrain_decisions_total{decision="hold",reason="awaiting_confirmation"} 1.0' \
        in text
    port = free_port()
    metrics.serve(port, addr="127.0.0.1")
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'fraud_drift_quality{metric="auprc",side="current"}' in body


@pytest.mark.integration
def test_push_to_a_real_pushgateway(comparison, tmp_path):
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.skip("prometheus-pushgateway not installed (tools/install_prometheus.sh)")
    port = free_port()
    process = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/-/ready", 15, process=process)
        metrics = DriftMetrics()
        update_metrics(metrics, comparison, _outcome(comparison), "auprc")
        metrics.push(f"127.0.0.1:{port}")
        body = httpx.get(f"{url}/metrics", timeout=5).text
        share = comparison.result.drift_share
        assert f'fraud_drift_share{{instance="",job="fraudops-drift"}} {share}' in body
    finally:
        process.terminate()
        process.wait(10)
