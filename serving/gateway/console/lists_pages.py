"""The console's list pages: the deny and allow lists that rules look transactions up in.

Every action goes through the API's own handlers (`routers.lists`), so the console validates
entries exactly as ``/v1/lists`` does (a bad value: nothing added, the reason shown) and records
who added them. Roles as in the API: analysts read lists and add or remove entries; creating a
list needs the admin role (who may also read them here).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import Response
from pydantic import ValidationError

from fraudops.rules import ListKind
from fraudops.rules.schema import LIST_NAME
from serving.gateway.console.auth import (
    PREFIX,
    AdminDep,
    ConsoleDep,
    ConsoleRefusal,
    LabellerDep,
    User,
    UserDep,
    check_csrf,
)
from serving.gateway.console.pages import redirect, render
from serving.gateway.deps import StoreDep
from serving.gateway.principals import Role
from serving.gateway.routers import lists as api

router = APIRouter(prefix=PREFIX + "/lists", include_in_schema=False)
ListName = Annotated[str, Path(pattern=LIST_NAME)]
#: Entries per page of a list.
PAGE = 100


def list_reader(user: UserDep) -> User:
    """Analysts (who edit entries) and admins (who create lists) read the lists."""
    if not (user.principal.may(Role.ANALYST) or user.principal.may(Role.ADMIN)):
        raise ConsoleRefusal(403, "Lists need the analyst or admin role.")
    return user


ListReaderDep = Annotated[User, Depends(list_reader)]


@router.get("")
def lists(request: Request, console: ConsoleDep, user: ListReaderDep,
          store: StoreDep) -> Response:
    """Every list with its kind, revision and size; the admin's form to create one."""
    return render(request, console, "lists.html", user=user, lists=api.get_lists(store),
                  kinds=[kind.value for kind in ListKind],
                  may_create=user.principal.may(Role.ADMIN))


@router.post("")
def create(request: Request, user: AdminDep, store: StoreDep, name: Annotated[str, Form()] = "",
           kind: Annotated[str, Form()] = "", description: Annotated[str, Form()] = "",
           csrf_token: Annotated[str, Form()] = "") -> Response:
    check_csrf(user.session, csrf_token)
    try:
        body = api.ListIn(kind=kind, description=description.strip())
    except ValidationError:
        raise ConsoleRefusal(400, f"kind must be one of {', '.join(ListKind)}, and the "
                                  "description at most 2000 characters.") from None
    name = name.strip()
    try:
        api.create_list(_name(name), body, store)
    except HTTPException as error:
        raise ConsoleRefusal(error.status_code, str(error.detail)) from None
    return redirect(request, f"/lists/{name}")


@router.get("/{name}")
def entries(name: ListName, request: Request, console: ConsoleDep, user: ListReaderDep,
            store: StoreDep, after: str = "", prefix: str = "", added: int = -1,
            present: int = -1, removed: int = 0) -> Response:
    """One list's entries by value, a page at a time, with the forms to change them."""
    try:
        info = api.get_list(name, store)
        page = api.get_entries(name, store, PAGE, after[:128] or None, prefix[:128] or None)
    except HTTPException as error:
        raise ConsoleRefusal(error.status_code, str(error.detail)) from None
    return render(request, console, "list.html", user=user, info=info, page=page,
                  prefix_filter=prefix[:128], may_edit=user.may_label, added=added,
                  present=present, removed=removed)


@router.post("/{name}/entries")
def add(name: ListName, request: Request, user: LabellerDep, store: StoreDep,
        values: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "") -> Response:
    """Add the values typed (one per line, or comma-separated) in the analyst's name."""
    check_csrf(user.session, csrf_token)
    typed = [v.strip() for line in values.splitlines() for v in line.split(",") if v.strip()]
    try:
        body = api.EntriesIn(values=typed, note=note.strip() or None)
    except ValidationError:
        raise ConsoleRefusal(400, f"Give 1 to {api.MAX_ENTRIES_PER_REQUEST} values of at "
                                  "most 128 characters, and a note of at most 2000.") from None
    try:
        answer = api.add_entries(name, body, store, user.principal)
    except HTTPException as error:
        raise ConsoleRefusal(error.status_code, str(error.detail)) from None
    return redirect(request, f"/lists/{name}?added={len(answer.added)}"
                             f"&present={len(answer.already_present)}")


@router.post("/{name}/remove")
def remove(name: ListName, request: Request, user: LabellerDep, store: StoreDep,
           value: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "") -> Response:
    check_csrf(user.session, csrf_token)
    try:
        api.remove_entry(name, value, store)
    except HTTPException as error:
        raise ConsoleRefusal(error.status_code, str(error.detail)) from None
    return redirect(request, f"/lists/{name}?removed=1")


def _name(name: str) -> str:
    if not re.match(LIST_NAME, name):
        raise ConsoleRefusal(400, "A list name is lower case letters, digits and _, starting "
                                  "with a letter (at most 64).")
    return name
