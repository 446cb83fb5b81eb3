"""Tables of the decision store (SQLAlchemy 2 declarative models).

Every table is keyed by the transaction id (or a key derived from it), so that writing the same
event twice is a no-op: the consumer reprocesses events after a crash (at-least-once delivery)
and must never duplicate a decision, an alert or a notification.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ID_LENGTH = 128


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC times")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class AlertStatus(StrEnum):
    """Where an analyst stands with an alert."""

    OPEN = "open"
    CONFIRMED_FRAUD = "confirmed_fraud"
    DISMISSED = "dismissed"


class NotificationStatus(StrEnum):
    """Outbox states: written as PENDING with the alert, then SENT or FAILED by the notifier."""

    PENDING = "pending"
    SENT = "sent"
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"


class Decision(Base):
    """Every scored transaction with its scores and the raw event (for drift and retraining)."""

    __tablename__ = "decisions"

    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    event_time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    amount: Mapped[float] = mapped_column(Float)
    fraud_probability: Mapped[float] = mapped_column(Float)
    anomaly_score: Mapped[float] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16), index=True)
    reason_codes: Mapped[str] = mapped_column(Text, default="")
    model_version: Mapped[str] = mapped_column(String(256), default="")
    transaction_json: Mapped[str] = mapped_column(Text)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: Ids of the rules that fired, comma-separated in rule-set order ("" for none), and the
    #: rule set in force ("" when none was): see `fraudops.rules` (migration 0002).
    rules_fired: Mapped[str] = mapped_column(Text, default="", server_default="")
    rule_set_version: Mapped[str] = mapped_column(String(64), default="", server_default="")


class DecisionSource(Base):
    """The Kafka record a decision was taken from (one row per decision a consumer wrote).

    A table of its own rather than columns of `decisions` (it was added before the schema had
    migrations, when only missing tables were created). A restarted
    consumer replays the records since its snapshot: it applies to its state the record a
    decision came from and not a redelivery of the same transaction id from another offset.
    """

    __tablename__ = "decision_sources"
    # SQLite: one b-tree keyed by the id, not a rowid table plus an index on the id (the
    # consumer writes a row per decision; a 500-row batch took ~2 ms more, against ~6 ms).
    __table_args__: ClassVar[dict] = {"sqlite_with_rowid": False}

    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    record_offset: Mapped[int] = mapped_column(BigInteger)


class Alert(Base):
    """A transaction decided `review` or `block`: the analysts' work queue."""

    __tablename__ = "alerts"
    # The console's queue: riskiest first, keyset-paginated on (probability, id), open alerts
    # by default (`fraudops.store.queue`).
    __table_args__ = (Index("ix_alerts_queue", "status", "fraud_probability", "transaction_id"),
                      Index("ix_alerts_risk", "fraud_probability", "transaction_id"))

    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    event_time: Mapped[datetime] = mapped_column(UTCDateTime())
    amount: Mapped[float] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16))
    fraud_probability: Mapped[float] = mapped_column(Float)
    anomaly_score: Mapped[float] = mapped_column(Float)
    reason_codes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default=AlertStatus.OPEN.value, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: Ids of the rules that fired, comma-separated in rule-set order ("" for none), and the
    #: rule set in force ("" when none was): see `fraudops.rules` (migration 0002).
    rules_fired: Mapped[str] = mapped_column(Text, default="", server_default="")
    rule_set_version: Mapped[str] = mapped_column(String(64), default="", server_default="")


