"""The consumer refuses to start on a decision store not at this release's schema."""

from __future__ import annotations

import logging
from pathlib import Path

from consumers.app import EXIT_FATAL, ConsumerApp
from consumers.settings import ConsumerSettings
from fraudops.settings import DatabaseSettings
from fraudops.store import Store, migrate


def test_the_consumer_refuses_an_unmigrated_store(tmp_path: Path, caplog) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = ConsumerSettings(home=tmp_path, database=DatabaseSettings(url=url))
    with caplog.at_level(logging.ERROR):
        assert ConsumerApp(settings).run() == EXIT_FATAL
    assert "has no schema version" in caplog.text and "run `fraudops db upgrade`" in caplog.text
    store = Store.from_url(url, create=False)
    assert migrate.current_revision(store.engine) is None  # it did not create anything
    store.close()
