"""`/v1/score` with a rule set: a list managed through `/v1/lists` decides, the answer says
which rules fired under which version, `/metrics` counts the hits; an invalid rule set keeps
the gateway from starting, and one written later is refused while the running one stays."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gateway_fakes import ANALYST_KEY, INGEST_KEY, build, client, transaction

from serving.exceptions import ConfigurationError

RULES = """
version: gw-1
lists: {deny_accounts: account}
rules:
  - {id: deny-listed-account, owner: ops, description: Deny list., action: block,
     when: {field: account_id, in_list: deny_accounts}}
  - {id: first-seen-big, owner: ops, description: New account and a big amount., action: review,
     when: {all: [{feature: account_first_seen, eq: 1}, {field: amount, gt: 500}]}}
"""


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def score(app, tx_id: str, account: str, amount: float = 42.5) -> dict:
    with client(app, INGEST_KEY) as ingest:
        answer = ingest.post("/v1/score",
                             json=transaction(tx_id, account, amount=amount).model_dump(
                                 mode="json"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_lists_from_the_api_decide_scores(tmp_path: Path, rules_path: Path) -> None:
    app, _ = build(tmp_path, rules_path=str(rules_path), rules_refresh_s=0.05)
    first = score(app, "t1", "acc-bad")
    with client(app, ANALYST_KEY) as ana:  # the rule set created the list it declares
        assert ana.post("/v1/lists/deny_accounts/entries",
                        json={"values": ["acc-bad"]}).status_code == 201
    time.sleep(0.1)
    blocked = score(app, "t2", "acc-bad")
    big = score(app, "t3", "acc-new", amount=900.0)
    assert (first["decision"], first["rules_fired"], first["rule_set_version"]) == (
        "approve", [], "gw-1")
    assert (blocked["decision"], blocked["model_decision"], blocked["rules_fired"]) == (
        "block", "approve", ["deny-listed-account"])
    assert (big["decision"], big["rules_fired"]) == ("review", ["first-seen-big"])
    with client(app) as anyone:
        metrics = anyone.get("/metrics").text
    assert 'fraud_rule_hits_total{rule="deny-listed-account"} 1.0' in metrics
    assert 'fraud_rule_hits_total{rule="first-seen-big"} 1.0' in metrics


def test_without_a_rule_set_the_model_decides(tmp_path: Path) -> None:
    app, _ = build(tmp_path)
    answer = score(app, "t1", "acc-1")
    assert (answer["decision"], answer["rules_fired"], answer["rule_set_version"]) == (
        "approve", [], None)


def test_an_invalid_rule_set_is_refused(tmp_path: Path, rules_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.replace("action: block", "action: blok"))
    with pytest.raises(ConfigurationError, match="unknown action 'blok'"):
        build(tmp_path, rules_path=str(bad))
    app, _ = build(tmp_path, rules_path=str(rules_path), rules_refresh_s=0.05)
    assert score(app, "t1", "acc-1")["rule_set_version"] == "gw-1"
    rules_path.write_text(RULES.replace("gw-1", "gw-2").replace("owner: ops", "owner: ''"))
    time.sleep(0.1)
    assert score(app, "t2", "acc-1")["rule_set_version"] == "gw-1"  # the running one stays
    with client(app) as anyone:
        metrics = anyone.get("/metrics").text
    assert 'fraud_rule_set_reloads_total{outcome="refused"} 1.0' in metrics


def test_a_rule_set_the_served_model_cannot_run_fails_closed(tmp_path: Path) -> None:
    """A passthrough feature the served model lacks passes the start-up check but cannot
    compile: `/v1/score` answers 503 (no decision without the deny lists), then scores again
    once a rule set that compiles is written."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace("feature: account_first_seen", "feature: extra_no_such_column"))
    app, _ = build(tmp_path, rules_path=str(path), rules_refresh_s=0.05)
    with client(app, INGEST_KEY) as ingest:
        answer = ingest.post("/v1/score", json=transaction("t1", "acc-1").model_dump(
            mode="json"))
    assert answer.status_code == 503, answer.text
    assert "rule set" in answer.json()["detail"] and answer.headers["Retry-After"]
    path.write_text(RULES)
    assert score(app, "t2", "acc-1")["rule_set_version"] == "gw-1"


def test_an_alert_shows_the_rules_that_fired(tmp_path: Path) -> None:
    from fraudops.store import BatchWrite, DecisionRecord, Store

    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    tx = transaction("al-r", "acc-r", amount=900.0)
    store.write_batch(BatchWrite(decisions=[DecisionRecord(
        tx.transaction_id, tx.account_id, tx.timestamp, tx.amount, 0.1, 0.2, "block",
        tx.model_dump_json(), rules_fired="deny-listed-account", rule_set_version="gw-1")]))
    store.close()
    app, _ = build(tmp_path)
    with client(app, ANALYST_KEY) as ana:
        one = ana.get("/v1/alerts/al-r").json()
        listed = ana.get("/v1/alerts").json()["items"]
    assert (one["rules_fired"], one["rule_set_version"]) == ("deny-listed-account", "gw-1")
    assert listed[0]["rules_fired"] == "deny-listed-account"
