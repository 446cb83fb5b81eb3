"""Fixtures of the consumer tests (helpers live in consumer_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from consumer_helpers import SEQ_LEN, SPEC

from fraudops.features import OnlineFeatureState
from fraudops.store import Store


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.close()


@pytest.fixture
def new_state() -> Callable[[], OnlineFeatureState]:
    return lambda: OnlineFeatureState(SPEC, SEQ_LEN)
