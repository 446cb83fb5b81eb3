"""The consumer and the entity stages refuse to start on a decision store not at this
release's schema."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from consumers.app import EXIT_FATAL, ConsumerApp
from consumers.settings import ConsumerSettings
from consumers.stages import StageApp
from fraudops.settings import DatabaseSettings
from fraudops.store import Store, migrate


@pytest.mark.parametrize("unit", ["consumer", "merchant stage"])
def test_an_unmigrated_store_is_refused(tmp_path: Path, caplog, unit: str) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = ConsumerSettings(home=tmp_path, database=DatabaseSettings(url=url))
    app = ConsumerApp(settings) if unit == "consumer" else StageApp(settings, "merchant")
    with caplog.at_level(logging.ERROR):
        assert app.run() == EXIT_FATAL
    assert "has no schema version" in caplog.text and "run `fraudops db upgrade`" in caplog.text
    store = Store.from_url(url, create=False)
    assert migrate.current_revision(store.engine) is None  # it did not create anything
    store.close()
