"""`/v1/score` applies the stored labels known before the scored event: the account's, and
those of the merchants and devices its sequence touches, interleaved with the replayed history
as the consumer applies them; the label features of every event of the scored sequence equal
`compute_batch` over the same rows and labels. A label known after the event does not count."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gateway_fakes import INGEST_KEY, T0, StubPredictor, build, client

from fraudops.data import tabular
from fraudops.features import FeatureSpec, compute_batch
from fraudops.schema import Transaction
from fraudops.store import BatchWrite, DecisionRecord, LabelRecord, Store
from fraudops.store.models import Base

SCORED_AT = T0 + timedelta(days=30)
SEQ_LEN = 4
#: (id, account, merchant, device, days before the scored event)
ROWS = [("h1", "acc-1", "m-1", "d-1", 10), ("o1", "acc-2", "m-1", "d-2", 20),
        ("o2", "acc-3", "m-1", "d-3", 6), ("o3", "acc-4", "m-2", "d-4", 5),
        ("o5", "acc-6", "m-9", "d-1", 4), ("h2", "acc-1", "m-2", "d-1", 3),
        ("o4", "acc-5", "m-1", "d-5", 2), ("h3", "acc-1", "m-1", "d-1", 1)]
#: (id, verdict, days before the scored event; negative: after it), keys carried or not
LABELS = [("o1", 1, 15, False), ("h1", 0, 9, False), ("o2", 1, 5, True), ("o3", 1, 4, False),
          ("o5", 0, 2, False), ("o2", 0, 1.5, False), ("o4", 1, 0.5, True),
          ("o4", 1, -1 / 24, False), ("h3", 1, -1 / 24, False)]


def tx(tx_id: str, account: str, merchant: str, device: str, days: float) -> Transaction:
    return Transaction(transaction_id=tx_id, account_id=account, merchant_id=merchant,
                       device_id=device, timestamp=SCORED_AT - timedelta(days=days),
                       amount=25.0, merchant_category="grocery", channel="online",
                       country="DE")


SCORED = tx("s1", "acc-1", "m-1", "d-1", 0)
STORED = [tx(*row) for row in ROWS]


class RecordingPredictor(StubPredictor):
    """The stub predictor, keeping the sequences it was sent."""

    def __init__(self) -> None:
        super().__init__(seq_len=SEQ_LEN)
        self.sent: list[tuple[np.ndarray, np.ndarray]] = []

    async def score(self, x: np.ndarray, mask: np.ndarray):
        self.sent.append((x.copy(), mask.copy()))
        return await super().score(x, mask)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url: str):
    store = Store.from_url(database_url)
    yield store
    Base.metadata.drop_all(store.engine)
    store.close()


def seed(store: Store, labels=LABELS) -> None:
    """The stored decisions, then their labels (keys looked up unless carried)."""
    store.write_batch(BatchWrite(decisions=[
        DecisionRecord(t.transaction_id, t.account_id, t.timestamp, t.amount, 0.1, 0.1,
                       "approve", t.model_dump_json()) for t in STORED]))
    by_id = {t.transaction_id: t for t in STORED}
    store.add_labels([LabelRecord(
        tx_id, verdict, source="chargeback", labelled_at=SCORED_AT - timedelta(days=days),
        **({"account_id": by_id[tx_id].account_id, "merchant_id": by_id[tx_id].merchant_id,
            "device_id": by_id[tx_id].device_id} if carried else {}))
        for tx_id, verdict, days, carried in labels])


def score(tmp_path: Path, database_url: str) -> tuple[dict, np.ndarray, np.ndarray]:
    app, _ = build(tmp_path, database_url=database_url)
    predictor = app.state.services.predictor = RecordingPredictor()
    with client(app, INGEST_KEY) as ingest:
        answer = ingest.post("/v1/score", json=SCORED.model_dump(mode="json"))
    assert answer.status_code == 200, answer.text
    (x, mask), = predictor.sent
    return answer.json(), x[0], mask[0]


def label_columns(spec: FeatureSpec) -> list[int]:
    return [j for j, name in enumerate(spec.names)
            if "_fraud_" in name or "_labelled_" in name or "risky_visits" in name]


def batch_features(labels) -> tuple[pd.DataFrame, np.ndarray]:
    frame = tabular.sort_by_time(tabular.from_transactions([*STORED, SCORED]))
    table = pd.DataFrame({"transaction_id": [r[0] for r in labels],
                          "label": [r[1] for r in labels],
                          "labelled_at": [SCORED_AT - timedelta(days=r[2]) for r in labels]})
    return frame, compute_batch(frame, FeatureSpec(), labels=table)


def test_score_applies_the_labels_known_before_the_event_as_compute_batch_does(
        tmp_path: Path, database_url: str, store: Store) -> None:
    spec = FeatureSpec()
    _, blind, _ = score(tmp_path, database_url)  # the decisions only: nothing known
    seed(store)
    body, x, mask = score(tmp_path, database_url)
    frame, batch = batch_features(LABELS)
    account_rows = np.flatnonzero(frame["account_id"].to_numpy() == "acc-1")[-SEQ_LEN:]
    columns = label_columns(spec)
    np.testing.assert_allclose(x[mask][:, columns], batch[account_rows][:, columns],
                               atol=1e-6, rtol=0)
    merchant_28d = spec.names.index("merchant_fraud_28d_log")
    # m-1: o1 (fraud 15 d before) and o4 (fraud half a day before) count; o2's fraud verdict
    # was replaced by "legitimate" 1.5 d before; o4's repeat and h3's label come after. Its
    # verdicts: o1, h1 (legitimate), o2 (now legitimate), o4.
    assert x[-1, merchant_28d] == pytest.approx(np.log1p(2))
    assert blind[-1, merchant_28d] == 0.0
    assert x[-1, spec.names.index("merchant_fraud_known_7d")] == 1.0
    assert x[-1, spec.names.index("merchant_labelled_28d_log")] == pytest.approx(np.log1p(4))
    assert (body["history_used"], body["labels_applied"]) == (3, 7)


def test_a_label_known_after_the_event_does_not_count(tmp_path: Path, database_url: str,
                                                      store: Store) -> None:
    early = [row for row in LABELS if row[2] > 0]
    seed(store, early)
    before, x_before, _ = score(tmp_path, database_url)
    store.add_labels([LabelRecord("o3", 1, source="analyst",
                                  labelled_at=SCORED_AT + timedelta(minutes=1)),
                      LabelRecord("o1", 1, source="analyst", labelled_at=SCORED_AT)])
    after, x_after, _ = score(tmp_path, database_url)
    np.testing.assert_array_equal(x_after, x_before)
    assert before["labels_applied"] == after["labels_applied"] == len(early)
    _, batch = batch_features([*early, ("o3", 1, -1 / 1440, False), ("o1", 1, 0, False)])
    columns = label_columns(FeatureSpec())
    np.testing.assert_allclose(x_after[-1, columns], batch[-1, columns], atol=1e-6, rtol=0)


def test_an_older_store_gets_the_entity_keys_and_their_indexes(tmp_path: Path) -> None:
    """A store created before migrations and the label entity keys: `create_schema` (upgrading
    it) adds the columns and their indexes and gives its entries their stored transactions'
    keys; a label recorded before its transaction gets them once the transaction is stored and
    the store reopened."""
    from sqlalchemy import inspect, text

    from fraudops.store.migrate import VERSION_TABLE

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store.from_url(url)
    store.add_labels([LabelRecord("early", 1, labelled_at=SCORED_AT - timedelta(days=1))])
    seed(store, [("o1", 1, 15, False)])
    with store.engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))  # from before migrations
        for name in ("account", "merchant", "device"):
            connection.execute(text(f"DROP INDEX ix_label_history_{name}"))
            connection.execute(text(f"ALTER TABLE label_history DROP COLUMN {name}_id"))
    early = tx("early", "acc-9", "m-1", "d-9", 2)
    store.write_batch(BatchWrite(decisions=[DecisionRecord(
        "early", "acc-9", early.timestamp, 25.0, 0.1, 0.1, "approve", early.model_dump_json())]))
    store.close()
    store = Store.from_url(url)
    inspector = inspect(store.engine)
    assert {"account_id", "merchant_id", "device_id"} <= {
        c["name"] for c in inspector.get_columns("label_history")}
    assert {"ix_label_history_merchant", "ix_label_history_device"} <= {
        i["name"] for i in inspector.get_indexes("label_history")}
    labels, truncated = store.entity_labels(since=T0, before=SCORED_AT, merchants=["m-1"])
    assert [(x.transaction_id, x.account_id, x.device_id) for x in labels] == [
        ("o1", "acc-2", "d-2"), ("early", "acc-9", "d-9")] and not truncated
    store.close()
