"""Schema migrations (`fraudops.store.migrate`): a store made by the release before migrations
upgrades to this one with its rows kept, a migrated database equals the models (so changing a
model without a migration fails here), and the units refuse a database not at head."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from fraudops.cli import app
from fraudops.store import (
    BatchWrite,
    DecisionRecord,
    SchemaNotCurrentError,
    Store,
    create_store_engine,
    migrate,
)
from fraudops.store.models import Base, UTCDateTime

PREVIOUS_RELEASE = Path(__file__).with_name("previous_release")
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (a fresh PostgreSQL database per test, or a SQLite file)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(empty_url: str) -> Iterator[sa.Engine]:
    engine = create_store_engine(empty_url)
    yield engine
    engine.dispose()


def _previous_release(engine: sa.Engine) -> None:
    """The tables as the release before migrations created them (its exact DDL), with rows."""
    lines = (PREVIOUS_RELEASE / f"{engine.dialect.name}.sql").read_text().splitlines()
    ddl = "\n".join(line for line in lines if not line.startswith("--"))
    statements = [statement for statement in ddl.split(";\n") if statement.strip()]
    event = {"transaction_id": "tx-1", "account_id": "acc-1", "merchant_id": "m-1",
             "device_id": "d-1", "amount": 900.0}
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
        _insert(connection, "decisions", transaction_id="tx-1", account_id="acc-1",
                event_time=T0, amount=900.0, fraud_probability=0.97, anomaly_score=3.0,
                decision="block", reason_codes="amount_log", model_version="3/2",
                transaction_json=json.dumps(event), scored_at=T0)
        _insert(connection, "decision_sources", transaction_id="tx-1", topic="transactions",
                partition=2, record_offset=41)
        _insert(connection, "alerts", transaction_id="tx-1", account_id="acc-1", event_time=T0,
                amount=900.0, decision="block", fraud_probability=0.97, anomaly_score=3.0,
                reason_codes="amount_log", status="open", created_at=T0, updated_at=T0)
        _insert(connection, "notifications", dedupe_key="email:tx-1", transaction_id="tx-1",
                account_id="acc-1", channel="email", event_time=T0, status="pending",
                payload="{}", attempts=1, last_error="SMTP down", created_at=T0)
        _insert(connection, "labels", transaction_id="tx-1", label=1, source="analyst",
                analyst="ana", labelled_at=T0 + timedelta(hours=1))
        for tx in ("tx-1", "tx-unknown"):  # the second one's transaction is not stored
            _insert(connection, "label_history", transaction_id=tx, label=1, outcome="new",
                    source="analyst", analyst="ana", labelled_at=T0 + timedelta(hours=1),
                    recorded_at=T0 + timedelta(hours=1))
        _insert(connection, "stream_checkpoints", group_id="g", topic="transactions",
                partition=2, next_offset=42, snapshot_offset=40, snapshot=b"header",
                updated_at=T0)
        _insert(connection, "stream_state", group_id="g", topic="transactions", partition=2,
                kind="account", entity="acc-1", value=b"state")


def _insert(connection: sa.Connection, table: str, **values: object) -> None:
    columns = [sa.column(name, UTCDateTime() if isinstance(value, datetime) else None)
               for name, value in values.items()]
    connection.execute(sa.table(table, *columns).insert().values(**values))


def _schema_diff(engine: sa.Engine) -> list:
    """What autogenerate would change to make the database equal the models ([] when equal)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "version_table": migrate.VERSION_TABLE})
        return compare_metadata(context, Base.metadata)


def _cli(url: str, *args: str):
    return CliRunner().invoke(app, ["db", *args], env={"FRAUDOPS_DATABASE__URL": url})


def test_a_store_of_the_previous_release_upgrades_with_its_rows(engine: sa.Engine,
                                                                  empty_url: str) -> None:
    _previous_release(engine)
    assert migrate.current_revision(engine) is None
    result = _cli(empty_url, "upgrade")
    assert result.exit_code == 0, result.output
    assert f"upgraded from no version to {migrate.head_revision()}" in result.output
    assert _schema_diff(engine) == []
    assert "already at" in _cli(empty_url, "upgrade").output

    store = Store.open_current(empty_url)
    assert store.counts() == {"decisions": 1, "alerts": 1, "notifications": 1, "labels": 1}
    old = store.decided(["tx-1"])["tx-1"]
    assert (old.rules_fired, old.rule_set_version, old.model_version) == ("", "", "3/2")
    assert (old.source.partition, old.source.offset) == (2, 41)
    assert store.get_alert("tx-1").rules_fired == ""
    assert store.load_checkpoints("g", "transactions")[2].next_offset == 42
    assert store.load_state("g", "transactions", 2) == [("account", "acc-1", b"state")]
    labels, _ = store.entity_labels(since=T0, before=T0 + timedelta(days=1), merchants=["m-1"])
    assert [(x.transaction_id, x.account_id, x.device_id) for x in labels] == [
        ("tx-1", "acc-1", "d-1")]  # keys filled from the stored event; tx-unknown has none
    assert [e.transaction_id for e in store.label_history("tx-unknown")] == ["tx-unknown"]
    claimed = store.claim_notifications("me", lease=timedelta(seconds=30), limit=10)
    assert [(n.dedupe_key, n.attempts, n.last_error) for n in claimed] == [
        ("email:tx-1", 1, "SMTP down")]
    store.write_batch(BatchWrite(decisions=[DecisionRecord(
        "tx-2", "acc-1", T0, 5.0, 0.9, 0.1, "block", "{}", rules_fired="r1",
        rule_set_version="v7")]))
    assert store.get_alert("tx-2").rule_set_version == "v7"
    store.close()


