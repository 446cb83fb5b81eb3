"""PostgreSQL: a batch's rows through binary COPY instead of the driver's executemany.

`executemany` adapts every parameter of every row in Python and sends a Bind/Execute per row:
for the consumer's decisions (13 columns) that measured 15-20 µs of the consumer's CPU and
27 µs of the server's per row, against 2.5-3.3 and 14-17 through binary COPY (500-row batches,
psycopg 3.3 with its C implementation, PostgreSQL 15, 2026-12-07; README, "Consumer"). COPY
has no ON CONFLICT, so the rows go into a temporary staging table of the session (created on
the connection's first use) and one statement moves them into the table under the insert's
own ON CONFLICT clause:

    WITH moved AS (DELETE FROM stage RETURNING cols) INSERT INTO table (cols)
    SELECT cols FROM moved ON CONFLICT ...

A COPY costs round trips of its own (creating the stage if need be, the COPY, the move) where
executemany pipelines its rows: below `COPY_MIN_ROWS` rows, the few-row batches of a lightly
loaded consumer, executemany stays the faster. All of it runs in the caller's transaction, so a rolled-back batch leaves neither rows nor
staged rows behind, and the DELETE leaves the stage empty for the next statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, text

#: Fewer rows than this go through executemany: at 1,000 tx/s (batches of 10-20 rows) the
#: COPY path's round trips raised the persist step from 7.2 to 11.2 ms per batch.
COPY_MIN_ROWS = 100


class StagedCopy:
    """Rows of `columns` (in that order) into `table` through COPY and a staging table, under
    `conflict` (the insert's compiled ``ON CONFLICT ...`` clause, or "")."""

    def __init__(self, table: Table, columns: Sequence[str], conflict: str, dialect: Any
                 ) -> None:
        quote = dialect.identifier_preparer.quote
        self._stage = quote(f"fraudops_stage_{table.name}")
        self._types: list[int] | None = None
        names = ", ".join(quote(c) for c in columns)
        self._columns = list(columns)
        self._create = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {self._stage} "
                        f"(LIKE {quote(table.name)})")
        self._copy = f"COPY {self._stage} ({names}) FROM STDIN (FORMAT BINARY)"
        self._move = (f"WITH moved AS (DELETE FROM {self._stage} RETURNING {names}) "
                      f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} FROM moved"
                      f"{conflict}")

    def write(self, connection: Connection, rows: Sequence[tuple]) -> None:
        """Insert `rows` (tuples in the columns' order) in the connection's transaction."""
        # Created (if need be) in every transaction that uses it, not once per connection: a
        # rolled-back transaction takes its CREATE with it, and behind a pooler in transaction
        # mode (PgBouncer) each transaction may be another server session.
        connection.exec_driver_sql(self._create)
        if self._types is None:  # the columns' type oids (the same in every session)
            found = dict(connection.execute(text(
                "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = "
                "CAST(:stage AS regclass) AND attnum > 0 AND NOT attisdropped"),
                {"stage": self._stage}).all())
            self._types = [found[c] for c in self._columns]
        cursor: Any = connection.connection.driver_connection.cursor()
        try:
            with cursor.copy(self._copy) as copy:
                copy.set_types(self._types)
                for row in rows:
                    copy.write_row(row)
            cursor.execute(self._move)
        finally:
            cursor.close()
