"""Label history entries hold the judged transaction's account, merchant and device (what
``/v1/score`` finds an entity's recent verdicts by), indexed with ``labelled_at``; existing
entries get their stored transaction's keys ("" where it is not stored).

Revision ID: 0003_label_entity_keys
Revises: 0002_rules
Create Date: 2026-12-06
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from fraudops.store.migrations import guards

revision = "0003_label_entity_keys"
down_revision = "0002_rules"
branch_labels = None
depends_on = None

ENTITIES = ("account", "merchant", "device")


def upgrade() -> None:
    for entity in ENTITIES:
        guards.add_column("label_history", sa.Column(f"{entity}_id", sa.String(length=128),
                                                     nullable=False, server_default=""))
        guards.create_index(f"ix_label_history_{entity}", "label_history",
                            [f"{entity}_id", "labelled_at"])
    _fill_keys()


def _fill_keys() -> None:
    """Entries without keys get their transaction's, read from the stored event."""
    history = sa.table("label_history", sa.column("id"), sa.column("transaction_id"),
                       *(sa.column(f"{entity}_id") for entity in ENTITIES))
    decisions = sa.table("decisions", sa.column("transaction_id"),
                         sa.column("transaction_json"))
    unknown = sa.and_(*(history.c[f"{entity}_id"] == "" for entity in ENTITIES))
    bind = op.get_bind()
    rows = bind.execute(sa.select(history.c.id, decisions.c.transaction_json)
                        .join(decisions, decisions.c.transaction_id == history.c.transaction_id)
                        .where(unknown)).all()
    for entry_id, transaction_json in rows:
        try:
            event = json.loads(transaction_json)
        except ValueError:
            continue
        if isinstance(event, dict):
            keys = {f"{e}_id": str(event.get(f"{e}_id") or "") for e in ENTITIES}
            bind.execute(sa.update(history).where(history.c.id == entry_id).values(keys))


def downgrade() -> None:
    with op.batch_alter_table("label_history") as batch:
        for entity in ENTITIES:
            batch.drop_index(f"ix_label_history_{entity}")
            batch.drop_column(f"{entity}_id")
