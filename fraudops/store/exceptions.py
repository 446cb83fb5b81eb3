"""Errors of the store package, all rooted in `StoreError`."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by `fraudops.store`."""


class UnsupportedDatabaseError(StoreError):
    """The SQLAlchemy URL names a database the store cannot write idempotently."""


class NotFoundError(StoreError, LookupError):
    """No row with the given key (an API answers 404)."""


class StaleCheckpointError(StoreError):
    """Another writer advanced a stream checkpoint first: this writer lost the partition."""


class SchemaNotCurrentError(StoreError):
    """The database's schema version is not this release's: run `fraudops db upgrade`."""
