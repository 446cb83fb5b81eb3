"""Schema versions of the store (Alembic): upgrade a database, and check that one is current.

The migrations live in `fraudops.store.migrations` (package data: they work from an installed
wheel and in the images). Alembic is configured here, in code: there is no alembic.ini, and the
database is whatever engine the caller opened from its settings (`fraudops db upgrade` opens
``FRAUDOPS_DATABASE__URL``, as the units do). The version is kept in `VERSION_TABLE`, not
Alembic's default ``alembic_version``, so that a database shared with MLflow (which versions its
own tables with Alembic) cannot mix the two.

The consumer and the gateway call `check_current` at startup and refuse a database whose
version is not this release's head (`SchemaNotCurrentError`, naming `UPGRADE_COMMAND`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from fraudops.store.exceptions import SchemaNotCurrentError
from fraudops.store.models import Base

VERSION_TABLE = "fraudops_alembic_version"
UPGRADE_COMMAND = "fraudops db upgrade"
_SCRIPTS = Path(__file__).with_name("migrations")
#: Key of the PostgreSQL advisory lock that serialises concurrent upgrades (two units or two
#: Helm hook pods starting together): any constant shared by every release.
_LOCK_KEY = 0x66726F64  # "frod"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the store's migrations, bound to `connection` (env.py
    runs on it; commands that only read the scripts need none)."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The revision this release's models are at (the newest migration)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the store has no migrations"
    return head


def current_revision(engine: Engine | Connection) -> str | None:
    """The database's revision (None: never migrated, no version table)."""
    if isinstance(engine, Connection):
        return _current(engine)
    with engine.connect() as connection:
        return _current(connection)


def check_current(engine: Engine) -> None:
    """Raise `SchemaNotCurrentError` unless the database is at this release's head revision
    (the message says what to run). Database errors (it is down) propagate as they are."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        state = "has no schema version (an empty database, or one from before migrations)"
    elif current in _known_revisions():
        state = f"is at schema revision {current}, this release needs {head}"
    else:
        raise SchemaNotCurrentError(
            f"the decision store {where} is at schema revision {current}, which this release "
            f"does not know (a newer release migrated it; at {head} here): run a release "
            "that knows it")
    raise SchemaNotCurrentError(f"the decision store {where} {state}: run "
                                f"`{UPGRADE_COMMAND}` (with the same FRAUDOPS_DATABASE__URL) "
                                "before starting the units")


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the head revision; returns (revision before, revision after).

    A database holding none of the store's tables is created from the models and stamped at
    head: one ``create_all`` instead of replaying every migration, so a test or a SQLite dev
    store opens fast; the models and the migrations cannot drift apart because
    tests/store/test_migrations.py compares a migrated database with the models. Any other
    database, with or without a version (a store from before migrations), is upgraded by
    the migrations. On PostgreSQL this runs in one transaction under an advisory lock, so
    concurrent upgrades queue and the later ones find nothing to do; SQLite has no such lock
    (run one upgrade at a time there, as the local platform does before starting the units).
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        before = _current(connection)
        config = alembic_config(connection)
        if before is None and not _holds_store_tables(connection):
            Base.metadata.create_all(connection)
            command.stamp(config, "head")
        elif before != head_revision():
            command.upgrade(config, "head")
        return before, head_revision()


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _holds_store_tables(connection: Connection) -> bool:
    return bool(set(inspect(connection).get_table_names()) & set(Base.metadata.tables))


@cache
def _known_revisions() -> frozenset[str]:
    scripts = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.revision for script in scripts.walk_revisions())
