"""Dashboard and alert rules: validated with promtool, and every query uses exported metrics.

Metric names are collected from the units' metrics modules (instantiated on fresh registries),
so a renamed metric breaks this test instead of silently emptying a panel or an alert.
promtool comes from Debian's prometheus package (tools/install_prometheus.sh); its tests skip
with a message where it is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "fraudops.rules.yaml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yaml"))
DASHBOARD = ROOT / "monitoring" / "grafana" / "fraudops-dashboard.json"
SELECTOR = re.compile(r"\b(fraud_[a-z0-9_]+)\b(\{[^}]*\})?")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
#: Labels Prometheus adds at scrape time (and `le` of histogram buckets).
TARGET_LABELS = {"job", "instance", "le"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count"),
             "summary": ("_sum", "_count"), "info": ("_info",), "gauge": ("",)}


def exported_metrics() -> dict[str, set[str]]:
    """Every sample name the units export -> its label names."""
    from consumers.metrics import ConsumerMetrics, StageMetrics
    from monitoring.metrics import DriftMetrics
    from serving.metrics import GatewayMetrics, PredictorMetrics

    registries = [ConsumerMetrics(CollectorRegistry()).registry,
                  StageMetrics(CollectorRegistry()).registry,
                  DriftMetrics(CollectorRegistry()).registry,
                  GatewayMetrics(CollectorRegistry()).registry]
    predictor = CollectorRegistry()
    PredictorMetrics(predictor)
    names: dict[str, set[str]] = {}
    for registry in [*registries, predictor]:
        for collector in list(registry._collector_to_names):
            for family in collector.describe():
                labels = set(getattr(collector, "_labelnames", ()))
                for suffix in _SUFFIXES.get(family.type, ("",)):
                    names[family.name + suffix] = labels
    return names


def queries_of_dashboard() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def queries_of_rules() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"])
            for group in groups for rule in group["rules"]]


def unknown_references(expr: str, exported: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, matchers in SELECTOR.findall(expr):
        if name not in exported:
            problems.append(f"metric {name} is not exported by any unit")
            continue
        for label in MATCHER_LABEL.findall(matchers or ""):
            if label not in exported[name] | TARGET_LABELS:
                problems.append(f"{name} has no label {label!r} ({sorted(exported[name])})")
    return problems


def test_the_collector_sees_each_units_metrics():
    exported = exported_metrics()
    for name in ("fraud_consumer_transactions_scored_total", "fraud_predictor_model_info",
                 "fraud_predictor_request_duration_seconds_bucket", "fraud_drift_share",
                 "fraud_gateway_request_duration_seconds_count"):
        assert name in exported
    assert exported["fraud_drift_feature_score"] == {"feature"}


@pytest.mark.parametrize(("source", "queries"), [("dashboard", queries_of_dashboard),
                                                 ("rules", queries_of_rules)])
def test_every_query_uses_exported_metrics_and_labels(source, queries):
    exported = exported_metrics()
    problems = [f"{title}: {problem}" for title, expr in queries()
                for problem in unknown_references(expr, exported)]
    assert not problems, "\n".join(problems)
    assert all(SELECTOR.search(expr) for _, expr in queries()), "a query names no fraud_ metric"


def test_the_reference_check_itself_catches_a_typo():
    exported = exported_metrics()
    assert unknown_references("rate(fraud_consumer_scored_total[5m])", exported)
    assert unknown_references('fraud_drift_feature_score{column="x"}', exported)
    assert not unknown_references('fraud_drift_feature_score{feature="x", job="d"}', exported)


def test_dashboard_structure():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"])
                 for dy in range(grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("throughput", "latency", "decision mix", "fraud rate", "lag",
                  "drift per feature", "model version", "stage lag", "stage throughput"):
        assert topic in titles, topic


def test_alert_rules_cover_the_operational_risks():
    alerts = {name for name, _ in queries_of_rules()}
    assert {"FraudConsumerLagHigh", "FraudPredictorLatencySLOBreach", "FraudConsumerErrorRateHigh",
            "FraudGatewayErrorRateHigh", "FraudDataDrift", "FraudNoTraffic",
            "FraudGatewayAuthFailuresHigh", "FraudStageLagGrowing"} <= alerts


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (run tools/install_prometheus.sh: Debian's "
                    "prometheus package)")
    return path


def test_promtool_checks_the_rules_and_config():
    result = subprocess.run([_promtool(), "check", "rules", str(RULES)], check=False,
                            capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = subprocess.run([_promtool(), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
                            check=False, capture_output=True, text=True, timeout=60)
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_rule_unit_tests_pass():
    assert RULE_TESTS
    result = subprocess.run([_promtool(), "test", "rules", *map(str, RULE_TESTS)],
                            check=False, capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