class Notification(Base):
    """Outbox of notifications; `dedupe_key` (channel + transaction id) makes it idempotent.
    A dispatcher claims pending rows for a lease before sending them (`claimed_*`)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_account_time", "account_id", "event_time"),)

    dedupe_key: Mapped[str] = mapped_column(String(2 * ID_LENGTH), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    account_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    channel: Mapped[str] = mapped_column(String(32))
    event_time: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(32), default=NotificationStatus.PENDING.value,
                                        index=True)
    payload: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The dispatcher sending it, and until when the row is its own (`Store.claim_notifications`;
    #: migration 0004): until then no other dispatcher takes it; after, any may (its sender
    #: died). Cleared when the row is marked.
    claimed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Label(Base):
    """The current verdict of a transaction (1 = fraud, 0 = legitimate): its latest
    `LabelEvent`, written with it; what retraining, the drift job and the console read."""

    __tablename__ = "labels"

    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    label: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64), default="analyst")
    analyst: Mapped[str | None] = mapped_column(String(ID_LENGTH), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    labelled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LabelOutcome(StrEnum):
    """What a recorded label did to the transaction's current verdict."""

    NEW = "new"  # the first verdict
    UNCHANGED = "unchanged"  # a repeat of the current verdict
    CHANGED = "changed"  # contradicts the current verdict (a conflict), and replaces it
    LATE = "late"  # known before the current verdict: recorded, the current one stands


class LabelEvent(Base):
    """One entry of the append-only label history (`label_history`): who said what, when.

    Every label from every source (the gateway, the `labels` topic, imports) is appended here;
    entries are never updated except `published_at`. The current verdict of a transaction is
    its latest entry by `labelled_at` (then `id`), kept in `labels` by the same transaction of
    the database (`Label`). The unique index makes a redelivered label (same transaction, time,
    verdict and source) a no-op.
    """

    __tablename__ = "label_history"
    __table_args__ = (Index("ux_label_history_event", "transaction_id", "labelled_at", "label",
                            "source", unique=True),
                      *(Index(f"ix_label_history_{entity}", f"{entity}_id", "labelled_at")
                        for entity in ("account", "merchant", "device")))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"),
                                    primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    label: Mapped[int] = mapped_column(Integer)
    #: The current verdict when this entry was recorded (None: there was none).
    previous_label: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: A `LabelOutcome` value.
    outcome: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    #: Who gave it: the gateway's authenticated principal, or what the topic's producer said.
    analyst: Mapped[str | None] = mapped_column(String(ID_LENGTH), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: When the verdict became known (the label's own time; never later than `recorded_at`).
    labelled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: When the verdict was produced to the `labels` topic (None: not by this entry).
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The judged transaction's entity keys ("" unknown): those the label carried, else the
    #: stored transaction's when the label was recorded. What `/v1/score` finds an account's,
    #: a merchant's or a device's recent verdicts by (`LabelLog.entity_labels`; migration
    #: 0003).
    account_id: Mapped[str] = mapped_column(String(ID_LENGTH), default="", server_default="")
    merchant_id: Mapped[str] = mapped_column(String(ID_LENGTH), default="", server_default="")
    device_id: Mapped[str] = mapped_column(String(ID_LENGTH), default="", server_default="")


class StreamCheckpoint(Base):
    """Per-partition position of a stream processor and its state snapshot.

    `next_offset` is the first offset not yet processed (written with the decisions of the batch
    that reached it, in the same transaction). The partition's feature state as it was just
    before `snapshot_offset` is `snapshot` (its header: format, feature spec) plus the partition's
    `StreamStateEntry` rows.
    """

    __tablename__ = "stream_checkpoints"

    group_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    snapshot_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    snapshot: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StreamStateEntry(Base):
    """One entry of a partition's feature state (an account's history, a merchant's velocity
    windows...), as of its checkpoint's `snapshot_offset`.

    A snapshot rewrites only the entries that changed since the previous one, in the checkpoint's
    transaction, so its cost follows the recent traffic rather than the number of accounts.
    """

    __tablename__ = "stream_state"

    group_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class RuleList(Base):
    """A deny or allow list (`fraudops.rules`): its kind fixes what its entries are.

    `revision` grows by one with every change of its entries, in the change's transaction:
    running consumers poll the revisions (one small query) and reload a list that moved.
    """

    __tablename__ = "rule_lists"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RuleListEntry(Base):
    """One entry of a list (a normalised account, merchant, device id or country code)."""

    __tablename__ = "rule_list_entries"

    list_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    added_by: Mapped[str | None] = mapped_column(String(ID_LENGTH), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

