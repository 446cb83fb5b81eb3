"""The store under test: SQLite (a file in a folder the store creates) and PostgreSQL."""

from __future__ import annotations

import pytest

from fraudops.store import Store
from fraudops.store.models import Base


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path) -> Store:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sub' / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = Store.from_url(url)
    yield store
    Base.metadata.drop_all(store.engine)  # the PostgreSQL database is shared by the session
    store.close()
