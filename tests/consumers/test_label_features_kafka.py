"""Labels through the real broker update the consumer's label-informed features, survive a
restart (snapshot and restore) and never count twice when redelivered: afterwards the features
of new transactions equal the batch computation over the same transactions and labels."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from consumer_helpers import (
    SEQ_LEN,
    SPEC,
    T0,
    consumer_settings,
    make_topics,
    produce,
    rule_score,
    tx_doc,
)

from consumers.app import ConsumerApp, ModelContract
from fraudops.data import tabular
from fraudops.features import compute_batch
from fraudops.features.spec import BASE_FEATURES
from fraudops.store import Store
from fraudops.testing import wait_until

pytestmark = pytest.mark.integration

ACCOUNTS = 7
#: The label-informed features (they follow the velocity ones in the spec).
LABEL_FEATURES = [n for n in BASE_FEATURES
                  if any(p in n for p in ("_fraud_", "_labelled_", "risky_visits"))]
AMOUNT = SPEC.names.index("amount_log")


class Recording:
    """A consumer on a thread whose scoring function keeps every scored row's features."""

    def __init__(self, settings, rows: list) -> None:
        def score(x, mask):
            rows.extend(x[:, -1, :].astype(np.float64))
            return rule_score(x, mask)
        self.app = ConsumerApp(settings, score=score, model=ModelContract(SPEC, SEQ_LEN, "rule/1"))
        self.thread = threading.Thread(target=self.app.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.app.stop.set()
        self.thread.join(30)


def label_doc(tx: dict, verdict: int, minutes: float) -> dict:
    return {"transaction_id": tx["transaction_id"], "label": verdict, "source": "analyst",
            "labelled_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "account_id": tx["account_id"], "merchant_id": tx["merchant_id"]}


def test_labels_update_features_across_a_restart_without_double_counting(
        kafka_broker, tmp_path, group_id_factory) -> None:
    topics = make_topics(kafka_broker)
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite'}")
    settings = consumer_settings(kafka_broker, topics, str(store.engine.url),
                                 group_id_factory("labels"))
    history = [tx_doc(i, f"acc-{i % ACCOUNTS}", 10.0 + i) for i in range(150)]
    # verdicts known after the whole history (so every history row saw none, in both modes)
    labels = [label_doc(tx, int(i % 6 == 0), 200 + i) for i, tx in enumerate(history)
              if i % 2 == 0]
    flips = [label_doc(history[i], 1, 300 + i) for i in (2, 4, 8)]  # legit, then fraud
    final = [tx_doc(400 + i, f"acc-{i}", 1000.0 + i) for i in range(ACCOUNTS)]
    rows: list = []
    produce(kafka_broker, topics.transactions, history)
    first = Recording(settings, rows)
    try:
        wait_until(lambda: store.counts()["decisions"] >= len(history), timeout=60)
        produce(kafka_broker, topics.labels, labels)
        wait_until(lambda: store.counts()["labels"] >= len(labels), timeout=60)
    finally:
        first.stop()
    # A new consumer restores the state; half the labels come again (redelivered), then flips.
    second = Recording(settings, rows)
    try:
        produce(kafka_broker, topics.labels, labels[::2] + flips)
        wait_until(lambda: all(len(store.label_history(f["transaction_id"])) >= 2
                               for f in flips), timeout=60)
        produce(kafka_broker, topics.transactions, final)
        wait_until(lambda: store.counts()["decisions"] >= len(history) + len(final), timeout=60)
    finally:
        second.stop()
    frame = tabular.normalize(pd.DataFrame(history + final))
    label_frame = pd.DataFrame(labels + labels[::2] + flips)
    label_frame["labelled_at"] = pd.to_datetime(label_frame["labelled_at"], utc=True)
    batch = compute_batch(frame, SPEC, labels=label_frame)[-len(final):]
    online = {round(float(r[AMOUNT]), 5): r for r in rows}
    columns = [SPEC.names.index(n) for n in LABEL_FEATURES]
    for tx, expected in zip(final, batch, strict=True):
        got = online[round(float(expected[AMOUNT]), 5)]
        np.testing.assert_allclose(got[columns], expected[columns], atol=1e-6,
                                   err_msg=tx["transaction_id"])
    # not a parity of zeros: every merchant has verdicts and confirmed fraud
    fraud, labelled = (SPEC.names.index(f"merchant_{n}_28d_log") for n in ("fraud", "labelled"))
    assert (batch[:, labelled] > 0).all() and (batch[:, fraud] > 0).all()
