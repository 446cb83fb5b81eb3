"""The local platform upgrades its decision store before it starts the consumer and the
gateway (they refuse a store not at this release's schema): from an empty state dir, and again
on a later start (nothing to do). Nothing is started."""

from __future__ import annotations

from fraudops.store import Store, migrate
from local.platform import LocalPlatform
from local.timeline import Timeline


def test_the_platform_store_is_upgraded_before_the_units_start(tmp_path) -> None:
    timeline = Timeline.of()
    platform = LocalPlatform(tmp_path / "home", clean=True, timeline=timeline)
    platform.upgrade_store()
    Store.open_current(platform.layout.store_url).close()  # what the units open it with
    platform.upgrade_store()
    notes = [text for _, text in timeline.events]
    head = migrate.head_revision()
    assert notes == [f"decision store at schema {head} (was empty)",
                     f"decision store at schema {head}"]
