"""One model of a label: an append-only history (`label_history`) and the current verdict
derived from it (`labels`), written in the same database transaction.

Every label, whatever its source (the gateway's feedback, the `labels` topic, an import), is
appended with who gave it, when it became known (`labelled_at`), its verdict and the verdict
current before it. The current verdict of a transaction is its latest entry by `labelled_at`
(then by insertion): the `labels` row is replaced only by a label known at the same time or
later, so concurrent writers and labels arriving out of order end on the same verdict. A label
delivered again (same transaction, time, verdict and source) is recorded once.

Readers that want one verdict per transaction (retraining data, the drift job's quality
figures, the console) read `labels`; the history answers who said what, and when.

Each entry also holds the judged transaction's entity keys (account, merchant, device): those
the label carried, else the stored transaction's at the time the label is recorded ("" when
neither is known: a label recorded before its transaction, without keys). `entity_labels`
reads an account's, merchant's or device's recent labels by them (`POST /v1/score`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from fraudops.schema import TransactionLabel
from fraudops.store.models import Base, Decision, Label, LabelEvent, LabelOutcome, utcnow
from fraudops.store.records import LabelEntry, LabelRecord

_HISTORY = LabelEvent.__table__
_LABELS = Label.__table__
_DECISIONS = Decision.__table__
#: The judged transaction's keys stored with each entry (`LabelRecord` and column names).
ENTITY_KEYS = ("account_id", "merchant_id", "device_id")
#: The columns of a `LabelEntry`.
_ENTRY_COLUMNS = [c for c in _HISTORY.c if c.name not in ENTITY_KEYS]
#: Columns of `labels` taken from the entry that set the current verdict.
_CURRENT_FIELDS = ("label", "source", "analyst", "note", "labelled_at")


def outcome_of(previous: tuple[int, datetime] | None, label: int, at: datetime) -> LabelOutcome:
    """What a label known at `at` does to the current verdict `previous` (label, known at)."""
    if previous is None:
        return LabelOutcome.NEW
    if at < previous[1]:
        return LabelOutcome.LATE
    return LabelOutcome.UNCHANGED if previous[0] == label else LabelOutcome.CHANGED


class LabelLog:
    """The SQL of the label history; `Store` calls it inside its own transactions."""

    def __init__(self, insert: Callable[[type[Base]], Any]) -> None:
        statement = insert(Label)
        self._set_current = statement.on_conflict_do_update(
            index_elements=["transaction_id"],
            set_={name: statement.excluded[name] for name in _CURRENT_FIELDS},
            where=_LABELS.c.labelled_at <= statement.excluded.labelled_at)

    def append(self, connection: Connection, labels: Sequence[LabelRecord], *,
               published: bool) -> list[LabelEntry]:
        """Append `labels` in order and update the current verdicts; returns the new entries
        (a redelivered label gets none). `published`: they came from the `labels` topic."""
        if not labels:
            return []
        now = utcnow()
        ids = list({label.transaction_id for label in labels})
        current = self._current(connection, ids)
        recorded = self._recorded(connection, ids, labels)
        stored_keys = self._stored_keys(connection, [
            label.transaction_id for label in labels if not _carried_keys(label)])
        entries: list[LabelEntry] = []
        latest: dict[str, dict[str, Any]] = {}
        for label in labels:
            at = _utc(min(label.labelled_at or now, now))  # a verdict is not known in the future
            key = (label.transaction_id, at, label.label, label.source)
            if key in recorded:
                continue
            recorded.add(key)
            outcome = outcome_of(current.get(label.transaction_id), label.label, at)
            row = {"transaction_id": label.transaction_id, "label": label.label,
                   "previous_label": (current.get(label.transaction_id) or (None,))[0],
                   "outcome": outcome.value, "source": label.source, "analyst": label.analyst,
                   "note": label.note, "labelled_at": at, "recorded_at": now,
                   "published_at": now if published else None}
            keys = _carried_keys(label) or stored_keys.get(label.transaction_id, {})
            result = connection.execute(_HISTORY.insert(), row | {
                name: keys.get(name) or "" for name in ENTITY_KEYS})
            entries.append(LabelEntry(id=result.inserted_primary_key[0], **row))
            if outcome is not LabelOutcome.LATE:
                current[label.transaction_id] = (label.label, at)
                latest[label.transaction_id] = {"transaction_id": label.transaction_id} | {
                    name: row[name] for name in _CURRENT_FIELDS}
        if latest:
            connection.execute(self._set_current, list(latest.values()))
        return entries

    def entries(self, connection: Connection, transaction_id: str) -> list[LabelEntry]:
        """A transaction's history, oldest first (by `labelled_at`, then insertion)."""
        query = (select(*_ENTRY_COLUMNS).where(_HISTORY.c.transaction_id == transaction_id)
                 .order_by(_HISTORY.c.labelled_at, _HISTORY.c.id))
        return [LabelEntry(**row._mapping) for row in connection.execute(query)]

    def entity_labels(self, connection: Connection, *, since: datetime, before: datetime,
                      accounts: Collection[str] = (), merchants: Collection[str] = (),
                      devices: Collection[str] = (), limit: int) -> tuple[
                          list[TransactionLabel], bool]:
        """Every label with ``since < labelled_at < before`` of a transaction of one of the
        accounts, merchants or devices, with its transaction's keys, by `labelled_at` (then
        insertion); at most the latest `limit` of them, and whether more were left out.
        One query over the entity indexes (``ix_label_history_<entity>``)."""
        conditions = [getattr(_HISTORY.c, name).in_(sorted({k for k in keys if k}))
                      for name, keys in zip(ENTITY_KEYS, (accounts, merchants, devices),
                                            strict=True) if any(keys)]
        if not conditions or limit <= 0:
            return [], False
        query = (select(_HISTORY.c.transaction_id, _HISTORY.c.label, _HISTORY.c.labelled_at,
                        *(getattr(_HISTORY.c, name) for name in ENTITY_KEYS))
                 .where(_HISTORY.c.labelled_at > since, _HISTORY.c.labelled_at < before,
                        or_(*conditions))
                 .order_by(_HISTORY.c.labelled_at.desc(), _HISTORY.c.id.desc())
                 .limit(limit + 1))
        rows = connection.execute(query).all()
        # Stored values, validated when they were recorded: no second validation per row.
        labels = [TransactionLabel.model_construct(
            transaction_id=row.transaction_id, label=row.label,
            labelled_at=_utc(row.labelled_at),
            **{name: getattr(row, name) or None for name in ENTITY_KEYS})
            for row in reversed(rows[:limit])]
        return labels, len(rows) > limit

    def fill_keys(self, connection: Connection) -> int:
        """Give the entries without entity keys those of their transaction where it is stored
        now (entries of a store older than the keys, labels recorded before their
        transaction); returns how many changed. Cheap when there are none (the account
        index)."""
        unknown = and_(*(getattr(_HISTORY.c, name) == "" for name in ENTITY_KEYS))
        query = (select(_HISTORY.c.id, _DECISIONS.c.transaction_json)
                 .join(_DECISIONS, _DECISIONS.c.transaction_id == _HISTORY.c.transaction_id)
                 .where(unknown))
        rows = connection.execute(query).all()
        for row in rows:
            keys = _event_keys(row.transaction_json)
            if keys:
                connection.execute(update(_HISTORY).where(_HISTORY.c.id == row.id)
                                   .values({name: keys.get(name) or "" for name in ENTITY_KEYS}))
        return len(rows)

    def unpublished_verdict(self, connection: Connection,
                            transaction_id: str) -> LabelEntry | None:
        """The latest entry of the current verdict if no entry stating that verdict since it
        last changed reached the `labels` topic; None when one did (or there is no history)."""
        stated = [e for e in reversed(self.entries(connection, transaction_id))
                  if e.outcome != LabelOutcome.LATE]
        run = []
        for entry in stated:
            if entry.label != stated[0].label:
                break
            run.append(entry)
        if not run or any(entry.published_at is not None for entry in run):
            return None
        return run[0]

    def mark_published(self, connection: Connection, entry_id: int) -> None:
        connection.execute(update(_HISTORY).where(
            _HISTORY.c.id == entry_id, _HISTORY.c.published_at.is_(None))
            .values(published_at=utcnow()))

    @staticmethod
    def _current(connection: Connection, ids: list[str]) -> dict[str, tuple[int, datetime]]:
        query = select(_LABELS.c.transaction_id, _LABELS.c.label, _LABELS.c.labelled_at).where(
            _LABELS.c.transaction_id.in_(ids))
        return {row.transaction_id: (row.label, _utc(row.labelled_at))
                for row in connection.execute(query)}

    @staticmethod
    def _stored_keys(connection: Connection, ids: list[str]) -> dict[str, dict[str, str]]:
        """The entity keys of the stored transactions among `ids`."""
        if not ids:
            return {}
        query = select(_DECISIONS.c.transaction_id, _DECISIONS.c.transaction_json).where(
            _DECISIONS.c.transaction_id.in_(set(ids)))
        keys = {}
        for row in connection.execute(query):
            if found := _event_keys(row.transaction_json):
                keys[row.transaction_id] = found
        return keys

    @staticmethod
    def _recorded(connection: Connection, ids: list[str],
                  labels: Sequence[LabelRecord]) -> set[tuple[str, datetime, int, str]]:
        """Keys of the entries a label with an explicit time could be a redelivery of."""
        times = {_utc(label.labelled_at) for label in labels if label.labelled_at is not None}
        if not times:
            return set()
        query = select(_HISTORY.c.transaction_id, _HISTORY.c.labelled_at, _HISTORY.c.label,
                       _HISTORY.c.source).where(_HISTORY.c.transaction_id.in_(ids),
                                                _HISTORY.c.labelled_at.in_(times))
        return {(row.transaction_id, _utc(row.labelled_at), row.label, row.source)
                for row in connection.execute(query)}


def _event_keys(transaction_json: str) -> dict[str, str | None]:
    """The entity keys of a stored event ({} when it cannot be read: they stay unknown)."""
    try:
        event = json.loads(transaction_json)
    except ValueError:
        return {}
    return {name: event.get(name) for name in ENTITY_KEYS} if isinstance(event, dict) else {}


def _carried_keys(label: LabelRecord) -> dict[str, str | None]:
    """The entity keys a label carries ({} when none)."""
    keys = {name: getattr(label, name) for name in ENTITY_KEYS}
    return keys if any(keys.values()) else {}


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)
