"""`/v1/lists`: the deny and allow lists that rules look transactions up in.

Reading the lists and adding or removing entries needs the analyst role (analysts react to an
attack from the console); creating a list needs the admin role (a rule set also creates the
lists it declares when it is loaded). Entries are normalised and validated for the list's kind
(`fraudops.rules.lists`): a bad value is a 422 that names it, and then nothing is added.
Running consumers pick a change up within their `rules_refresh_s`, without a restart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from fraudops.rules import ListEntryError, ListKind, normalise_entry
from fraudops.rules.schema import LIST_NAME
from fraudops.store import ListEntryInfo, ListInfo, NotFoundError, Store
from serving.gateway.deps import V1, PrincipalDep, StoreDep, require_role
from serving.gateway.errors import StrictJSONRoute
from serving.gateway.principals import Role

router = APIRouter(prefix=V1, tags=["lists"], route_class=StrictJSONRoute)
_ANALYST = [Depends(require_role(Role.ANALYST))]
_ADMIN = [Depends(require_role(Role.ADMIN))]
ListName = Annotated[str, Path(pattern=LIST_NAME, description="Lower case, digits and _.")]
_NOT_FOUND = {404: {"description": "No such list."}}
#: Most entries one request adds.
MAX_ENTRIES_PER_REQUEST = 1000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListOut(_Model):
    """A list: its kind fixes which transaction field its entries are matched against."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    kind: ListKind
    description: str
    revision: int = Field(description="Grows with every change of the entries.")
    entries: int = Field(description="How many entries it holds.")
    updated_at: datetime


class ListIn(_Model):
    """A list to create."""

    kind: ListKind = Field(description="account, merchant, device or country.")
    description: str = Field(default="", max_length=2000)


class EntryOut(_Model):
    """One entry: who added it, when and why."""

    model_config = ConfigDict(from_attributes=True)

    value: str
    added_by: str | None
    note: str | None
    added_at: datetime


class EntryPage(_Model):
    """A page of entries by value; `next_after` continues it (None: the last page)."""

    items: list[EntryOut]
    next_after: str | None


class EntriesIn(_Model):
    """Entries to add (account/merchant/device ids, or ISO 3166-1 alpha-2 country codes)."""

    values: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=MAX_ENTRIES_PER_REQUEST)
    note: str | None = Field(default=None, max_length=2000)


class EntriesAdded(_Model):
    """What an addition did: the entries that were new, those already there, the list now."""

    added: list[str]
    already_present: list[str]
    list: ListOut


@router.get("/lists", response_model=list[ListOut], dependencies=_ANALYST)
def get_lists(store: StoreDep) -> list[ListOut]:
    """Every list with its kind, revision and entry count."""
    return [ListOut.model_validate(info) for info in store.get_lists()]


@router.put("/lists/{name}", response_model=ListOut, dependencies=_ADMIN,
            responses={409: {"description": "The list exists with another kind."}})
def create_list(name: ListName, body: ListIn, store: StoreDep) -> ListOut:
    """Create a list (nothing happens if it exists with the same kind)."""
    try:
        return ListOut.model_validate(store.create_list(name, body.kind, body.description))
    except ListEntryError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None


@router.get("/lists/{name}", response_model=ListOut, dependencies=_ANALYST,
            responses=_NOT_FOUND)
def get_list(name: ListName, store: StoreDep) -> ListOut:
    """One list."""
    return ListOut.model_validate(_list(store, name))


@router.get("/lists/{name}/entries", response_model=EntryPage, dependencies=_ANALYST,
            responses=_NOT_FOUND)
def get_entries(name: ListName, store: StoreDep,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                after: Annotated[str | None, Query(max_length=128,
                                                   description="Entries after this value.")] = None,
                prefix: Annotated[str | None, Query(max_length=128)] = None) -> EntryPage:
    """Entries by value, one page at a time (pass `next_after` as `after`)."""
    try:
        rows = store.list_entry_page(name, limit=limit, after=after, prefix=prefix)
    except NotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    return EntryPage(items=[EntryOut.model_validate(_entry(row)) for row in rows],
                     next_after=rows[-1].value if len(rows) == limit else None)


@router.post("/lists/{name}/entries", response_model=EntriesAdded, dependencies=_ANALYST,
             status_code=status.HTTP_201_CREATED,
             responses=_NOT_FOUND | {422: {"description": "A value that does not fit the "
                                                          "list's kind: nothing was added."}})
def add_entries(name: ListName, body: EntriesIn, store: StoreDep,
                principal: PrincipalDep) -> EntriesAdded:
    """Add entries in the caller's name; values already there are reported, not repeated."""
    try:
        added = store.add_list_entries(name, body.values, added_by=principal.name,
                                       note=body.note)
    except NotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    except ListEntryError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=f"{error}; nothing was added") from None
    info = _list(store, name)
    new = set(added)
    given = dict.fromkeys(normalise_entry(info.kind, value) for value in body.values)
    present = [value for value in given if value not in new]
    return EntriesAdded(added=added, already_present=present, list=ListOut.model_validate(info))


@router.delete("/lists/{name}/entries/{value:path}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=_ANALYST,
               responses={404: {"description": "No such list, or the value is not in it."}})
def remove_entry(name: ListName, value: str, store: StoreDep) -> Response:
    """Remove one entry."""
    try:
        removed = store.remove_list_entry(name, value)
    except NotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    if not removed:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"{value[:128]!r} is not in list {name!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _list(store: Store, name: str) -> ListInfo:
    try:
        return store.get_list(name)
    except NotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None


def _entry(row: ListEntryInfo) -> dict:
    return {"value": row.value, "added_by": row.added_by, "note": row.note,
            "added_at": row.added_at}
