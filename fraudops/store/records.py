"""Plain records the writers hand to the store (no ORM state, cheap to build in a hot loop)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from fraudops.schema import ALERT_DECISIONS, TransactionLabel


@dataclass(frozen=True)
class RecordSource:
    """Where a decided transaction was read: the Kafka record (topic, partition, offset)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DecisionRecord:
    """One scored transaction. `transaction_json` is the event as received (for drift/retraining).

    `scored_at` is when it was decided (None: when it is written); `source` is the record it
    was decided from (a stream processor's; None for other writers), stored beside it so that a
    restarted consumer can tell that record from a redelivery of the same transaction id.
    """

    transaction_id: str
    account_id: str
    event_time: datetime
    amount: float
    fraud_probability: float
    anomaly_score: float
    decision: str
    transaction_json: str
    reason_codes: str = ""
    model_version: str = ""
    scored_at: datetime | None = None
    source: RecordSource | None = None
    #: Rule ids that fired, comma-separated ("" none) and the rule set in force ("" none).
    rules_fired: str = ""
    rule_set_version: str = ""

    @property
    def is_alert(self) -> bool:
        return self.decision in ALERT_DECISIONS


@dataclass(frozen=True)
class NotificationRecord:
    """An outbox entry; `dedupe_key` is unique per channel and transaction."""

    dedupe_key: str
    transaction_id: str
    account_id: str
    channel: str
    event_time: datetime
    payload: str
    status: str = "pending"


@dataclass(frozen=True)
class LabelRecord:
    """A verdict on one transaction (1 = fraud, 0 = legitimate), as the store records it: the
    store's plain form of a `fraudops.schema.TransactionLabel` (`from_label`).

    `labelled_at` is when it became known (timezone-aware; None: when it is stored); a label
    delivered again with the same time, verdict and source is recorded once.
    """

    transaction_id: str
    label: int
    source: str = "analyst"
    analyst: str | None = None
    note: str | None = None
    labelled_at: datetime | None = None
    #: The judged transaction's keys when the label carries them (None: the store looks them
    #: up in the stored transaction).
    account_id: str | None = None
    merchant_id: str | None = None
    device_id: str | None = None

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {self.label!r}")
        if self.labelled_at is not None and self.labelled_at.tzinfo is None:
            raise ValueError("labelled_at must be timezone-aware")

    @classmethod
    def from_label(cls, label: TransactionLabel) -> LabelRecord:
        """The record of a validated label, with the entity keys it carries."""
        return cls(transaction_id=label.transaction_id, label=label.label,
                   source=label.source.value, analyst=label.analyst, note=label.note,
                   labelled_at=label.labelled_at, account_id=label.account_id,
                   merchant_id=label.merchant_id, device_id=label.device_id)


@dataclass(frozen=True)
class LabelEntry:
    """One entry of a transaction's label history (see `fraudops.store.models.LabelEvent`)."""

    id: int
    transaction_id: str
    label: int
    previous_label: int | None
    outcome: str
    source: str
    analyst: str | None
    note: str | None
    labelled_at: datetime
    recorded_at: datetime
    published_at: datetime | None


@dataclass(frozen=True)
class CheckpointRecord:
    """Position of one partition, with a snapshot of its feature state when one was taken:
    `snapshot` (the state's header) at `snapshot_offset`, and `state`, the entries changed since
    the previous snapshot ((kind, entity) -> bytes), all of them after `replace_state`.

    `expected_offset` fences concurrent writers: the write only succeeds if the stored
    ``next_offset`` still equals it (None: no row may exist yet), else `StaleCheckpointError`.
    """

    group_id: str
    topic: str
    partition: int
    next_offset: int
    snapshot_offset: int | None = None
    snapshot: bytes | None = None
    expected_offset: int | None = None
    state: Mapping[tuple[str, str], bytes] = field(default_factory=dict)
    #: The partition's stored entries go first (a state that started anew).
    replace_state: bool = False


@dataclass
class BatchWrite:
    """Everything one processed batch makes durable, in one database transaction."""

    decisions: list[DecisionRecord] = field(default_factory=list)
    notifications: list[NotificationRecord] = field(default_factory=list)
    labels: list[LabelRecord] = field(default_factory=list)
    checkpoints: list[CheckpointRecord] = field(default_factory=list)


@dataclass(frozen=True)
class LabelledTransaction:
    """A stored transaction joined with its analyst label (a retraining row)."""

    transaction_id: str
    transaction_json: str
    label: int
    label_source: str
    labelled_at: datetime
    decision: str
    fraud_probability: float
    anomaly_score: float
