"""The entity stages killed (SIGKILL) mid-stream on the real broker, and the scoring consumer
too: afterwards every merchant's and device's features equal the batch computation in the
order its stage applied the events, every transaction is decided exactly once (with the
account state neither reset nor applied twice), every alert is stored once, and no email goes
out twice beyond the one a killed consumer may repeat."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from consumer_helpers import produce
from e2e_helpers import Inbox, Service, consumer_env
from stage_helpers import (
    ENTITY_COLUMNS,
    SPEC,
    batch_in_order,
    consumed_order,
    phased_stream,
    read_back,
    stage_topics,
)

from consumers.messages import given_features
from fraudops.store import Store
from fraudops.testing import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
HISTORY = SPEC.names.index("account_history_log")
#: A scoring consumer process with the rule-based scoring function of the unit tests (no
#: predictor to start): killable like the real one.
SCORER = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(HERE)!r})
    from consumer_helpers import SEQ_LEN, SPEC, rule_score
    from consumers.app import ConsumerApp, ModelContract
    from consumers.settings import ConsumerSettings
    app = ConsumerApp(ConsumerSettings(), score=rule_score,
                      model=ModelContract(SPEC, SEQ_LEN, "rule/1"))
    app.install_signal_handlers()
    sys.exit(app.run())
""")


class Scorer(Service):
    """`Service` running the scoring consumer script with this interpreter."""

    def start(self) -> Scorer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-c", SCORER],
                                            env={**os.environ, **self.env},
                                            stdout=log, stderr=subprocess.STDOUT)
        return self


