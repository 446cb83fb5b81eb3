"""`fraudops db ...`: the decision store's schema version (`fraudops.store.migrate`).

The database is the one every unit uses: ``FRAUDOPS_DATABASE__URL`` (SQLite under
``FRAUDOPS_HOME`` when empty). The chart runs `fraudops db upgrade` as a Helm hook Job before
the units start; the local platform runs it before starting the consumer and the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from fraudops.settings import CommonSettings, DatabaseSettings, settings_config


class DbSettings(CommonSettings):
    """What `fraudops db` reads: the store's URL, as the consumer and the gateway read it."""

    model_config = settings_config()

    database: DatabaseSettings = DatabaseSettings()


if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer(help="The decision store's schema: upgrade it, show its version.",
                  no_args_is_help=True)


def _engine() -> Engine:
    from fraudops.store import create_store_engine  # sqlalchemy comes with the units' extras

    settings = DbSettings()
    return create_store_engine(settings.database.resolved_url(settings.home))


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@app.command("upgrade")
def upgrade() -> None:
    """Migrate the store to this release's schema (creates it in an empty database)."""
    from sqlalchemy.exc import SQLAlchemyError

    from fraudops.store import StoreError, migrate

    engine = _engine()
    try:
        before, after = migrate.upgrade(engine)
    except (SQLAlchemyError, StoreError) as error:
        typer.echo(f"cannot upgrade the decision store {_where(engine)}: {error}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    state = "already at" if before == after else f"upgraded from {before or 'no version'} to"
    typer.echo(f"decision store {_where(engine)}: {state} {after}")


@app.command("current")
def current() -> None:
    """Print the store's schema revision and this release's; exits 1 unless they match."""
    from sqlalchemy.exc import SQLAlchemyError

    from fraudops.store import migrate

    engine = _engine()
    try:
        revision = migrate.current_revision(engine)
    except SQLAlchemyError as error:
        typer.echo(f"cannot read the decision store {_where(engine)}: {error}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    head = migrate.head_revision()
    typer.echo(f"decision store {_where(engine)}: at {revision or 'no version'}; "
               f"this release: {head}")
    if revision != head:
        raise typer.Exit(1)
