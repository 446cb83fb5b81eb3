"""The gateway refuses to start on a decision store not at this release's schema, and starts
(answering 503 where it needs the store) while the database does not answer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gateway_fakes import ANALYST_KEY, settings

from fraudops.store import SchemaNotCurrentError, Store
from serving.gateway.app import create_app


def test_the_gateway_refuses_an_unmigrated_store(tmp_path: Path, caplog) -> None:
    app = create_app(settings(tmp_path))
    with caplog.at_level(logging.ERROR), pytest.raises(
            SchemaNotCurrentError, match="run `fraudops db upgrade`"), TestClient(app):
        pass
    assert "refusing to start" in caplog.text and "fraudops db upgrade" in caplog.text
    Store.from_url(f"sqlite:///{tmp_path / 'store.db'}").close()  # what the command does
    with TestClient(create_app(settings(tmp_path))) as client:
        answer = client.get("/v1/alerts", headers={"X-API-Key": ANALYST_KEY})
    assert answer.status_code == 200, answer.text


def test_a_store_that_does_not_answer_is_left_for_later(tmp_path: Path) -> None:
    (tmp_path / "store.db").mkdir()  # SQLite cannot open a directory: the database is "down"
    with TestClient(create_app(settings(tmp_path)), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        answer = client.get("/v1/alerts", headers={"X-API-Key": ANALYST_KEY})
    assert answer.status_code == 503
