"""Alembic environment of the store: configured in code by `fraudops.store.migrate`, which
passes an open connection (``config.attributes["connection"]``); there is no alembic.ini and no
URL here. Offline (SQL script) mode is not supported."""

from __future__ import annotations

from alembic import context

from fraudops.store.migrate import VERSION_TABLE
from fraudops.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError("run the store's migrations through `fraudops db upgrade` "
                       "(fraudops.store.migrate), which gives them a connection")
context.configure(
    connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
    # SQLite alters most things only by copying the table: autogenerate renders batch ops.
    render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
