"""Issue 20, findings 4 and 5: identities and roles, the audit trail of labels, hardening.

The app runs in process (`gateway_fakes`): real routes, guard and SQLite store; only Kafka and
the predictor are stand-ins. Each test names what the gateway did before.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gateway_fakes import (
    ADMIN_KEY,
    ANALYST_KEY,
    INGEST_KEY,
    OTHER_ANALYST_KEY,
    PROXY_KEY,
    build,
    client,
    seed_alerts,
    transaction,
)

from consumers.messages import parse_label
from fraudops.store import BatchWrite, LabelRecord, Store

JSON = {"content-type": "application/json"}
CONFIRM = {"transaction_id": "al-1", "verdict": "confirmed_fraud"}
DISMISS = {"transaction_id": "al-1", "verdict": "legitimate"}


@pytest.fixture
def gateway(tmp_path: Path):
    seed_alerts(f"sqlite:///{tmp_path / 'store.db'}", "al-1", "al-2")
    return build(tmp_path)


def _store(tmp_path: Path) -> Store:
    return Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")


# -- identities and roles ---------------------------------------------------------------------

ROUTES = {"ingest": [("POST", "/v1/transactions"), ("POST", "/v1/score")],
          "analyst": [("GET", "/v1/alerts"), ("GET", "/v1/alerts/al-1"), ("POST", "/v1/feedback"),
                      ("GET", "/v1/drift/reports")],
          "admin": [("GET", "/v1/admin/principals")]}
BODIES = {"/v1/transactions": transaction("tx-r").model_dump(mode="json"),
          "/v1/score": transaction("tx-r").model_dump(mode="json"), "/v1/feedback": DISMISS}


@pytest.mark.parametrize(("key", "role"), [(INGEST_KEY, "ingest"), (ANALYST_KEY, "analyst"),
                                           (ADMIN_KEY, "admin")])
def test_each_route_checks_its_role(gateway, key: str, role: str) -> None:
    """Before: any key could call every route (relabel any alert, ingest, ...)."""
    app, _ = gateway
    with client(app, key) as caller:
        for route_role, routes in ROUTES.items():
            for method, path in routes:
                response = caller.request(method, path, json=BODIES.get(path))
                if route_role == role:
                    assert response.status_code < 300, (method, path, response.text)
                else:
                    assert response.status_code == 403, (method, path, response.text)
                    assert response.json() == {"detail": f"this route needs the {route_role} role"}


def test_the_analyst_is_the_caller_never_the_body(gateway, tmp_path: Path) -> None:
    """Before: the analyst was whatever the client wrote in the body."""
    app, producer = gateway
    with client(app, ANALYST_KEY) as ana:
        forged = ana.post("/v1/feedback", json={**CONFIRM, "analyst": "mallory"})
        given = ana.post("/v1/feedback", json=CONFIRM)
    assert forged.status_code == 422
    assert given.status_code == 200 and given.json()["analyst"] == "ana"
    assert [e.analyst for e in _store(tmp_path).label_history("al-1")] == ["ana"]
    assert json.loads(producer.sent[0].value)["analyst"] == "ana"


def test_a_trusted_proxy_names_the_user_and_nobody_else_can(tmp_path: Path) -> None:
    seed_alerts(f"sqlite:///{tmp_path / 'store.db'}", "al-1")
    app, _ = build(tmp_path, trusted_identity_header="X-Auth-Request-User",
                   trusted_proxy_principals="oauth2-proxy")
    user = {"X-Auth-Request-User": "carol@example.com"}
    with client(app, PROXY_KEY) as proxy, client(app, ANALYST_KEY) as ana:
        vouched = proxy.post("/v1/feedback", json=CONFIRM, headers=user)
        anonymous = proxy.post("/v1/feedback", json=CONFIRM)
        forged = ana.post("/v1/feedback", json=DISMISS, headers=user)
    assert vouched.json()["analyst"] == "carol@example.com"
    assert anonymous.status_code == 401  # the proxy always names its user
    assert forged.json()["analyst"] == "ana"  # another principal's header is ignored


def test_the_identity_header_is_ignored_unless_configured(gateway) -> None:
    app, _ = gateway
    with client(app, PROXY_KEY) as proxy:
        response = proxy.post("/v1/feedback", json=CONFIRM,
                              headers={"X-Auth-Request-User": "carol"})
    assert response.json()["analyst"] == "oauth2-proxy"


def test_admin_lists_principals_never_keys(gateway) -> None:
    app, _ = gateway
    with client(app, ADMIN_KEY) as admin:
        response = admin.get("/v1/admin/principals")
    assert {p["name"]: p["roles"] for p in response.json()} == {
        "payments": ["ingest"], "ana": ["analyst"], "bo": ["analyst"], "root": ["admin"],
        "oauth2-proxy": ["analyst"]}
    assert "key-0123456789" not in response.text


# -- the audit trail of labels ----------------------------------------------------------------

def test_a_repeated_label_is_acknowledged_but_produced_once(gateway, tmp_path: Path) -> None:
    """Before: the same label posted 100 times was produced 100 times."""
    app, producer = gateway
    with client(app, ANALYST_KEY) as ana:
        answers = [ana.post("/v1/feedback", json=CONFIRM).json() for _ in range(100)]
    assert len(producer.sent) == 1
    assert [a["published"] for a in answers] == [True] + [False] * 99
    assert [a["outcome"] for a in answers] == ["new"] + ["unchanged"] * 99
    assert len(_store(tmp_path).label_history("al-1")) == 100  # every one is audited


def test_conflicting_verdicts_are_recorded_visible_and_the_latest_counts(gateway,
                                                                        tmp_path: Path) -> None:
    """Before: conflicting labels overwrote each other, with no history."""
    app, producer = gateway
    with client(app, ANALYST_KEY) as ana, client(app, OTHER_ANALYST_KEY) as bo:
        first = ana.post("/v1/feedback", json=CONFIRM).json()
        second = bo.post("/v1/feedback", json={**DISMISS, "note": "customer confirmed"}).json()
        detail = ana.get("/v1/alerts/al-1").json()
    assert (first["outcome"], second["outcome"], second["previous_label"]) == ("new", "changed", 1)
    assert [json.loads(r.value)["label"] for r in producer.sent] == [1, 0]
    assert detail["label_conflict"] is True and detail["status"] == "dismissed"
    assert [(e["analyst"], e["label"], e["outcome"]) for e in detail["label_history"]] == [
        ("ana", 1, "new"), ("bo", 0, "changed")]
    assert (detail["label"]["label"], detail["label"]["analyst"]) == (0, "bo")
    # Retraining reads the current verdict: one row for the transaction, the latest label.
    (row,) = _store(tmp_path).labelled_transactions()
    assert (row.transaction_id, row.label) == ("al-1", 0)


def test_a_label_kafka_refused_is_produced_by_the_repeat(gateway) -> None:
    app, producer = gateway
    producer.down = True
    with client(app, ANALYST_KEY) as ana:
        refused = ana.post("/v1/feedback", json=CONFIRM)
        producer.down = False
        repeat = ana.post("/v1/feedback", json=CONFIRM)
        again = ana.post("/v1/feedback", json=CONFIRM)
    assert refused.status_code == 503
    assert (repeat.json()["outcome"], repeat.json()["published"]) == ("unchanged", True)
    assert again.json()["published"] is False and len(producer.sent) == 1


def test_the_consumer_stores_a_gateway_label_once(gateway, tmp_path: Path) -> None:
    """The label comes back through the `labels` topic: one model, one entry."""
    app, producer = gateway
    with client(app, ANALYST_KEY) as ana:
        ana.post("/v1/feedback", json=CONFIRM)
    store = _store(tmp_path)
    record = LabelRecord.from_label(parse_label(producer.sent[0].value, 10_000))
    store.write_batch(BatchWrite(labels=[record]))
    store.write_batch(BatchWrite(labels=[record]))  # redelivered
    (entry,) = store.label_history("al-1")
    assert (entry.analyst, entry.source, entry.label) == ("ana", "analyst", 1)



def test_the_labels_record_carries_its_time_and_the_stored_transactions_entities(
        gateway) -> None:
    """Issue 15: the client sends only the id; account, merchant and device come from the
    stored transaction, and the label's time travels with it."""
    app, producer = gateway
    at = "2026-01-12T09:30:00Z"
    with client(app, ANALYST_KEY) as ana:
        answer = ana.post("/v1/feedback", json={**CONFIRM, "labelled_at": at}).json()
        early = ana.post("/v1/feedback", json={**DISMISS, "labelled_at": "2020-01-01T00:00:00Z"})
    label = parse_label(producer.sent[0].value, 10_000)
    assert (label.account_id, label.merchant_id, label.device_id) == ("acc-al-1", "m-1", "d-1")
    assert label.labelled_at.isoformat() == answer["labelled_at"].replace("Z", "+00:00")
    assert label.labelled_at.isoformat() == "2026-01-12T09:30:00+00:00"
    assert (label.source, label.analyst) == ("analyst", "ana")
    assert early.status_code == 422 and len(producer.sent) == 1  # before the transaction

