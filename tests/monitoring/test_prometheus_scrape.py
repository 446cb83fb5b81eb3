"""A real Prometheus (Debian's binary) scrapes the real predictor and consumer.

Starts `fraudops serve predictor` (small untrained models from disk), `fraudops consume` (the session
broker, SQLite store) and Prometheus with a temporary configuration that scrapes both every
second and loads the platform's rule file; then checks through Prometheus' HTTP API that both
targets are up, the units' metrics arrived, the rules loaded, and every dashboard query is valid
PromQL that Prometheus evaluates without error. Skips where the prometheus binary is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from fraudops.store import Store
from fraudops.testing import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FRAUDOPS = Path(sys.executable).parent / "fraudops"
RULES = ROOT / "monitoring" / "prometheus" / "rules" / "fraudops.rules.yaml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "fraudops-dashboard.json"
TOPIC_FIELDS = ("transactions", "decisions", "alerts", "labels", "dead_letter")


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as handle:
        return subprocess.Popen(argv, env={**os.environ, **env}, stdout=handle,
                                stderr=subprocess.STDOUT, cwd=ROOT)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_until(check, timeout: float, what: str, process=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited\n{log.read_text()[-3000:]}")
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            pass
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise TimeoutError(f"{what} not reached in {timeout}s\n{tail}")


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("prometheus not installed (run tools/install_prometheus.sh: Debian's "
                    "prometheus package)")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory, request):
    from fraudops.data import tabular
    from fraudops.data.generate import GeneratorConfig, generate

    save_champion = request.getfixturevalue("champion_saver")
    data = tabular.sort_by_time(generate(GeneratorConfig(rows=2_000, days=7, seed=2)))
    return save_champion(data, tmp_path_factory.mktemp("scrape-models")), data


def _produce(bootstrap: str, topic: str, data) -> None:
    from fraudops.data import tabular
    from fraudops.kafka import make_producer
    from fraudops.settings import KafkaSettings

    producer = make_producer(KafkaSettings(bootstrap_servers=bootstrap), **{"linger.ms": 5})
    for record in tabular.to_records(data.head(300)):
        producer.produce(topic, json.dumps(record).encode(), record["account_id"].encode())
    assert producer.flush(30) == 0, "records not acknowledged within 30 s"


def _query(url: str, expr: str) -> dict:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]


def _prometheus_config(directory: Path, targets: dict[str, str]) -> Path:
    shutil.copy(RULES, directory / "fraudops.rules.yaml")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": ["fraudops.rules.yaml"],
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                 for job, target in targets.items()]}
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    # Grafana's variables, as Grafana would substitute them.
    return [e.replace("$__rate_interval", "1m").replace("$__range", "5m") for e in exprs]


def test_prometheus_scrapes_predictor_and_consumer(tmp_path, models, kafka_broker,
                                                   prometheus_binary, group_id_factory):
    (seq_dir, ae_dir), data = models
    ports = {name: free_port() for name in ("predictor", "consumer", "prometheus")}
    topics = {f: kafka_broker.unique_topic(f"mon-{f.replace('_', '-')}") for f in TOPIC_FIELDS}
    processes = []
    try:
        predictor_log = tmp_path / "predictor.log"
        predictor = _start([str(FRAUDOPS), "serve", "predictor"], {
            "FRAUDOPS_HOME": str(tmp_path / "home"),
            "FRAUDOPS_PREDICTOR__HTTP_PORT": str(ports["predictor"]),
            "FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI": str(seq_dir),
            "FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI": str(ae_dir),
            "FRAUDOPS_PREDICTOR__POLL_INTERVAL_S": "0", "FRAUDOPS_PREDICTOR__DEVICE": "cpu",
            "FRAUDOPS_PREDICTOR__TORCH_THREADS": "1"}, predictor_log)
        processes.append(predictor)
        predictor_url = f"http://127.0.0.1:{ports['predictor']}"
        _wait_until(lambda: httpx.get(f"{predictor_url}/v2/models/fraud-scorer/ready",
                                      timeout=1).status_code == 200, 90, "predictor ready",
                    predictor, predictor_log)
        consumer_log = tmp_path / "consumer.log"
        consumer_env = {
            "FRAUDOPS_HOME": str(tmp_path / "home"),
            "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "FRAUDOPS_DATABASE__URL": f"sqlite:///{tmp_path / 'store.db'}",
            "FRAUDOPS_CONSUMER__GROUP_ID": group_id_factory("mon"),
            "FRAUDOPS_CONSUMER__PREDICTOR_URL": predictor_url,
            "FRAUDOPS_CONSUMER__METRICS_PORT": str(ports["consumer"]),
            "FRAUDOPS_CONSUMER__BATCH_MAX_WAIT_MS": "20",
            **{f"FRAUDOPS_KAFKA__TOPICS__{f.upper()}": t for f, t in topics.items()}}
        Store.from_url(consumer_env["FRAUDOPS_DATABASE__URL"]).close()  # `fraudops db upgrade`
        consumer = _start([str(FRAUDOPS), "consume"], consumer_env, consumer_log)
        processes.append(consumer)
        consumer_metrics = f"http://127.0.0.1:{ports['consumer']}/metrics"
        _wait_until(lambda: httpx.get(consumer_metrics, timeout=1).status_code == 200, 60,
                    "consumer metrics", consumer, consumer_log)
        _produce(kafka_broker.bootstrap, topics["transactions"], data)

        config = _prometheus_config(tmp_path, {
            "fraudops-predictor": f"127.0.0.1:{ports['predictor']}",
            "fraudops-consumer": f"127.0.0.1:{ports['consumer']}"})
        prometheus_log = tmp_path / "prometheus.log"
        prometheus = _start([prometheus_binary, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{ports['prometheus']}"],
                            {}, prometheus_log)
        processes.append(prometheus)
        url = f"http://127.0.0.1:{ports['prometheus']}"

        def targets_up():
            active = httpx.get(f"{url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            return len(active) == 2 and all(t["health"] == "up" for t in active)

        _wait_until(targets_up, 30, "both targets up", prometheus, prometheus_log)
        scored = _wait_until(
            lambda: float(_query(url, "sum(fraud_consumer_transactions_scored_total)")
                          ["result"][0]["value"][1]) >= 300, 90,
            "300 transactions scored (seen by Prometheus)", consumer, consumer_log)
        assert scored
        info = _query(url, "fraud_predictor_model_info")["result"]
        assert info and info[0]["metric"]["job"] == "fraudops-predictor"
        assert info[0]["metric"]["feature_spec_version"]
        assert _query(url, "fraud_predictor_decisions_total")["result"]
        rules = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {g["name"] for g in rules} == {"fraudops.recording", "fraudops.alerts"}
        assert all(r["health"] != "err" for g in rules for r in g["rules"]), rules
        for expr in _dashboard_queries():
            _query(url, expr)  # every panel query is valid PromQL for a real Prometheus
    finally:
        for process in reversed(processes):
            _stop(process)
