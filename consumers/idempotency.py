"""Idempotency by transaction id: a transaction is decided once, however often it is delivered.

The consumer judges every transaction it has not seen from this very record against two
sources of truth:

* the store (`Store.decided`): every decision made durable, by any life of any consumer, with
  the record it was decided from. One query per poll for the poll's ids, not one per message.
* `PendingTransactions`: what this process applied to its state and queued for scoring but has
  not yet made durable (the batch being built and the batches in flight). An entry leaves when
  its batch is written (the store answers from then on) or dropped (the partition is then
  re-synchronised, and the record will be read again).

A transaction id already decided (or pending) with the same content is a redelivery: it is not
applied to the state nor scored again, and its decision is published again exactly as it was
(byte for byte), so `fraud-decisions` never holds two different decisions for one id. The same
id with another content is a conflicting duplicate and goes to the dead-letter topic.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from pydantic import ValidationError

from consumers.messages import Incoming, Outgoing
from fraudops.schema import Transaction
from fraudops.store import DecisionRecord


@dataclass(eq=False, slots=True)
class Pending:
    """A transaction applied to the state and queued for scoring, not yet durable."""

    transaction: Transaction
    payload: bytes
    partition: int
    #: Its `fraud-decisions` record, once the scoring thread decided it.
    message: Outgoing | None = None


class PendingTransactions:
    """Transactions of this process not yet durable, by id. Thread-safe: the polling thread
    adds and drops, the writing thread forgets what it made durable."""

    def __init__(self) -> None:
        self._entries: dict[str, Pending] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, transaction_id: str) -> Pending | None:
        return self._entries.get(transaction_id)

    def snapshot(self, transaction_ids: Iterable[str]) -> dict[str, Pending]:
        """The entries of these ids now (an entry forgotten later stays valid in the copy)."""
        with self._lock:
            return {i: self._entries[i] for i in transaction_ids if i in self._entries}

    def add(self, transaction_id: str, entry: Pending) -> None:
        with self._lock:
            self._entries[transaction_id] = entry

    def forget(self, transaction_ids: Iterable[str]) -> None:
        """These ids are durable in the store now (it answers for them), or their records were
        dropped and will be read again."""
        with self._lock:
            for transaction_id in transaction_ids:
                self._entries.pop(transaction_id, None)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the entries of partitions whose unwritten records will be read again."""
        partitions = set(partitions)
        with self._lock:
            self._entries = {i: e for i, e in self._entries.items()
                             if e.partition not in partitions}


class Verdict(Enum):
    """What to do with a transaction, given what is decided or pending."""

    NEW = "new"
    #: Decided (or pending) with the same content: publish its decision again, nothing else.
    REDELIVERY = "redelivery"
    #: The very record a stored decision came from, read again outside the replay range (a
    #: lost checkpoint, a new consumer group): apply it to the state and publish it again.
    REREAD = "reread"
    CONFLICTING = "conflicting"


@dataclass
class Known:
    """What the store and the pending map say about one poll's transaction ids."""

    stored: dict[str, DecisionRecord] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)

    def __contains__(self, transaction_id: str) -> bool:
        return transaction_id in self.stored or transaction_id in self.pending


def judge(tx: Transaction, record: Incoming, pending: Pending | None,
          stored: DecisionRecord | None) -> Verdict:
    """The verdict on `tx` (read from `record`) outside the replay range."""
    if pending is not None:
        same = _same(tx, record.value, pending.transaction, pending.payload)
        return Verdict.REDELIVERY if same else Verdict.CONFLICTING
    if stored is None:
        return Verdict.NEW
    if is_source(stored, record):
        return Verdict.REREAD
    same = _same(tx, record.value, None, stored.transaction_json.encode())
    return Verdict.REDELIVERY if same else Verdict.CONFLICTING


def is_source(stored: DecisionRecord, record: Incoming) -> bool:
    """Whether `stored` was decided from `record` itself."""
    source = stored.source
    return (source is not None and source.offset == record.offset
            and source.partition == record.partition and source.topic == record.topic)


def _same(tx: Transaction, payload: bytes, other: Transaction | None, other_payload: bytes) -> bool:
    """Same content: the same bytes, or bytes that validate to an equal transaction (field
    order, spacing, time zone or defaults may differ)."""
    if payload == other_payload:
        return True
    if other is None:
        try:
            other = Transaction.model_validate_json(other_payload)
        except ValidationError:
            return False
    return tx == other
