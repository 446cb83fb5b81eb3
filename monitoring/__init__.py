"""Monitoring unit: the drift job, the retraining policy and trigger, metrics, dashboards, rules.

    fraudops drift check        # one window: reports, metrics, policy decision, maybe retraining
    fraudops drift watch        # the same every --interval seconds, serving /metrics
    fraudops drift decisions    # the decisions log (trigger or not, and why)

Dashboards and alert rules live next to the code: grafana/fraudops-dashboard.json,
prometheus/rules/fraudops.rules.yaml (unit tests in prometheus/tests/), prometheus/prometheus.yml.
"""
