"""The real gateway process (uvicorn) with the real Kafka broker, predictor and SQLite store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import RunningService, start_service, stop_process

from fraudops import protocol
from fraudops.features import build_spec
from fraudops.schema import Transaction
from fraudops.store import BatchWrite, DecisionRecord, Store
from fraudops.testing import free_port, read_records
from serving.gateway.scoring import build_sequence

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
API_KEY = "test-key-0123456789"
#: Principals of the gateway under test: the tests' key holds every role.
PRINCIPALS = f"other:ingest:other-key,tester:ingest+analyst+admin:{API_KEY}"
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


@dataclass
class Gateway:
    service: RunningService
    store_url: str
    topics: dict[str, str]
    bootstrap: str
    reports: Path

    @property
    def url(self) -> str:
        return self.service.url

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"X-API-Key": key} if key is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def _tx(tx_id: str, account: str = "acc-1", minutes: int = 0, amount: float = 42.5,
        **extra: object) -> Transaction:
    return Transaction(transaction_id=tx_id, account_id=account,
                       timestamp=T0 + timedelta(minutes=minutes), amount=amount,
                       merchant_id="m-1", merchant_category="grocery", channel="online",
                       country="DE", device_id="d-1", **extra)


def _decision(tx: Transaction, decision: str = "approve", probability: float = 0.1
              ) -> DecisionRecord:
    return DecisionRecord(tx.transaction_id, tx.account_id, tx.timestamp, tx.amount,
                          probability, 0.5, decision, tx.model_dump_json(),
                          reason_codes="amount_log", model_version="seq:1+ae:1")


def _seed_store(url: str) -> None:
    store = Store.from_url(url)
    history = [_tx(f"h-{i}", minutes=i, amount=20.0 + i) for i in range(5)]
    alerts = [_decision(_tx("al-1", "acc-2", 10, 900.0), "review", 0.5),
              _decision(_tx("al-2", "acc-2", 20, 1900.0), "block", 0.95),
              _decision(_tx("al-3", "acc-3", 30, 50.0), "review", 0.6)]
    store.write_batch(BatchWrite(decisions=[_decision(t) for t in history] + alerts))
    store.close()


def _seed_reports(directory: Path) -> None:
    for report_id, created, drift in (("20260101T000000Z", "2026-01-01T00:00:00Z", False),
                                      ("20260102T000000Z", "2026-01-02T00:00:00+00:00", True)):
        path = directory / report_id
        path.mkdir(parents=True)
        (path / "report.html").write_text(f"<html><body>{report_id}</body></html>")
        (path / "report.json").write_text(json.dumps({
            "created_at": created, "dataset_drift": drift, "drift_share": 0.5 if drift else 0.0,
            "drifted_columns": ["amount_log"] if drift else []}))


def _gateway_env(tmp: Path, bootstrap: str, predictor_url: str, topics: dict[str, str],
                 port: int, **extra: str) -> dict[str, str]:
    env = {
        "FRAUDOPS_HOME": str(tmp / "home"),
        "FRAUDOPS_GATEWAY__API_KEYS": PRINCIPALS,
        "FRAUDOPS_GATEWAY__DOCS_ENABLED": "true",  # schemathesis reads /openapi.json
        # The tests' refused keys come from one address; the limit has its own test.
        "FRAUDOPS_GATEWAY__AUTH_FAILURE_LIMIT": "1000/minute",
        "FRAUDOPS_GATEWAY__PREDICTOR_URL": predictor_url,
        "FRAUDOPS_GATEWAY__PORT": str(port),
        "FRAUDOPS_GATEWAY__REPORTS_DIR": str(tmp / "reports"),
        "FRAUDOPS_DATABASE__URL": f"sqlite:///{tmp / 'store.db'}",
        "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        **{f"FRAUDOPS_KAFKA__TOPICS__{k.upper()}": v for k, v in topics.items()},
    }
    env.update(extra)
    Store.from_url(env["FRAUDOPS_DATABASE__URL"]).close()  # `fraudops db upgrade`
    return env


@pytest.fixture(scope="module")
def gateway(kafka_broker, predictor: RunningService, tmp_path_factory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gateway")
    topics = {"transactions": kafka_broker.unique_topic("transactions"),
              "labels": kafka_broker.unique_topic("labels")}
    store_url = f"sqlite:///{tmp / 'store.db'}"
    _seed_store(store_url)
    _seed_reports(tmp / "reports")
    port = free_port()
    env = _gateway_env(tmp, kafka_broker.bootstrap, predictor.url, topics, port)
    process = start_service(["gateway"], env, f"http://127.0.0.1:{port}/healthz",
                            tmp / "gateway.log")
    service = RunningService(f"http://127.0.0.1:{port}", process, tmp / "gateway.log")
    yield Gateway(service, store_url, topics, kafka_broker.bootstrap, tmp / "reports")
    stop_process(process)


def _consume(bootstrap: str, topic: str, count: int) -> list:
    return read_records(bootstrap, topic, until=lambda records: len(records) >= count,
                        timeout=10)[:count]


V1_ROUTES = [("POST", "/v1/transactions"), ("POST", "/v1/score"), ("GET", "/v1/alerts"),
             ("GET", "/v1/alerts/al-1"), ("POST", "/v1/feedback"), ("GET", "/v1/drift/reports"),
             ("GET", "/v1/drift/reports/20260101T000000Z"), ("GET", "/v1/admin/principals")]


@pytest.mark.parametrize("key", [None, "", "wrong-key", API_KEY + "x"])
def test_every_v1_route_needs_a_valid_key(gateway: Gateway, key: str | None) -> None:
    with gateway.client(key) as client:
        for method, path in V1_ROUTES:
            response = client.request(method, path, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["detail"] == "missing or invalid API key"
        assert client.get("/healthz").status_code == 200
    assert "fraud_gateway_auth_failures_total" in httpx.get(gateway.url + "/metrics").text


def test_transaction_is_produced_keyed_by_account(gateway: Gateway) -> None:
    tx = _tx("tx-produce-1", account="acc-kafka", amount=12.34)
    with gateway.client() as client:
        response = client.post("/v1/transactions", content=tx.model_dump_json(),
                               headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["transaction_id"] == "tx-produce-1" and body["offset"] >= 0
    records = _consume(gateway.bootstrap, gateway.topics["transactions"], 1)
    assert records[0].key == b"acc-kafka"
    assert Transaction.model_validate_json(records[0].value) == tx


@pytest.mark.parametrize(("change", "field"), [
    ({"amount": -1}, "amount"), ({"account_id": None}, "account_id"),
    ({"timestamp": "2026-01-01T00:00:00"}, "timestamp"), ({"channel": "pigeon"}, "channel"),
    ({"unexpected": 1}, "unexpected"),
])
def test_invalid_transaction_gets_422_with_the_field(gateway: Gateway, change: dict,
                                                     field: str) -> None:
    payload = json.loads(_tx("tx-bad").model_dump_json())
    payload.update(change)
    payload = {k: v for k, v in payload.items() if v is not None}
    with gateway.client() as client:
        response = client.post("/v1/transactions", json=payload)
    assert response.status_code == 422
    assert any(field in error["loc"] for error in response.json()["detail"]), response.text


def test_score_uses_the_stored_history_of_the_account(gateway: Gateway,
                                                      predictor: RunningService) -> None:
    tx = _tx("tx-score-1", minutes=60, amount=2500.0)
    with gateway.client() as client:
        known = client.post("/v1/score", content=tx.model_dump_json(),
                            headers={"content-type": "application/json"})
        fresh = client.post("/v1/score", content=_tx("tx-score-2", account="acc-new",
                                                     minutes=60).model_dump_json(),
                            headers={"content-type": "application/json"})
    assert known.status_code == 200, known.text
    body = known.json()
    assert body["history_used"] == 5 and body["history_source"] == "store"
    assert fresh.json()["history_used"] == 0
    # The same sequence, built here and sent straight to the predictor, gets the same answer.
    history = [_tx(f"h-{i}", minutes=i, amount=20.0 + i) for i in range(5)]
    seq_len = protocol.ModelInfo.from_metadata(
        httpx.get(predictor.url + protocol.metadata_path()).json()).seq_len
    x, mask, _ = build_sequence(build_spec(), seq_len, history, tx)
    request, headers = protocol.encode_request(x, mask)
    answer = httpx.post(predictor.url + protocol.infer_path(), content=request, headers=headers)
    direct = protocol.decode_response(answer.content, answer.headers)
    assert body["decision"] == direct.decision[0]
    assert body["fraud_probability"] == pytest.approx(float(direct.fraud_probability[0]))
    assert body["reason_codes"] == list(direct.reason_codes[0])
    assert body["model_version"] == direct.model_version


def test_alerts_filter_and_paginate(gateway: Gateway) -> None:
    with gateway.client() as client:
        everything = client.get("/v1/alerts").json()["items"]
        assert {a["transaction_id"] for a in everything} >= {"al-1", "al-2", "al-3"}
        blocks = client.get("/v1/alerts", params={"decision": "block"}).json()["items"]
        assert [a["transaction_id"] for a in blocks] == ["al-2"]
        acc2 = client.get("/v1/alerts", params={"account_id": "acc-2"}).json()["items"]
        assert [a["transaction_id"] for a in acc2] == ["al-2", "al-1"]  # newest first
        window = client.get("/v1/alerts", params={
            "since": (T0 + timedelta(minutes=15)).isoformat(),
            "until": (T0 + timedelta(minutes=25)).isoformat()}).json()["items"]
        assert [a["transaction_id"] for a in window] == ["al-2"]
        first = client.get("/v1/alerts", params={"limit": 2}).json()
        second = client.get("/v1/alerts", params={"limit": 2,
                                                  "offset": first["next_offset"]}).json()
        ids = [a["transaction_id"] for a in first["items"] + second["items"]]
        assert len(ids) == len(set(ids)) == 3 and second["next_offset"] is None
        assert client.get("/v1/alerts", params={"decision": "approve"}).status_code == 422


def test_alert_detail_and_404(gateway: Gateway) -> None:
    with gateway.client() as client:
        detail = client.get("/v1/alerts/al-2")
        missing = client.get("/v1/alerts/no-such-tx")
    assert detail.status_code == 200
    body = detail.json()
    assert body["decision"] == "block" and body["transaction"]["amount"] == 1900.0
    assert body["model_version"] == "seq:1+ae:1"
    assert missing.status_code == 404 and "no-such-tx" in missing.json()["detail"]


def test_feedback_updates_store_and_publishes_label(gateway: Gateway) -> None:
    with gateway.client() as client:
        response = client.post("/v1/feedback", json={
            "transaction_id": "al-3", "verdict": "confirmed_fraud",
            "note": "card reported stolen"})
        assert response.status_code == 200, response.text
        assert response.json()["alert_status"] == "confirmed_fraud"
        detail = client.get("/v1/alerts/al-3").json()
        unknown = client.post("/v1/feedback", json={"transaction_id": "nope",
                                                    "verdict": "legitimate"})
        bad = client.post("/v1/feedback", json={"transaction_id": "al-1", "verdict": "maybe"})
    assert detail["status"] == "confirmed_fraud"
    assert detail["label"]["label"] == 1 and detail["label"]["analyst"] == "tester"
    assert [entry["analyst"] for entry in detail["label_history"]] == ["tester"]
    assert unknown.status_code == 404 and bad.status_code == 422
    (record,) = _consume(gateway.bootstrap, gateway.topics["labels"], 1)
    message = json.loads(record.value)
    assert record.key == b"acc-3"
    labelled_at = message.pop("labelled_at")
    assert message == {"transaction_id": "al-3", "account_id": "acc-3", "label": 1,
                       "analyst": "tester", "note": "card reported stolen", "source": "analyst",
                       "merchant_id": message["merchant_id"], "device_id": message["device_id"]}
    assert labelled_at == detail["label_history"][0]["labelled_at"]


def test_drift_reports_list_and_show(gateway: Gateway) -> None:
    with gateway.client() as client:
        listing = client.get("/v1/drift/reports").json()
        html = client.get("/v1/drift/reports/20260102T000000Z")
        summary = client.get("/v1/drift/reports/20260102T000000Z", params={"format": "json"})
        missing = client.get("/v1/drift/reports/20990101T000000Z")
        escape = client.get("/v1/drift/reports/..%2F..%2Fetc")
    assert [r["report_id"] for r in listing["items"]] == ["20260102T000000Z", "20260101T000000Z"]
    assert listing["items"][0]["dataset_drift"] is True and listing["total"] == 2
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.headers["content-security-policy"].startswith("sandbox")
    assert "20260102T000000Z" in html.text
    assert summary.json()["drifted_columns"] == ["amount_log"]
    assert missing.status_code == 404
    assert escape.status_code in (404, 422)


def test_health_readiness_and_metrics(gateway: Gateway) -> None:
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["kafka"]["ok"] and ready.json()["predictor"]["ok"]
    text = httpx.get(gateway.url + "/metrics").text
    assert ('fraud_gateway_request_duration_seconds_count{method="POST",'
            'route="/v1/transactions",status="2xx"}') in text
    assert "fraud_gateway_transactions_produced_total" in text
    assert httpx.get(gateway.url + "/openapi.json").json()["info"]["title"] == "fraudops gateway"


def test_kafka_and_predictor_unreachable_give_503(tmp_path: Path) -> None:
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    env = _gateway_env(tmp_path, f"127.0.0.1:{dead}", f"http://127.0.0.1:{dead}",
                       {"transactions": "transactions"}, port,
                       FRAUDOPS_GATEWAY__PRODUCE_TIMEOUT_S="1")
    process = start_service(["gateway"], env, f"http://127.0.0.1:{port}/healthz",
                            tmp_path / "gateway.log")
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/v1/transactions",
                              content=_tx("tx-lost").model_dump_json(), timeout=30,
                              headers={"X-API-Key": API_KEY, "content-type": "application/json"})
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30)
        scored = httpx.post(f"http://127.0.0.1:{port}/v1/score",
                            content=_tx("tx-unscored").model_dump_json(), timeout=30,
                            headers={"X-API-Key": API_KEY, "content-type": "application/json"})
    finally:
        stop_process(process)
    assert response.status_code == 503, response.text
    assert "nothing was accepted" in response.json()["detail"]
    assert ready.status_code == 503 and ready.json()["kafka"]["ok"] is False
    assert scored.status_code == 503 and "predictor is unavailable" in scored.json()["detail"]
    for answer in (response, ready, scored):  # addresses go to the log only
        assert str(dead) not in answer.text and "127.0.0.1" not in answer.text


def test_gateway_refuses_to_start_without_api_keys(tmp_path: Path) -> None:
    env = {"FRAUDOPS_HOME": str(tmp_path), "FRAUDOPS_GATEWAY__API_KEYS": " , "}
    with pytest.raises(RuntimeError, match="no API key configured"):
        start_service(["gateway", "--port", str(free_port())], env,
                      "http://127.0.0.1:1/healthz", tmp_path / "gw.log", timeout=60)


def test_score_with_nan_free_features_only(gateway: Gateway) -> None:
    """Extreme but valid amounts still produce finite features and a decision."""
    with gateway.client() as client:
        response = client.post("/v1/score", content=_tx("tx-huge", amount=9_999_999.0,
                                                        minutes=61).model_dump_json(),
                               headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert np.isfinite(response.json()["fraud_probability"])



def test_openapi_fuzzing_finds_no_server_errors(gateway: Gateway, tmp_path: Path) -> None:
    """Schemathesis (CLI) against the live gateway with real Kafka, predictor and store; its
    bodies extended with NaN, infinities, huge integers and lone surrogates
    (`schemathesis_hooks`). Before: those gave HTTP 500."""
    report, poisoned = tmp_path / "schemathesis.json", tmp_path / "poisoned.txt"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "POISON_LOG": str(poisoned)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", f"{gateway.url}/openapi.json",
         "--header", f"X-API-Key: {API_KEY}", "--checks", "not_a_server_error",
         "--max-examples", "25", "--seed", "1", "--request-timeout", "30",
         "--report", "ndjson", "--report-ndjson-path", str(report), "--no-color"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 100, result.stdout[-3000:]
    sent = poisoned.read_bytes()
    assert all(marker in sent for marker in (b"NaN", b"Infinity", b"\\ud8")), sent[:2000]


def test_broker_lost_after_start_gives_503_not_a_silent_drop(tmp_path: Path,
                                                              broker_factory) -> None:
    """The async produce path: once warm, a dead broker must still surface as 503."""
    broker = broker_factory()
    port = free_port()
    gateway = None
    try:
        broker.create_topic("tx")
        env = _gateway_env(tmp_path, broker.bootstrap, "http://127.0.0.1:1",
                           {"transactions": "tx"}, port, FRAUDOPS_GATEWAY__PRODUCE_TIMEOUT_S="2")
        gateway = start_service(["gateway"], env, f"http://127.0.0.1:{port}/healthz",
                                tmp_path / "gateway.log")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"X-API-Key": API_KEY}) as client:
            statuses = [client.post("/v1/transactions", content=_tx(f"w-{i}").model_dump_json(),
                                    headers={"content-type": "application/json"}).status_code
                        for i in range(3)]
            broker.stop()
            lost = client.post("/v1/transactions", content=_tx("lost").model_dump_json(),
                               headers={"content-type": "application/json"})
    finally:
        if gateway is not None:
            stop_process(gateway)
        broker.stop()
    assert statuses == [202, 202, 202]
    assert lost.status_code == 503, lost.text
    assert "nothing was accepted" in lost.json()["detail"]
