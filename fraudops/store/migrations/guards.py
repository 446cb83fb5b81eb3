"""Schema operations for migrations that skip what a database already holds.

Before migrations, `Store.create_schema` created missing tables (``create_all``) and added a
few columns and indexes by hand. A database from then has no version table and may hold any
part of what the first release's migrations (0001-0004) create, each part exactly as they
create it: those migrations use these operations, so upgrading such a database from the start
adds only what it lacks. Later migrations use plain ``op`` calls (every database they meet has
a version).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op


def create_table(name: str, *elements: Any, **options: Any) -> None:
    """``op.create_table`` unless the table exists."""
    if not sa.inspect(op.get_bind()).has_table(name):
        op.create_table(name, *elements, **options)


def create_index(name: str, table: str, columns: list[str], *, unique: bool = False) -> None:
    """``op.create_index`` unless the table has an index of that name."""
    if name not in {index["name"] for index in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns, unique=unique)


def add_column(table: str, column: sa.Column) -> None:
    """``op.add_column`` unless the table has a column of that name."""
    if column.name not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}:
        op.add_column(table, column)
