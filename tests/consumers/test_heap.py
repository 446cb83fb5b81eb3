"""`HeapFreezer`: long-lived objects leave the cyclic collector's reach, and the periodic full
collection still frees cycles that died after they were frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from consumers.app import HeapFreezer


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freezes_when_due_and_not_before() -> None:
    heap = HeapFreezer(freeze_s=10.0, full_s=100.0, started=0.0)
    assert heap.due(0.0)
    heap.run(0.0)
    assert gc.get_freeze_count() > 0
    assert not heap.due(9.9)
    assert heap.due(10.0)


def test_frozen_cycles_are_freed_by_the_full_collection() -> None:
    heap = HeapFreezer(freeze_s=10.0, full_s=100.0, started=0.0)
    node = _Node()
    ref = weakref.ref(node)
    heap.run(0.0)  # the node is alive: frozen with the rest
    del node
    gc.collect()
    assert ref() is not None  # a frozen cycle is out of the collector's reach
    heap.run(50.0)  # an ordinary freeze does not free it either
    assert ref() is not None
    assert heap.due(100.0)
    heap.run(100.0)  # the full collection unfreezes, collects, freezes again
    assert ref() is None
    assert gc.get_freeze_count() > 0