def test_the_migrations_from_nothing_build_the_models_schema(engine: sa.Engine) -> None:
    """Replaying every migration on an empty database gives exactly the models' tables,
    columns, types and indexes: a model changed without a migration fails here."""
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "head")
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert _schema_diff(engine) == []


def test_an_empty_database_is_created_from_the_models_and_stamped(empty_url: str) -> None:
    store = Store.from_url(empty_url)
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    assert _schema_diff(store.engine) == []
    store.close()


def test_each_migration_runs_on_the_one_before(engine: sa.Engine) -> None:
    """Upgrade one revision at a time (what a store a release behind goes through)."""
    revisions = [script.revision for script in reversed(list(
        ScriptDirectory.from_config(migrate.alembic_config()).walk_revisions()))]
    assert revisions[0] == "0001_initial" and revisions[-1] == migrate.head_revision()
    for revision in revisions:
        with engine.begin() as connection:
            command.upgrade(migrate.alembic_config(connection), revision)
        assert migrate.current_revision(engine) == revision
    assert _schema_diff(engine) == []


def test_the_units_refuse_a_database_not_at_head(engine: sa.Engine, empty_url: str) -> None:
    with pytest.raises(SchemaNotCurrentError, match="no schema version.*`fraudops db upgrade`"):
        Store.open_current(empty_url)
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "0003_label_entity_keys")
    with pytest.raises(SchemaNotCurrentError, match=(
            f"revision 0003_label_entity_keys, this release needs {migrate.head_revision()}: "
            "run `fraudops db upgrade`")):
        Store.open_current(empty_url)
    current = _cli(empty_url, "current")
    assert current.exit_code == 1 and "at 0003_label_entity_keys" in current.output

    assert _cli(empty_url, "upgrade").exit_code == 0
    assert _cli(empty_url, "current").exit_code == 0
    Store.open_current(empty_url).close()

    with engine.begin() as connection:  # a newer release migrated it further
        connection.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '0099_x'"))
    with pytest.raises(SchemaNotCurrentError, match="0099_x, which this release does not know"):
        Store.open_current(empty_url)


def test_db_upgrade_says_why_it_cannot_reach_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'not-a-db'}"
    (tmp_path / "not-a-db").write_bytes(b"this is not a SQLite file" * 100)
    result = _cli(url, "upgrade")
    assert result.exit_code == 1
    assert "cannot upgrade the decision store" in result.output


def test_a_store_from_before_the_console_gains_the_queue_indexes(empty_url: str) -> None:
    """A store older than the previous release (no version, no queue indexes): the upgrade
    creates what it lacks (the console no longer adds them itself)."""
    store = Store.from_url(empty_url)
    with store.engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {migrate.VERSION_TABLE}"))
        for name in ("ix_alerts_queue", "ix_alerts_risk"):
            connection.execute(sa.text(f"DROP INDEX {name}"))
    store.create_schema()
    names = {index["name"] for index in sa.inspect(store.engine).get_indexes("alerts")}
    assert {"ix_alerts_queue", "ix_alerts_risk"} <= names
    assert _schema_diff(store.engine) == []
    store.close()


@pytest.mark.integration
def test_concurrent_upgrades_of_one_postgresql_database_queue(postgres_url: str) -> None:
    """Two pods upgrading at once (a hook Job and a unit's operator, two replicas): the advisory
    lock queues them; the second finds nothing to do."""
    engines = [create_store_engine(postgres_url) for _ in range(4)]
    start, results, errors = threading.Barrier(len(engines)), [], []

    def upgrade(engine: sa.Engine) -> None:
        start.wait()
        try:
            results.append(migrate.upgrade(engine))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=upgrade, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    head = migrate.head_revision()
    assert sorted(results, key=lambda r: r[0] or "") == (
        [(None, head)] + [(head, head)] * (len(engines) - 1))  # one did it, the others waited
    assert _schema_diff(engines[0]) == []
    for engine in engines:
        engine.dispose()
