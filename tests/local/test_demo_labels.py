"""The demo learns only from labels that have arrived (issue 15, item 5): the training file holds
the verdicts known at the split, the retraining data those known at the stream's current event
time, the stream's events carry no ground truth, and the label stream reaches `labels` in time
order, each verdict once the stream's event time has passed it (on the real broker)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest

from fraudops.data import tabular
from fraudops.data.labels import labels_path, read_labels, verdicts_as_of
from fraudops.schema import TransactionLabel
from fraudops.testing import read_records
from local.dataset import DemoData, prepare, write_labelled
from local.stream import StreamProducer, kafka_producer


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoData:
    return prepare(tmp_path_factory.mktemp("demo"), train_rows=6000, stream_rows=2000)


def _expected(frame: pd.DataFrame, labels: pd.DataFrame, moment: pd.Timestamp) -> np.ndarray:
    """Straightforward twin: the latest label known strictly before `moment`, else -1."""
    out = []
    for tx_id in frame["transaction_id"]:
        known = labels[(labels["transaction_id"] == tx_id) & (labels["labelled_at"] < moment)]
        out.append(int(known.sort_values("labelled_at", kind="stable")["label"].iloc[-1])
                   if len(known) else -1)
    return np.array(out)


def test_training_file_holds_only_the_verdicts_known_at_the_split(demo: DemoData) -> None:
    stored = tabular.read(demo.train_path)
    sample = stored.sample(400, random_state=1)
    assert (sample["label"].to_numpy() == _expected(sample, demo.labels, demo.split)).all()
    truth = stored["transaction_id"].map(
        pd.concat([demo.train, demo.stream]).set_index("transaction_id")["label"])
    # Some verdicts are not known yet (the ground truth would have had them all) ...
    assert (stored["label"] == -1).sum() > 0 and truth.notna().all()
    # ... and a known verdict is never a wrong one here (the demo's labels are true verdicts).
    known = stored["label"] >= 0
    assert known.sum() > 0.5 * len(stored)
    labels = read_labels(labels_path(demo.train_path))
    assert (labels["labelled_at"] < demo.split).all() and len(labels) > 0


def test_stream_events_carry_no_ground_truth(demo: DemoData) -> None:
    records = list(tabular.to_records(demo.stream_events().head(200)))
    assert all("label" not in r and "fraud_scenario" not in r for r in records)
    assert demo.stream["label"].isin([0, 1]).all()  # the summary's truth stays in memory


@pytest.mark.parametrize("streamed", [0, 1, 700, 10**9])
def test_retraining_data_has_the_verdicts_known_at_the_stream_time(demo: DemoData, tmp_path,
                                                                   streamed: int) -> None:
    path = write_labelled(demo, streamed, tmp_path / "labelled.parquet")
    frame = tabular.read(path)
    shown = min(streamed, len(demo.stream))
    assert len(frame) == len(demo.train) + shown
    moment = demo.stream["timestamp"].iloc[shown - 1] if shown else demo.split
    sample = frame.sample(400, random_state=2)
    assert (sample["label"].to_numpy() == _expected(sample, demo.labels, moment)).all()
    labels = read_labels(labels_path(path))
    assert (labels["labelled_at"] < moment).all()
    assert len(labels) == int((demo.labels["labelled_at"] < moment).sum())
    # The current verdict of a transaction whose label flipped is its latest one.
    current = verdicts_as_of(labels, moment)
    assert set(current["transaction_id"]) >= set(frame.loc[frame["label"] >= 0,
                                                           "transaction_id"])


@pytest.mark.integration
def test_label_stream_reaches_the_topic_in_event_time_order(demo: DemoData,
                                                           kafka_broker) -> None:
    events, labels_topic = kafka_broker.unique_topic("tx", 1), kafka_broker.unique_topic("lb", 1)
    stream = demo.stream.head(600)
    labels = demo.labels_between(demo.stream, None, None)
    due = labels[labels["labelled_at"] <= stream["timestamp"].iloc[-1]]
    assert len(due) > 0
    producer = StreamProducer(functools.partial(kafka_producer, kafka_broker.bootstrap), events,
                              demo.stream_events().head(600), rate=3000, labels=labels,
                              labels_topic=labels_topic)
    producer.start()
    assert producer.join(timeout=60) and producer.progress.failed == 0
    assert producer.progress.labels_sent == len(due)
    merged = _read_both(kafka_broker.bootstrap, events, labels_topic)
    received = [TransactionLabel.model_validate_json(v) for t, v in merged if t == labels_topic]
    assert [r.transaction_id for r in received] == due["transaction_id"].tolist()
    assert all(r.account_id and r.merchant_id for r in received)
    times = [r.labelled_at for r in received]
    assert times == sorted(times)
    # None of the events carries its verdict.
    sent_events = [json.loads(v) for t, v in merged if t == events]
    assert len(sent_events) == 600
    assert all(e.get("label") is None and e.get("fraud_scenario") is None for e in sent_events)


def _read_both(bootstrap: str, *topics: str) -> list[tuple[str, bytes]]:
    records = sorted(read_records(bootstrap, topics, timeout=60, idle_s=4),
                     key=lambda m: m.timestamp)
    return [(m.topic, m.value) for m in records]
