"""Rules beside the model (issue 17): the rules that fired and the rule set in force on
decisions and alerts (old rows: none), the deny and allow lists.

Revision ID: 0002_rules
Revises: 0001_initial
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fraudops.store.migrations import guards

revision = "0002_rules"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    for table in ("decisions", "alerts"):
        guards.add_column(table, sa.Column("rules_fired", sa.Text(), nullable=False,
                                           server_default=""))
        guards.add_column(table, sa.Column("rule_set_version", sa.String(length=64),
                                           nullable=False, server_default=""))
    guards.create_table(
        "rule_lists",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name"))
    guards.create_table(
        "rule_list_entries",
        sa.Column("list_name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("added_by", sa.String(length=128), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("added_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("list_name", "value"))


def downgrade() -> None:
    op.drop_table("rule_list_entries")
    op.drop_table("rule_lists")
    for table in ("alerts", "decisions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("rule_set_version")
            batch.drop_column("rules_fired")