# -- hardening --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_docs_and_openapi_are_off_by_default(gateway, path: str) -> None:
    """Before: /docs, /redoc and /openapi.json were open to anyone."""
    app, _ = gateway
    with client(app) as anonymous:
        assert anonymous.get(path).status_code == 404


def test_docs_when_enabled_load_nothing_from_a_cdn(tmp_path: Path) -> None:
    """Before: Swagger UI loaded its script and style from a public CDN."""
    app, _ = build(tmp_path, docs_enabled=True)
    with client(app) as anonymous:
        page = anonymous.get("/docs")
        schema = anonymous.get("/openapi.json")
        script = anonymous.get("/docs/assets/swagger-ui-bundle.js")
        style = anonymous.get("/docs/assets/swagger-ui.css")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert schema.json()["info"]["title"] == "fraudops gateway"
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text[:2000]
    assert style.status_code == 200


def test_a_trailing_slash_does_not_redirect_to_the_callers_host(gateway) -> None:
    """Before: `Host: evil.example` on /v1/alerts/ came back in a 307's Location."""
    app, _ = gateway
    with client(app, ANALYST_KEY) as ana:
        response = ana.get("/v1/alerts/", headers={"Host": "evil.example"},
                           follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers


def test_unknown_hosts_are_refused_when_hosts_are_configured(tmp_path: Path) -> None:
    app, _ = build(tmp_path, allowed_hosts="gateway.example")
    with client(app, ANALYST_KEY) as ana:
        evil = ana.get("/v1/alerts", headers={"Host": "evil.example"})
        good = ana.get("/v1/alerts", headers={"Host": "gateway.example"})
    assert evil.status_code == 400 and good.status_code == 200


def test_answers_carry_nosniff_and_authenticated_ones_no_store(gateway) -> None:
    """Before: no X-Content-Type-Options, no Cache-Control: no-store."""
    app, _ = gateway
    with client(app, ANALYST_KEY) as ana, client(app) as anonymous:
        answers = {"alerts": ana.get("/v1/alerts"), "refused": anonymous.get("/v1/alerts"),
                   "health": anonymous.get("/healthz")}
    for name, response in answers.items():
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert "server" not in response.headers, name
    assert answers["alerts"].headers["cache-control"] == "no-store"
    assert answers["refused"].headers["cache-control"] == "no-store"


def test_the_drift_report_is_served_in_a_sandbox(gateway, tmp_path: Path) -> None:
    """Before: the report's scripts ran with the API's origin (no CSP)."""
    app, _ = gateway
    report = tmp_path / "reports" / "r1"
    report.mkdir(parents=True)
    (report / "report.html").write_text("<html><script>fetch('/v1/alerts')</script></html>")
    with client(app, ANALYST_KEY) as ana:
        response = ana.get("/v1/drift/reports/r1")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert policy.startswith("sandbox allow-scripts;") and "connect-src 'none'" in policy


def test_failed_keys_are_rate_limited_per_client(tmp_path: Path) -> None:
    """Before: no limit on failed keys (a brute force ran at full speed)."""
    app, _ = build(tmp_path, auth_failure_limit="5/minute")
    with client(app, "wrong-key", "10.0.0.1") as guesser, \
            client(app, ANALYST_KEY, "10.0.0.1") as same_address, \
            client(app, ANALYST_KEY, "10.0.0.2") as elsewhere:
        statuses = [guesser.get("/v1/alerts").status_code for _ in range(6)]
        blocked = same_address.get("/v1/alerts")
        other = elsewhere.get("/v1/alerts")
        metrics = elsewhere.get("/metrics").text
    assert statuses == [401] * 5 + [429]
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert other.status_code == 200
    assert "fraud_gateway_auth_failures_total 5.0" in metrics
    assert 'fraud_gateway_requests_refused_total{reason="auth_rate_limited"} 2.0' in metrics


def test_unavailable_answers_name_no_address_nor_driver_error(tmp_path: Path) -> None:
    """Before: /readyz (no key) and 503 bodies showed addresses and driver messages."""
    app, producer = build(tmp_path, database_url="postgresql+psycopg://fraud:s3cret@127.0.0.1:1/x")
    producer.down = True  # its error names 10.0.0.7:9092
    with client(app, ANALYST_KEY) as ana, client(app, INGEST_KEY) as ingest:
        answers = [ana.get("/readyz"), ana.get("/v1/alerts"),
                   ingest.post("/v1/transactions", json=BODIES["/v1/transactions"])]
    for response in answers:
        assert response.status_code == 503, response.text
        for secret in ("127.0.0.1", "10.0.0.7", "s3cret", "psycopg", "refused", "port"):
            assert secret not in response.text.lower(), (secret, response.text)
