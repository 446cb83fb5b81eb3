"""Deny and allow lists: what an entry of each kind may be.

Entries are matched exactly against the transaction's field (no case folding, no trimming at
match time), so they are validated and normalised once, when they are added: identifiers with
the transaction schema's alphabet, countries as ISO 3166-1 alpha-2 codes in upper case.
"""

from __future__ import annotations

import re

from fraudops.rules.exceptions import ListEntryError
from fraudops.rules.schema import LIST_NAME
from fraudops.rules.subjects import ListKind

#: The alphabet of `fraudops.schema.Identifier` (account, merchant and device ids).
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:@/+-]{1,128}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_LIST_NAME = re.compile(LIST_NAME)
#: Which transaction field each kind of list is matched against.
FIELD_OF_KIND = {ListKind.ACCOUNT: "account_id", ListKind.MERCHANT: "merchant_id",
                 ListKind.DEVICE: "device_id", ListKind.COUNTRY: "country"}


def check_list_name(name: str) -> str:
    """`name` if it is a valid list name; `ListEntryError` otherwise."""
    if not _LIST_NAME.match(name):
        raise ListEntryError(f"list name {name[:70]!r} must match {LIST_NAME} (lower case, "
                             "digits and _)")
    return name


def normalise_entry(kind: ListKind | str, value: str) -> str:
    """The entry as stored and matched; `ListEntryError` says why a value cannot be one."""
    kind = ListKind(kind)
    text = value.strip()
    if kind is ListKind.COUNTRY:
        text = text.upper()
        if not _COUNTRY.match(text):
            raise ListEntryError(f"{value[:40]!r} is not a country code (two letters, ISO "
                                 "3166-1 alpha-2, e.g. DE)")
        return text
    if not _IDENTIFIER.match(text):
        raise ListEntryError(f"{value[:40]!r} is not a valid {kind.value} id (1-128 characters "
                             "among letters, digits and _ . : @ / + -)")
    return text
