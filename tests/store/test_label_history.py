"""Issue 20: every label is appended to a history; the current verdict is derived from it and is
what retraining reads (SQLite and the local PostgreSQL server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fraudops.store import BatchWrite, DecisionRecord, LabelOutcome, LabelRecord, Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def decision(tx: str) -> DecisionRecord:
    return DecisionRecord(tx, "acc-1", T0, 12.5, 0.7, 0.3, "review",
                          f'{{"transaction_id": "{tx}"}}')


def test_every_label_is_kept_and_the_latest_is_the_current_verdict(store: Store) -> None:
    """Before: conflicting labels overwrote each other; no history."""
    store.write_batch(BatchWrite(decisions=[decision("t1")]))
    first = store.record_label(LabelRecord("t1", 1, source="gateway", analyst="ana"))
    repeat = store.record_label(LabelRecord("t1", 1, source="gateway", analyst="ana"))
    flip = store.record_label(LabelRecord("t1", 0, source="gateway", analyst="bo", note="ok"))
    assert [first.outcome, repeat.outcome, flip.outcome] == ["new", "unchanged", "changed"]
    assert [first.previous_label, repeat.previous_label, flip.previous_label] == [None, 1, 1]
    history = store.label_history("t1")
    assert [(e.label, e.analyst) for e in history] == [(1, "ana"), (1, "ana"), (0, "bo")]
    assert [e.id for e in history] == [first.id, repeat.id, flip.id]
    current = store.get_label("t1")
    assert (current.label, current.analyst, current.note) == (0, "bo", "ok")
    # Retraining reads one row per transaction: its current verdict.
    (row,) = store.labelled_transactions()
    assert (row.transaction_id, row.label) == ("t1", 0)


def test_a_redelivered_label_is_recorded_once(store: Store) -> None:
    """The consumer writes the labels topic's records: a redelivery is not a second label."""
    label = LabelRecord("t1", 1, source="gateway", analyst="ana", labelled_at=T0)
    batch = BatchWrite(decisions=[decision("t1")], labels=[label])
    store.write_batch(batch)
    store.write_batch(batch)
    assert store.add_labels([label]) == 0
    (entry,) = store.label_history("t1")
    assert entry.labelled_at == T0 and entry.published_at is not None  # read from the topic


def test_a_label_known_earlier_does_not_replace_a_later_one(store: Store) -> None:
    """Labels arriving out of order (or racing writers) end on the latest known verdict."""
    store.add_labels([LabelRecord("t1", 1, source="chargeback", labelled_at=T0)])
    late = store.record_label(LabelRecord("t1", 0, source="analyst",
                                          labelled_at=T0 - timedelta(hours=1)))
    assert late.outcome == LabelOutcome.LATE
    assert store.get_label("t1").label == 1
    assert [e.source for e in store.label_history("t1")] == ["analyst", "chargeback"]


def test_a_label_stamped_in_the_future_counts_from_now(store: Store) -> None:
    entry = store.record_label(LabelRecord("t1", 1, labelled_at=datetime(2099, 1, 1, tzinfo=UTC)))
    assert entry.labelled_at <= datetime.now(UTC)
    assert store.record_label(LabelRecord("t1", 0)).outcome == LabelOutcome.CHANGED


def test_conflicting_labels_in_one_batch_end_on_the_last(store: Store) -> None:
    store.write_batch(BatchWrite(decisions=[decision("t1")], labels=[
        LabelRecord("t1", 1), LabelRecord("t1", 0, note="corrected")]))
    assert [e.outcome for e in store.label_history("t1")] == ["new", "changed"]
    assert (store.get_label("t1").label, store.get_label("t1").note) == (0, "corrected")


def test_unpublished_verdict_until_one_entry_reached_the_topic(store: Store) -> None:
    first = store.record_label(LabelRecord("t1", 1, source="gateway"))
    assert store.unpublished_verdict("t1").id == first.id
    repeat = store.record_label(LabelRecord("t1", 1, source="gateway"))
    assert store.unpublished_verdict("t1").id == repeat.id  # the first produce failed: retry
    store.mark_label_published(repeat.id)
    store.record_label(LabelRecord("t1", 1, source="gateway"))
    assert store.unpublished_verdict("t1") is None  # produced once, not again
    flip = store.record_label(LabelRecord("t1", 0, source="gateway"))
    assert store.unpublished_verdict("t1").id == flip.id
    assert store.unpublished_verdict("nothing") is None


def test_a_generated_label_stream_is_stored_once_whatever_its_replays(store: Store) -> None:
    """Issue 15: the generator's stream through the store's one model: replayed twice, in time
    order then reversed, it leaves one current verdict per transaction, the latest known."""
    from fraudops.data.generate import GeneratorConfig, generate
    from fraudops.data.labels import LabelStreamConfig, generate_labels, to_labels, verdicts_as_of

    transactions = generate(GeneratorConfig(rows=2_000, seed=5, fraud_rate=0.1))
    config = LabelStreamConfig(mature_unreported_fraud=True, maturity_days=5)
    stream = generate_labels(transactions, 5, config)
    records = [LabelRecord.from_label(label) for label in to_labels(stream)]
    assert store.add_labels(records) == len(records)
    assert store.add_labels(records[::-1]) == 0  # redeliveries, in any order
    expected = verdicts_as_of(stream, stream["labelled_at"].max())
    assert store.counts()["labels"] == len(expected) == stream["transaction_id"].nunique()
    flipped = stream[stream["transaction_id"].duplicated()]["transaction_id"].iloc[0]
    assert [(e.source, e.label, e.outcome) for e in store.label_history(flipped)] == [
        ("rule", 0, "new"), ("chargeback", 1, "changed")]
    for row in expected.head(50).itertuples():
        assert store.get_label(row.transaction_id).label == row.label
