"""Rules in the stream processor (no broker): deny lists, the decision's record and message,
republishing from the store, list changes and rule-set reloads without a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from consumer_helpers import record, rule_score, tx_doc

from consumers.messages import stored_decision_message
from consumers.metrics import ConsumerMetrics
from consumers.notifications import alert_payload
from consumers.processor import ProcessorConfig, StreamProcessor
from fraudops.rules import RuleSetError, RuleSource
from fraudops.store import Store

RULES = """
version: "{version}"
lists: {{deny_accounts: account}}
rules:
  - id: deny-listed-account
    owner: ops
    description: Deny-listed accounts are blocked.
    action: block
    when: {{field: account_id, in_list: deny_accounts}}
  - id: second-history
    owner: ops
    description: An account's second-or-later event over 15 is reviewed.
    action: review
    when:
      all:
        - {{feature: account_history_log, gt: 0.5}}
        - {{field: amount, gt: 15}}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rules_file(tmp_path: Path, version: str = "v1", text: str | None = None) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text if text is not None else RULES.format(version=version))
    return path


def processor(store: Store, new_state, source: RuleSource, metrics=None) -> StreamProcessor:
    p = StreamProcessor(ProcessorConfig(group_id="g"), store=store, score=rule_score,
                        new_state=new_state, metrics=metrics, rules=source)
    p.assign([0])
    return p


def test_a_deny_listed_account_is_blocked_and_the_decision_records_the_rule(
        tmp_path: Path, store: Store, new_state) -> None:
    store.create_list("deny_accounts", "account")
    store.add_list_entries("deny_accounts", ["acc-bad"])
    metrics = ConsumerMetrics()
    p = processor(store, new_state, RuleSource(rules_file(tmp_path), store), metrics)
    outcome = p.process([record(tx_doc(0, "acc-bad", 10.0), 0),
                         record(tx_doc(1, "acc-ok", 10.0), 1),
                         record(tx_doc(2, "acc-ok", 20.0), 2)])
    p.persist(outcome)
    bad, first, second = (store.get_decision(f"tx-{i}") for i in range(3))
    assert (bad.decision, bad.rules_fired, bad.rule_set_version) == (
        "block", "deny-listed-account", "v1")
    assert (first.decision, first.rules_fired) == ("approve", "")
    assert (second.decision, second.rules_fired) == ("review", "second-history")
    alert = store.get_alert("tx-0")
    assert (alert.rules_fired, alert.rule_set_version) == ("deny-listed-account", "v1")
    payload = json.loads(alert_payload(bad))  # what email and webhook carry
    assert (payload["rules_fired"], payload["rule_set_version"]) == (["deny-listed-account"],
                                                                      "v1")
    published = {json.loads(m.value)["transaction_id"]: m for m in outcome.outgoing
                 if m.topic == "fraud-decisions"}
    message = json.loads(published["tx-0"].value)
    assert (message["decision"], message["rules_fired"], message["rule_set_version"]) == (
        "block", ["deny-listed-account"], "v1")
    assert json.loads(published["tx-1"].value)["rules_fired"] == []
    for tx_id, sent in published.items():  # a redelivery publishes the same bytes again
        again = stored_decision_message(store.decided([tx_id])[tx_id], "fraud-decisions")
        assert again.value == sent.value
    assert metrics.registry.get_sample_value(
        "fraud_rule_hits_total", {"rule": "deny-listed-account"}) == 1.0


def test_a_list_change_reaches_a_running_processor(tmp_path: Path, store: Store,
                                                   new_state) -> None:
    clock = Clock()
    source = RuleSource(rules_file(tmp_path), store, refresh_s=2.0, clock=clock)
    p = processor(store, new_state, source)
    p.persist(p.process([record(tx_doc(0, "acc-x", 10.0), 0)]))
    store.add_list_entries("deny_accounts", ["acc-x"])  # the rule set created the list
    clock.now = 1.0  # not yet due: the previous entries still apply
    p.persist(p.process([record(tx_doc(1, "acc-x", 10.0), 1)]))
    clock.now = 2.5
    p.persist(p.process([record(tx_doc(2, "acc-x", 10.0), 2)]))
    store.remove_list_entry("deny_accounts", "acc-x")
    clock.now = 5.0
    p.persist(p.process([record(tx_doc(3, "acc-x", 10.0), 3)]))
    assert [store.get_decision(f"tx-{i}").decision for i in range(4)] == [
        "approve", "approve", "block", "approve"]


def test_an_invalid_rule_set_is_refused_and_the_running_one_stays(
        tmp_path: Path, store: Store, new_state) -> None:
    clock = Clock()
    path = rules_file(tmp_path)
    metrics = ConsumerMetrics()
    source = RuleSource(path, store, refresh_s=1.0, clock=clock,
                        on_reload=lambda o, _: metrics.rule_set_reloads.labels(outcome=o).inc())
    p = processor(store, new_state, source, metrics)
    store.add_list_entries("deny_accounts", ["acc-bad"])
    path.write_text(RULES.format(version="v2").replace("action: block", "action: blok"))
    clock.now = 1.5
    p.persist(p.process([record(tx_doc(0, "acc-bad", 10.0), 0)]))
    refused = store.get_decision("tx-0")
    assert (refused.decision, refused.rule_set_version) == ("block", "v1")
    assert "unknown action 'blok'" in source.last_error
    assert metrics.registry.get_sample_value("fraud_rule_set_reloads_total",
                                             {"outcome": "refused"}) == 1.0
    time.sleep(0.01)  # a new mtime for the fixed file
    path.write_text(RULES.format(version="v3").replace("action: block", "action: review"))
    clock.now = 3.0
    p.persist(p.process([record(tx_doc(1, "acc-bad", 10.0), 1)]))
    fixed = store.get_decision("tx-1")
    assert (fixed.decision, fixed.rule_set_version) == ("review", "v3")
    assert source.last_error is None


def test_an_invalid_rule_set_at_start_is_refused_with_its_reasons(tmp_path: Path,
                                                                  store: Store) -> None:
    path = rules_file(tmp_path, text=RULES.format(version="v1").replace("owner: ops", "owner:"))
    with pytest.raises(RuleSetError, match="owner: Input should be a valid string"):
        RuleSource(path, store)
