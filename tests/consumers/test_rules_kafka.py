"""Rules and lists in the running consumer on the real broker: a deny-listed account is
blocked and its decision and alert record the rule; a list change made while the consumer
runs is in force within `rules_refresh_s`, without a restart."""

from __future__ import annotations

import json
import threading
import time

import pytest
from consumer_helpers import (
    SEQ_LEN,
    SPEC,
    consumer_settings,
    make_topics,
    produce,
    read_topic,
    rule_score,
    tx_doc,
)

from consumers.app import ConsumerApp, ModelContract
from fraudops.store import Store
from fraudops.testing import wait_until

pytestmark = pytest.mark.integration

RULES = """
version: kafka-1
lists: {deny_accounts: account}
rules:
  - id: deny-listed-account
    owner: ops
    description: Deny-listed accounts are blocked.
    action: block
    when: {field: account_id, in_list: deny_accounts}
"""


def test_deny_list_blocks_and_a_list_change_reaches_the_running_consumer(
        kafka_broker, tmp_path, group_id_factory) -> None:
    topics = make_topics(kafka_broker)
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite'}")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    store.create_list("deny_accounts", "account")
    store.add_list_entries("deny_accounts", ["acc-0"], added_by="test")
    settings = consumer_settings(kafka_broker, topics, str(store.engine.url),
                                 group_id_factory("rules"), rules_path=str(rules),
                                 rules_refresh_s=0.5)
    app = ConsumerApp(settings, score=rule_score, model=ModelContract(SPEC, SEQ_LEN, "rule/1"))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(app.run()), daemon=True)
    thread.start()
    try:
        first = [tx_doc(i, f"acc-{i % 3}", 10.0 + i) for i in range(30)]
        produce(kafka_broker, topics.transactions, first)
        wait_until(lambda: store.counts()["decisions"] >= 30)
        store.add_list_entries("deny_accounts", ["acc-1"], added_by="test")  # while running
        time.sleep(1.0)  # two refresh intervals
        second = [tx_doc(i, f"acc-{i % 3}", 10.0 + i) for i in range(30, 60)]
        produce(kafka_broker, topics.transactions, second)
        wait_until(lambda: store.counts()["decisions"] >= 60)
    finally:
        app.stop.set()
        thread.join(30)
    assert codes == [0]
    decided = {d["transaction_id"]: store.get_decision(d["transaction_id"])
               for d in first + second}
    for doc in first + second:
        expected = doc["account_id"] == "acc-0" or (doc["account_id"] == "acc-1"
                                                    and doc in second)
        stored = decided[doc["transaction_id"]]
        assert (stored.decision == "block") == expected, doc
        assert stored.rules_fired == ("deny-listed-account" if expected else "")
        assert stored.rule_set_version == "kafka-1"
    blocked = sum(d.decision == "block" for d in decided.values())
    alerts = read_topic(kafka_broker, topics.alerts, blocked)
    assert {json.loads(r.value)["rules_fired"][0] for r in alerts} == {"deny-listed-account"}
    assert store.get_alert("tx-0").rules_fired == "deny-listed-account"
