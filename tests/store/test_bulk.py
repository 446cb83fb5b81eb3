"""PostgreSQL: the consumer's batches go through binary COPY and a staging table
(`fraudops.store.bulk`); what they store is what the executemany path stores (the repository
tests run on both backends), and here: that COPY is the path taken, that a rolled-back batch
leaves nothing staged, and that an upsert holding a key twice takes executemany's path."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from test_store_repository import decision, notification, state_checkpoint

from fraudops.store import BatchWrite, Store, bulk
from fraudops.store.bulk import StagedCopy

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_store(postgres_url: str):
    store = Store.from_url(postgres_url)
    yield store
    store.close()


@pytest.fixture
def copies(monkeypatch) -> list[str]:
    """The tables written through COPY, in order (every batch: the row threshold lowered)."""
    monkeypatch.setattr(bulk, "COPY_MIN_ROWS", 1)
    written: list[str] = []
    original = StagedCopy.write

    def spy(self, connection, rows):
        written.append(self._stage.strip('"').removeprefix("fraudops_stage_"))
        return original(self, connection, rows)

    monkeypatch.setattr(StagedCopy, "write", spy)
    return written


def staged(store: Store) -> int:
    """Rows left in the staging tables of every pooled connection's session (temporary tables
    are per session: counted through each of the pool's connections in turn)."""
    with store.engine.connect() as connection:
        tables = connection.execute(text(
            "SELECT relname FROM pg_class WHERE relname LIKE 'fraudops_stage_%' "
            "AND relpersistence = 't' AND pg_table_is_visible(oid)")).scalars().all()
        return sum(connection.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()
                   for t in tables)


def test_batches_go_through_copy_and_leave_nothing_staged(pg_store: Store, copies) -> None:
    batch = BatchWrite(decisions=[decision("t1"), decision("t2", "review")],
                       notifications=[notification("t2")])
    pg_store.write_batch(batch)
    pg_store.write_batch(batch)  # replayed: ON CONFLICT through the staging table
    assert copies == ["decisions", "alerts", "notifications"] * 2
    assert pg_store.counts() == {"decisions": 2, "alerts": 1, "notifications": 1, "labels": 0}
    assert staged(pg_store) == 0


def test_a_rolled_back_batch_leaves_no_row_and_nothing_staged(pg_store: Store, copies) -> None:
    def refused() -> None:
        raise RuntimeError("records not acknowledged")

    with pytest.raises(RuntimeError):
        pg_store.write_batch(BatchWrite(decisions=[decision("t1", "block")]),
                             before_commit=refused)
    assert copies  # it was staged, then rolled back
    assert pg_store.counts()["decisions"] == 0 and staged(pg_store) == 0
    pg_store.write_batch(BatchWrite(decisions=[decision("t1", "block")]))  # the same again
    assert pg_store.counts() == {"decisions": 1, "alerts": 1, "notifications": 0, "labels": 0}


def test_state_upserts_through_copy_and_a_repeated_key_through_executemany(
        pg_store: Store, copies) -> None:
    acc = ("account", "acc-1")
    pg_store.write_batch(BatchWrite(checkpoints=[state_checkpoint(10, None, {acc: b"a1"})]))
    pg_store.write_batch(BatchWrite(checkpoints=[state_checkpoint(20, 10, {acc: b"a2"})]))
    assert copies == ["stream_state"] * 2
    assert pg_store.load_state("g", "tx", 0) == [("account", "acc-1", b"a2")]
    # One INSERT ... SELECT may not update a row twice: rows holding a key twice go through
    # executemany, where the last one wins.
    rows = [("g", "tx", 0, "account", "acc-1", b"a3"), ("g", "tx", 0, "account", "acc-1", b"a4")]
    with pg_store.engine.begin() as connection:
        pg_store._state_rows.execute(connection, rows)
    assert copies == ["stream_state"] * 2
    assert pg_store.load_state("g", "tx", 0) == [("account", "acc-1", b"a4")]


def test_a_few_rows_go_through_executemany_and_many_through_copy(pg_store: Store, copies,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(bulk, "COPY_MIN_ROWS", 3)
    pg_store.write_batch(BatchWrite(decisions=[decision("t1"), decision("t2")]))
    assert copies == []
    pg_store.write_batch(BatchWrite(decisions=[decision(f"u{i}") for i in range(3)]))
    assert copies == ["decisions"]
    assert pg_store.counts()["decisions"] == 5 and staged(pg_store) == 0