def test_stages_and_consumer_killed_mid_stream(kafka_broker, tmp_path, group_id_factory) -> None:
    handler = Inbox()
    smtp = Controller(handler, hostname="127.0.0.1", port=free_port())
    smtp.start()
    topics = stage_topics(kafka_broker)
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.from_url(db_url)
    env = consumer_env(kafka_broker.bootstrap, topics, db_url, group_id_factory("stagekill"),
                       "http://127.0.0.1:9", FRAUDOPS_CONSUMER__ENTITY_STAGES="true",
                       FRAUDOPS_CONSUMER__ALLOWED_LATENESS_S="inf",
                       FRAUDOPS_CONSUMER__SNAPSHOT_INTERVAL_S="1",
                       FRAUDOPS_NOTIFY__SMTP_HOST="127.0.0.1",
                       FRAUDOPS_NOTIFY__SMTP_PORT=str(smtp.port),
                       FRAUDOPS_NOTIFY__EMAIL_TO='["fraud-ops@bank.test"]',
                       FRAUDOPS_NOTIFY__RATE_LIMIT_COUNT="1000000",
                       FRAUDOPS_NOTIFY__DECISIONS='["block"]')
    stream = phased_stream(31, phases=2, per_phase=4000, accounts=400, merchants=30,
                           devices=120)
    services: dict[str, Service] = {}
    logs: list[Service] = []

    def start(name: str) -> None:
        kind = name.rstrip("0123456789-")
        service = (Scorer([], env, tmp_path / f"{name}-{len(logs)}.log") if kind == "scorer"
                   else Service(["consume", "--stage", kind], env,
                                tmp_path / f"{name}-{len(logs)}.log"))
        services[name] = service.start()
        logs.append(service)

    def kill(name: str) -> None:
        services[name].signal(signal.SIGKILL)
        assert services[name].wait() == -signal.SIGKILL
        start(name)

    def decided() -> int:
        return store.counts()["decisions"]

    def wait_decided(count: int) -> None:
        try:
            wait_until(lambda: decided() >= count, timeout=240, interval=0.25)
        except TimeoutError:
            tails = "\n".join(f"--- {s.log_path.name}\n{s.log()[-2000:]}" for s in logs)
            raise AssertionError(f"{decided()} of {count} decided\n{tails}") from None

    kills = []
    produced_ids: set[str] = set()

    def produce_killing(records: list[dict], victims: tuple[str, str]) -> None:
        """Produce a phase in parts, killing each victim once a quarter (then a half) of the
        phase is decided, while an eighth more is in flight and the rest not yet produced:
        a fast pipeline cannot finish the phase before its kills (CI's did)."""
        base, before = decided(), set(produced_ids)
        sent = 0
        for fraction, victim in zip((1 / 4, 1 / 2), victims, strict=True):
            end = int(len(records) * (fraction + 1 / 8))
            produce(kafka_broker, topics.transactions, records[sent:end])
            sent = end
            target = {d["transaction_id"] for d in records[:int(len(records) * fraction)]}
            wait_decided(base + len(target - before))
            kill(victim)
            kills.append((victim, decided()))
        produce(kafka_broker, topics.transactions, records[sent:])
        produced_ids.update(d["transaction_id"] for d in records)

    try:
        for name in ("router", "merchant-1", "merchant-2", "device", "scorer"):
            start(name)
        (first, first_labels), (second, _) = stream.phases
        n_first = len({d["transaction_id"] for d in first})
        produce_killing(first, ("merchant-1", "scorer"))
        wait_decided(n_first)
        produce(kafka_broker, topics.labels, first_labels)
        judged = len({d["transaction_id"] for d in first_labels})
        wait_until(lambda: store.counts()["labels"] >= judged, timeout=120)
        total = len(stream.transactions)
        produce_killing(second, ("device", "router"))
        wait_decided(total)
        notified = store.counts()["notifications"]
        wait_until(lambda: len(set(handler.message_ids)) >= notified, timeout=180)
        time.sleep(1.5)  # a repeated email would arrive now
    finally:
        for service in services.values():
            service.stop()
        smtp.stop()
    assert all(count < len(stream.transactions) for _, count in kills), kills
    transactions = stream.transactions
    labels = stream.labels
    # decided exactly once, from an account state neither reset nor applied twice
    enriched = read_back(kafka_broker, topics.enriched)
    account = batch_in_order(transactions, consumed_order(enriched), labels)
    stored = {d.transaction_id: d for d in store.scored_window()}
    assert decided() == len(transactions) and set(stored) == set(account)
    wrong = [tx for tx, row in account.items()
             if abs(stored[tx].anomaly_score - row[HISTORY]) > 1e-5]
    assert wrong == [], f"{len(wrong)} decisions from a wrong account state, e.g. {wrong[:5]}"
    # every merchant's and device's features: those of the batch in its stage's order
    attached: dict[str, dict] = {}
    for record in enriched:
        if ("fraudops.kind", b"label") not in record.headers:
            tx_id = json.loads(record.value)["transaction_id"]
            attached.setdefault(tx_id, given_features(record))
    for entity, topic in (("merchant", topics.by_merchant), ("device", topics.by_device)):
        reference = batch_in_order(transactions, consumed_order(read_back(kafka_broker, topic)),
                                   labels)
        keyed = [d for d in transactions if d[f"{entity}_id"]]
        for doc in keyed:
            np.testing.assert_allclose(attached[doc["transaction_id"]][entity],
                                       reference[doc["transaction_id"]][ENTITY_COLUMNS[entity]],
                                       atol=1e-6, rtol=0, err_msg=doc["transaction_id"])
    # alerts once each; every email out, repeated at most once for the one consumer kill
    alerts = [a.transaction_id for a in store.list_alerts(limit=10_000_000)]
    assert len(alerts) == len(set(alerts)) == sum(d.decision != "approve" for d in stored.values())
    repeated = len(handler.message_ids) - len(set(handler.message_ids))
    assert len(set(handler.message_ids)) == store.counts()["notifications"]
    assert repeated <= 1, f"{repeated} emails repeated"
    print(f"killed {kills}; {len(transactions)} decided, {len(alerts)} alerts, "
          f"{repeated} emails repeated")
