"""Files the chart embeds: monitoring copies in sync with their sources, and the topic-creation
script run for real against the session's Kafka broker (Apache Kafka by default)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest
import yaml
from chart_tools import CHART_DIR, REPO_ROOT, find_tool, run
from crd_validation import load_documents

sys.path.insert(0, str(REPO_ROOT / "tools"))
import sync_chart_files

SCRIPT = CHART_DIR / "files" / "create_topics.py"


@pytest.mark.parametrize("source", sorted(sync_chart_files.SYNCED))
def test_chart_copy_equals_monitoring_source(source):
    if not (REPO_ROOT / source).exists():
        pytest.skip(f"{source} does not exist yet: the chart uses its own copy")
    copy = sync_chart_files.SYNCED[source]
    assert copy.read_bytes() == (REPO_ROOT / source).read_bytes(), \
        "stale chart copy: run `python tools/sync_chart_files.py`"


def test_sync_check_reports_a_stale_copy(tmp_path, monkeypatch):
    source = tmp_path / "src.json"
    source.write_text('{"a": 1}')
    copy = tmp_path / "copy.json"
    copy.write_text('{"a": 2}')
    monkeypatch.setattr(sync_chart_files, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(sync_chart_files, "SYNCED", {"src.json": copy})
    assert sync_chart_files.stale() == ["src.json"]
    assert sync_chart_files.main(["--check"]) == 1
    assert sync_chart_files.main([]) == 0
    assert copy.read_text() == '{"a": 1}' and sync_chart_files.stale() == []


def test_dashboard_is_a_grafana_dashboard():
    dashboard = json.loads((CHART_DIR / "files" / "fraudops-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["uid"]
    assert dashboard["panels"] and all("targets" in p or p.get("type") == "row"
                                       for p in dashboard["panels"])


def test_rules_pass_promtool(tmp_path):
    promtool = find_tool("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    result = run([promtool, "check", "rules", str(CHART_DIR / "files" / "fraudops.rules.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


def topics_env(render, prefix: str, replicas: int | None = 1) -> dict[str, str]:
    """The topic Job's environment from the rendered chart, topic names made unique and, unless
    `replicas` is None, the replication factor set for the tests' single-node broker (the chart's
    3 cannot be placed on one broker: Apache Kafka refuses it, tansu ignored it)."""
    job = next(d for d in load_documents(render("default"))
               if d["kind"] == "Job" and "kafka-topics" in d["metadata"]["name"])
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    spec = json.loads(env["FRAUDOPS_TOPICS_SPEC"])
    for topic in spec:
        topic["name"] = f"{prefix}-{topic['name']}"
        if replicas is not None:
            topic["replicas"] = replicas
    env["FRAUDOPS_TOPICS_SPEC"] = json.dumps(spec)
    return env


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDOPS_")}
    return subprocess.run([sys.executable, str(SCRIPT)], check=False, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.integration
def test_topic_job_script_creates_missing_topics_once(render, kafka_broker):
    from confluent_kafka.admin import AdminClient

    prefix = f"chart-{uuid.uuid4().hex[:8]}"
    env = {**topics_env(render, prefix),
           "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap}
    wanted = {t["name"]: t for t in json.loads(env["FRAUDOPS_TOPICS_SPEC"])}
    first = run_script(env)
    assert first.returncode == 0, first.stderr
    assert sorted(json.loads(first.stdout.splitlines()[-1])["created"]) == sorted(wanted)
    second = run_script(env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.splitlines()[-1])["created"] == []
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    topics = admin.list_topics(timeout=30).topics
    described = {name: len(topics[name].partitions) for name in wanted if name in topics}
    assert described == {name: t["partitions"] for name, t in wanted.items()}


@pytest.mark.integration
def test_topic_job_script_gives_up_clearly_when_the_cluster_is_too_small(render, kafka_broker):
    # The chart's replication factor (3) on the tests' one broker: retried while brokers may still
    # be joining, then a clear failure naming the cause, and no topic half-created.
    env = {**topics_env(render, f"small-{uuid.uuid4().hex[:8]}", replicas=None),
           "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
           "FRAUDOPS_TOPICS_TIMEOUT_SECONDS": "3"}
    result = run_script(env)
    assert result.returncode == 1
    assert "INVALID_REPLICATION_FACTOR" in result.stderr


@pytest.mark.integration
def test_topic_job_script_fails_clearly_without_a_broker(render):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**topics_env(render, "unreachable"),
           "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
           "FRAUDOPS_TOPICS_TIMEOUT_SECONDS": "2"}
    result = run_script(env)
    assert result.returncode == 1
    assert f"could not create topics on 127.0.0.1:{port}" in result.stderr


def test_rules_file_is_a_prometheus_rule_file():
    rules = yaml.safe_load((CHART_DIR / "files" / "fraudops.rules.yaml").read_text())
    assert rules["groups"] and all(g["name"] and g["rules"] for g in rules["groups"])
