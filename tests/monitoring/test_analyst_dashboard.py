"""The dashboard's "Analyst operations" row: every query is one that promtool evaluates on
Prometheus' own engine against known series (monitoring/prometheus/tests/analyst_ops.test.yaml,
run by test_observability's promtool test), so a query edited here without its expected figures
fails. The metrics come from `GatewayMetrics` (alerts worked, time to verdict)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from serving.metrics import GatewayMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "fraudops-dashboard.json"
TESTS = ROOT / "monitoring" / "prometheus" / "tests" / "analyst_ops.test.yaml"
ROW = "Analyst operations"


def _row_queries() -> list[str]:
    """The queries of the panels below the row, up to the next row ($__range read as 1h)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == ROW)
    queries = []
    for panel in panels[start + 1:]:
        if panel["type"] == "row":
            break
        queries += [t["expr"].replace("$__range", "1h") for t in panel["targets"]]
    return queries


def test_every_analyst_query_has_expected_figures():
    tested = {case["expr"] for group in yaml.safe_load(TESTS.read_text())["tests"]
              for case in group.get("promql_expr_test", [])}
    queries = _row_queries()
    assert len(queries) == 5
    assert set(queries) <= tested, sorted(set(queries) - tested)


def test_only_a_first_verdict_is_an_alert_worked():
    metrics = GatewayMetrics(CollectorRegistry())
    raised = datetime(2026, 1, 1, tzinfo=UTC)
    metrics.observe_verdict("new", "confirmed_fraud", raised, raised + timedelta(seconds=90))
    metrics.observe_verdict("unchanged", "confirmed_fraud", raised, raised + timedelta(hours=1))
    metrics.observe_verdict("changed", "legitimate", raised, raised + timedelta(hours=2))
    value = metrics.registry.get_sample_value
    assert value("fraud_analyst_alerts_worked_total", {"verdict": "confirmed_fraud"}) == 1
    assert value("fraud_analyst_alerts_worked_total", {"verdict": "legitimate"}) == 0
    assert value("fraud_analyst_time_to_verdict_seconds_sum") == 90
    assert value("fraud_analyst_time_to_verdict_seconds_bucket", {"le": "60.0"}) == 0
    assert value("fraud_analyst_time_to_verdict_seconds_bucket", {"le": "300.0"}) == 1
