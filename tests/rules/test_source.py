"""`RuleSource`: the file and the store's lists kept current, failures never losing the rules
or lists in force (a real SQLite store)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from fraudops.features import BASE_FEATURES
from fraudops.rules import RuleSource
from fraudops.schema import Transaction
from fraudops.store import Store

RULES = """
version: {version}
lists: {{deny: account}}
rules:
  - {{id: deny, owner: o, description: d, action: block, when: {{field: account_id, in_list: deny}}}}
"""
TX = Transaction(transaction_id="t", account_id="acc-1", amount=1.0,
                 timestamp=datetime(2026, 1, 1, tzinfo=UTC))
ROW = [0.0] * len(BASE_FEATURES)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, content: str, mtime_ns: int) -> None:
    path.write_text(content)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_refused_version_then_the_running_one_again(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 's.db'}")
    path, clock, events = tmp_path / "r.yaml", Clock(), []
    write(path, RULES.format(version="v1"), 1_000_000_000)
    source = RuleSource(path, store, refresh_s=1, clock=clock,
                        on_reload=lambda outcome, version: events.append((outcome, version)))
    write(path, RULES.format(version="v1").replace("block", "blok"), 2_000_000_000)
    clock.now = 1.5
    source.refresh_if_due()
    assert source.last_error and source.engine.version == "v1"
    write(path, RULES.format(version="v1"), 3_000_000_000)  # the running text again
    clock.now = 3.0
    source.refresh_if_due()
    assert source.last_error is None and events == [("refused", "v1")]
    write(path, RULES.format(version="v2"), 4_000_000_000)
    clock.now = 4.5
    source.refresh_if_due()
    assert source.engine.version == "v2" and events[-1] == ("loaded", "v2")


def test_a_store_that_fails_keeps_the_lists_in_force(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 's.db'}")
    path, clock = tmp_path / "r.yaml", Clock()
    write(path, RULES.format(version="v1"), 1_000_000_000)
    store.ensure_lists({"deny": "account"})
    store.add_list_entries("deny", ["acc-1"])
    source = RuleSource(path, store, refresh_s=1, clock=clock)
    assert source.engine.evaluate(TX, ROW, 0.0, 0.0, "approve").decision == "block"
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE rule_lists"))
    clock.now = 2.0
    source.refresh_if_due()  # logged, not raised
    assert source.engine.evaluate(TX, ROW, 0.0, 0.0, "approve").decision == "block"
