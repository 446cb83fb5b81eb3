"""Notification outbox claims: a dispatcher claims pending rows for a lease
(``claimed_by``, ``claimed_until``) before sending them, so two consumers never send the same
row at the same time, and a crashed one's rows are picked up once its lease has run out.

Revision ID: 0004_outbox_claim
Revises: 0003_label_entity_keys
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fraudops.store.migrations import guards

revision = "0004_outbox_claim"
down_revision = "0003_label_entity_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    guards.add_column("notifications", sa.Column("claimed_by", sa.String(length=255),
                                                 nullable=True))
    guards.add_column("notifications", sa.Column("claimed_until", sa.DateTime(timezone=True),
                                                 nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
