"""The store as released before migrations (decisions, sources, alerts and their queue
indexes, the notification outbox, labels and their history, stream checkpoints and state).

Revision ID: 0001_initial
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fraudops.store.migrations import guards

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(length=128)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    _decisions()
    _alerts()
    _notifications()
    _labels()
    _stream()


def _decisions() -> None:
    guards.create_table(
        "decisions",
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("event_time", TIME, nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("fraud_probability", sa.Float(), nullable=False),
        sa.Column("anomaly_score", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason_codes", sa.Text(), nullable=False),
        sa.Column("model_version", sa.String(length=256), nullable=False),
        sa.Column("transaction_json", sa.Text(), nullable=False),
        sa.Column("scored_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("transaction_id"))
    for column in ("account_id", "decision", "event_time"):
        guards.create_index(f"ix_decisions_{column}", "decisions", [column])
    guards.create_table(
        "decision_sources",
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("record_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id"),
        sqlite_with_rowid=False)


def _alerts() -> None:
    guards.create_table(
        "alerts",
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("event_time", TIME, nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("fraud_probability", sa.Float(), nullable=False),
        sa.Column("anomaly_score", sa.Float(), nullable=False),
        sa.Column("reason_codes", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("transaction_id"))
    for column in ("account_id", "created_at", "status"):
        guards.create_index(f"ix_alerts_{column}", "alerts", [column])
    guards.create_index("ix_alerts_queue", "alerts",
                        ["status", "fraud_probability", "transaction_id"])
    guards.create_index("ix_alerts_risk", "alerts", ["fraud_probability", "transaction_id"])


def _notifications() -> None:
    guards.create_table(
        "notifications",
        sa.Column("dedupe_key", sa.String(length=256), nullable=False),
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("event_time", TIME, nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("sent_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("dedupe_key"))
    guards.create_index("ix_notifications_account_time", "notifications",
                        ["account_id", "event_time"])
    guards.create_index("ix_notifications_status", "notifications", ["status"])
    guards.create_index("ix_notifications_transaction_id", "notifications", ["transaction_id"])


def _labels() -> None:
    guards.create_table(
        "labels",
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("analyst", ID, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("labelled_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("transaction_id"))
    guards.create_table(
        "label_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("previous_label", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("analyst", ID, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("labelled_at", TIME, nullable=False),
        sa.Column("recorded_at", TIME, nullable=False),
        sa.Column("published_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"))
    guards.create_index("ux_label_history_event", "label_history",
                        ["transaction_id", "labelled_at", "label", "source"], unique=True)


def _stream() -> None:
    guards.create_table(
        "stream_checkpoints",
        sa.Column("group_id", sa.String(length=255), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_offset", sa.BigInteger(), nullable=True),
        sa.Column("snapshot", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("group_id", "topic", "partition"))
    guards.create_table(
        "stream_state",
        sa.Column("group_id", sa.String(length=255), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("entity", ID, nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "topic", "partition", "kind", "entity"))


def downgrade() -> None:
    for table in ("stream_state", "stream_checkpoints", "label_history", "labels",
                  "notifications", "alerts", "decision_sources", "decisions"):
        op.drop_table(table)
