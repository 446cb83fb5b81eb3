"""The store's deny and allow lists (`RuleList`, `RuleListEntry`), mixed into `Store`.

Every change of a list's entries bumps its `revision` in the same transaction, so a reader
that polls `list_revisions` (the consumer, every few seconds) reloads exactly the lists that
changed. Entries are normalised and checked against the list's kind here
(`fraudops.rules.lists`), whoever writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, delete, func, select, update

from fraudops.rules.exceptions import ListEntryError
from fraudops.rules.lists import check_list_name, normalise_entry
from fraudops.rules.subjects import ListKind
from fraudops.store.exceptions import NotFoundError
from fraudops.store.models import Base, RuleList, RuleListEntry, utcnow

if TYPE_CHECKING:
    from typing import Any

_LISTS = RuleList.__table__
_ENTRIES = RuleListEntry.__table__


@dataclass(frozen=True)
class ListInfo:
    """A list, its kind, revision and how many entries it holds."""

    name: str
    kind: str
    description: str
    revision: int
    entries: int
    updated_at: datetime


@dataclass(frozen=True)
class ListEntryInfo:
    """One entry of a list, who added it and when."""

    value: str
    added_by: str | None
    note: str | None
    added_at: datetime


class ListsMixin:
    """List methods of `Store` (which provides `engine` and `_insert_ignore`)."""

    engine: Engine

    def _insert_ignore(self, model: type[Base]) -> Any: ...  # provided by Store

    def create_list(self, name: str, kind: ListKind | str, description: str = "") -> ListInfo:
        """Create list `name` of `kind` (no-op if it exists with that kind); raises
        `ListEntryError` for a bad name or when it exists with another kind."""
        self.ensure_lists({name: kind}, {name: description})
        return self.get_list(name)

    def ensure_lists(self, lists: Mapping[str, ListKind | str],
                     descriptions: Mapping[str, str] | None = None) -> None:
        """Create the lists (name: kind) that do not exist; `ListEntryError` when one exists
        with another kind (a rule set declaring it so is refused)."""
        wanted = {check_list_name(name): ListKind(kind).value for name, kind in lists.items()}
        if not wanted:
            return
        now = utcnow()
        with self.engine.begin() as connection:
            connection.execute(self._insert_ignore(RuleList), [
                {"name": name, "kind": kind, "description": (descriptions or {}).get(name, ""),
                 "revision": 0, "created_at": now, "updated_at": now}
                for name, kind in wanted.items()])
            rows = connection.execute(select(_LISTS.c.name, _LISTS.c.kind)
                                      .where(_LISTS.c.name.in_(list(wanted))))
            for name, kind in rows:
                if kind != wanted[name]:
                    raise ListEntryError(f"list {name!r} holds {kind} entries, not "
                                         f"{wanted[name]}")

    def get_lists(self) -> list[ListInfo]:
        """Every list, by name, with its entry count."""
        with self.engine.connect() as connection:
            return [_info(row) for row in connection.execute(_lists_query())]

    def get_list(self, name: str) -> ListInfo:
        """List `name`; raises `NotFoundError`."""
        with self.engine.connect() as connection:
            row = connection.execute(_lists_query().where(_LISTS.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no list named {name!r}")
        return _info(row)

    def list_revisions(self) -> dict[str, int]:
        """The revision of every list (what a consumer polls)."""
        with self.engine.connect() as connection:
            return dict(connection.execute(select(_LISTS.c.name, _LISTS.c.revision)).all())

    def list_entries(self, name: str) -> list[str]:
        """Every entry of list `name` (empty for an unknown list)."""
        with self.engine.connect() as connection:
            return list(connection.scalars(select(_ENTRIES.c.value)
                                           .where(_ENTRIES.c.list_name == name)))

    def list_entry_page(self, name: str, *, limit: int = 100, after: str | None = None,
                        prefix: str | None = None) -> list[ListEntryInfo]:
        """Entries of list `name` by value, those after `after` (keyset pages), optionally
        only those starting with `prefix`; raises `NotFoundError` for an unknown list."""
        self.get_list(name)
        query = (select(_ENTRIES).where(_ENTRIES.c.list_name == name)
                 .order_by(_ENTRIES.c.value).limit(limit))
        if after is not None:
            query = query.where(_ENTRIES.c.value > after)
        if prefix:
            query = query.where(_ENTRIES.c.value.startswith(prefix, autoescape=True))
        with self.engine.connect() as connection:
            return [ListEntryInfo(row.value, row.added_by, row.note, row.added_at)
                    for row in connection.execute(query)]

    def add_list_entries(self, name: str, values: Iterable[str], *, added_by: str | None = None,
                         note: str | None = None) -> list[str]:
        """Add entries (normalised for the list's kind) to list `name`; returns those that
        were new. Raises `NotFoundError` (no such list) or `ListEntryError` (a bad value:
        then nothing is added)."""
        kind = self.get_list(name).kind
        entries = list(dict.fromkeys(normalise_entry(kind, value) for value in values))
        with self.engine.begin() as connection:
            existing = set(connection.scalars(select(_ENTRIES.c.value).where(
                _ENTRIES.c.list_name == name, _ENTRIES.c.value.in_(entries))))
            new = [value for value in entries if value not in existing]
            if new:
                now = utcnow()
                connection.execute(self._insert_ignore(RuleListEntry), [
                    {"list_name": name, "value": value, "added_by": added_by, "note": note,
                     "added_at": now} for value in new])
                _bump(connection, name)
        return new

    def remove_list_entry(self, name: str, value: str) -> bool:
        """Remove one entry; True if it was there. Raises `NotFoundError` (no such list)."""
        kind = self.get_list(name).kind
        try:
            value = normalise_entry(kind, value)
        except ListEntryError:
            return False  # could never have been added
        with self.engine.begin() as connection:
            removed = connection.execute(delete(_ENTRIES).where(
                _ENTRIES.c.list_name == name, _ENTRIES.c.value == value)).rowcount
            if removed:
                _bump(connection, name)
        return bool(removed)


def _bump(connection: Connection, name: str) -> None:
    connection.execute(update(_LISTS).where(_LISTS.c.name == name)
                       .values(revision=_LISTS.c.revision + 1, updated_at=utcnow()))


def _lists_query() -> Any:
    count = (select(func.count()).where(_ENTRIES.c.list_name == _LISTS.c.name)
             .scalar_subquery())
    return select(*_LISTS.c, count.label("entry_count")).order_by(_LISTS.c.name)


def _info(row: Any) -> ListInfo:
    return ListInfo(name=row.name, kind=row.kind, description=row.description or "",
                    revision=row.revision, entries=row.entry_count, updated_at=row.updated_at)

