"""`Store`: the decision store's repository (the only code that issues SQL).

Writes are idempotent by primary key (``INSERT ... ON CONFLICT DO NOTHING``), so a stream
processor that reprocesses events after a crash never duplicates a decision, an alert or a
notification. SQLite (the zero-setup default) and PostgreSQL (in a cluster) are supported.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    any_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from fraudops.schema import TransactionLabel
from fraudops.store import bulk, migrate
from fraudops.store.bulk import StagedCopy
from fraudops.store.exceptions import (
    NotFoundError,
    StaleCheckpointError,
    UnsupportedDatabaseError,
)
from fraudops.store.label_history import LabelLog
from fraudops.store.lists import ListsMixin
from fraudops.store.models import (
    Alert,
    AlertStatus,
    Base,
    Decision,
    DecisionSource,
    Label,
    Notification,
    NotificationStatus,
    StreamCheckpoint,
    StreamStateEntry,
    utcnow,
)
from fraudops.store.outbox import OutboxMixin
from fraudops.store.records import (
    BatchWrite,
    CheckpointRecord,
    DecisionRecord,
    LabelEntry,
    LabelledTransaction,
    LabelRecord,
    RecordSource,
)

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
_ALERT_FIELDS = ("transaction_id", "account_id", "event_time", "amount", "decision",
                 "fraud_probability", "anomaly_score", "reason_codes", "rules_fired",
                 "rule_set_version")
#: Most ids per lookup query (one parameter each way; this only bounds a statement's size).
_LOOKUP_CHUNK = 10_000


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # WAL lets the gateway read while the consumer writes; NORMAL sync is durable across
    # process crashes (only an OS crash may lose the last commit).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_store_engine(url: str, **engine_options: Any) -> Engine:
    """An engine for `url` (SQLite file parents are created; SQLite gets WAL mode)."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise UnsupportedDatabaseError(
            f"database {parsed.get_backend_name()!r} is not supported; use one of "
            f"{', '.join(SUPPORTED_DIALECTS)}"
        )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **engine_options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **engine_options)


class Store(ListsMixin, OutboxMixin):
    """Repository over the decision store. Thread-safe (one session per call). The deny and
    allow lists' methods come from `ListsMixin` (`fraudops.store.lists`), the outbox claims
    from `OutboxMixin` (`fraudops.store.outbox`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._dialect = engine.dialect.name
        #: Prepared once: the consumer writes a batch every few milliseconds.
        self._ignore = {model: self._insert_ignore(model)
                        for model in (Decision, DecisionSource, Alert, Notification)}
        dialect = engine.dialect
        self._rows = {
            Decision: _DriverInsert(self._ignore[Decision], _DECISION_COLUMNS, dialect),
            DecisionSource: _DriverInsert(self._ignore[DecisionSource], _SOURCE_COLUMNS,
                                          dialect),
            Alert: _DriverInsert(self._ignore[Alert], _ALERT_COLUMNS, dialect),
            Notification: _DriverInsert(self._ignore[Notification], _NOTIFICATION_COLUMNS,
                                        dialect),
        }
        state = self._insert(StreamStateEntry)
        self._state_rows = _DriverInsert(
            state.on_conflict_do_update(index_elements=[c.name for c in _STATE.primary_key],
                                        set_={"value": state.excluded.value}),
            _STATE_COLUMNS, dialect)
        self._decided, self._encode_ids = self._decided_query()
        self._labels = LabelLog(self._insert)

    @classmethod
    def from_url(cls, url: str, *, create: bool = True, **engine_options: Any) -> Store:
        """Open the store at `url`, upgrading its schema to this release's unless `create` is
        false (tests and SQLite dev use; the units open it with `open_current`)."""
        store = cls(create_store_engine(url, **engine_options))
        if create:
            store.create_schema()
        return store

    @classmethod
    def open_current(cls, url: str, **engine_options: Any) -> Store:
        """Open the store at `url` for a unit (consumer, gateway): raises
        `SchemaNotCurrentError`, naming `fraudops db upgrade`, unless the database is at this
        release's schema revision; then gives label history entries recorded before their
        transaction the transaction's keys (`fill_label_keys`)."""
        store = cls(create_store_engine(url, **engine_options))
        try:
            migrate.check_current(store.engine)
            store.fill_label_keys()
        except BaseException:
            store.close()
            raise
        return store

    def create_schema(self) -> None:
        """Bring the database to this release's schema (`fraudops.store.migrate.upgrade`: an
        empty database is created from the models and stamped, any other one migrated), then
        `fill_label_keys`. Idempotent."""
        migrate.upgrade(self.engine)
        self.fill_label_keys()

    def fill_label_keys(self) -> int:
        """Give label history entries without entity keys those of their transaction where it
        is stored now (labels recorded before their transaction); returns how many were
        looked at. Cheap when there are none (the account index)."""
        with self.engine.begin() as connection:
            return self._labels.fill_keys(connection)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes -------------------------------------------------------------------------------

    def write_batch(self, batch: BatchWrite,
                    before_commit: Callable[[], None] | None = None) -> None:
        """Make a processed batch durable in ONE transaction; existing keys are left untouched.

        Alerts are derived from the decisions (review/block). A checkpoint without a snapshot
        keeps the partition's previous snapshot. Raises `StaleCheckpointError` (and writes
        nothing) when a checkpoint's `expected_offset` no longer matches the stored row.
        `before_commit` runs after the writes, inside the transaction: whatever it raises rolls
        the batch back (the consumer waits there for Kafka's acknowledgements, so that the
        broker round trip overlaps the inserts).
        """
        try:
            with self.engine.begin() as connection:
                self._write_rows(connection, batch)
                if before_commit is not None:
                    before_commit()
        except IntegrityError as error:  # a concurrent writer inserted the checkpoint first
            raise StaleCheckpointError(f"checkpoint created concurrently: {error.orig}") from error

    def _write_rows(self, connection: Connection, batch: BatchWrite) -> None:
        # Whole rows through the driver's executemany (`_DriverInsert`): the ORM's bulk path,
        # and then Core's per-row parameter handling, cost more than the database here.
        now = utcnow()
        if batch.decisions:
            rows = self._rows
            rows[Decision].execute(connection, [_decision_values(d) if d.scored_at is not None
                                                else _decision_values(d)[:-1] + (now,)
                                                for d in batch.decisions])
            sources = [(d.transaction_id, *_source_values(d.source)) for d in batch.decisions
                       if d.source is not None]
            if sources:
                rows[DecisionSource].execute(connection, sources)
            stamps = (now, now)
            alerts = [_alert_values(d) + stamps for d in batch.decisions if d.is_alert]
            if alerts:
                rows[Alert].execute(connection, alerts)
        if batch.notifications:
            self._rows[Notification].execute(
                connection, [_notification_values(n) + (now,) for n in batch.notifications])
        if batch.labels:  # read from the labels topic: they have been published
            self._labels.append(connection, batch.labels, published=True)
        for checkpoint in batch.checkpoints:
            self._upsert_checkpoint(connection, checkpoint, now)

    def add_labels(self, labels: Iterable[LabelRecord]) -> int:
        """Append labels to the history (the latest known becomes the current verdict, see
        `fraudops.store.label_history`); returns how many were recorded (not redeliveries)."""
        with self.engine.begin() as connection:
            return len(self._labels.append(connection, list(labels), published=False))

    def record_label(self, label: LabelRecord) -> LabelEntry | None:
        """Append one label to the history; its entry, or None for a redelivered label."""
        with self.engine.begin() as connection:
            entries = self._labels.append(connection, [label], published=False)
        return entries[0] if entries else None

    def mark_label_published(self, entry_id: int) -> None:
        """Record that the verdict of history entry `entry_id` reached the `labels` topic."""
        with self.engine.begin() as connection:
            self._labels.mark_published(connection, entry_id)

    def set_alert_status(self, transaction_id: str, status: AlertStatus | str) -> Alert:
        """Move an alert to `status`; raises `NotFoundError` for an unknown transaction."""
        status = AlertStatus(status)
        with self._sessions.begin() as session:
            alert = session.get(Alert, transaction_id)
            if alert is None:
                raise NotFoundError(f"no alert for transaction {transaction_id!r}")
            alert.status = status.value
            alert.updated_at = utcnow()
            return alert

    def mark_notification(self, dedupe_key: str, status: NotificationStatus | str,
                          error: str | None = None) -> None:
        """Record the outcome of one delivery attempt (and end the row's claim, if any)."""
        status = NotificationStatus(status)
        values: dict[str, Any] = {"status": status.value, "last_error": error,
                                  "attempts": Notification.attempts + 1,
                                  "claimed_by": None, "claimed_until": None}
        if status is NotificationStatus.SENT:
            values["sent_at"] = utcnow()
        with self._sessions.begin() as session:
            session.execute(update(Notification)
                            .where(Notification.dedupe_key == dedupe_key).values(**values))

    # -- reads --------------------------------------------------------------------------------

    def get_decision(self, transaction_id: str) -> Decision | None:
        with self._sessions() as session:
            return session.get(Decision, transaction_id)

    def decided(self, transaction_ids: Collection[str]) -> dict[str, DecisionRecord]:
        """The stored decisions among `transaction_ids` (with their `source` where a consumer
        recorded one), by id: one query per thousand ids, whatever the hits."""
        ids = list(dict.fromkeys(transaction_ids))
        found: dict[str, DecisionRecord] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(ids), _LOOKUP_CHUNK):
                chunk = self._encode_ids(ids[start:start + _LOOKUP_CHUNK])
                rows = connection.execute(self._decided, {"ids": chunk})
                found.update((row.transaction_id, _decided(row)) for row in rows)
        return found

    def get_alert(self, transaction_id: str) -> Alert:
        """The alert of `transaction_id`; raises `NotFoundError` if there is none."""
        with self._sessions() as session:
            alert = session.get(Alert, transaction_id)
        if alert is None:
            raise NotFoundError(f"no alert for transaction {transaction_id!r}")
        return alert

    def list_alerts(self, *, status: AlertStatus | str | None = None,
                    account_id: str | None = None, decision: str | None = None,
                    since: datetime | None = None, until: datetime | None = None,
                    limit: int = 50, offset: int = 0) -> list[Alert]:
        """Alerts, newest event first, filtered by status, account, decision and event time
        (``since <= event_time < until``)."""
        query = select(Alert).order_by(Alert.event_time.desc(), Alert.transaction_id)
        filters = {"status": (Alert.status, AlertStatus(status).value if status else None),
                   "account": (Alert.account_id, account_id),
                   "decision": (Alert.decision, decision)}
        for column, value in filters.values():
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(Alert.event_time >= since)
        if until is not None:
            query = query.where(Alert.event_time < until)
        with self._sessions() as session:
            return list(session.scalars(query.limit(limit).offset(offset)))

    def get_label(self, transaction_id: str) -> Label | None:
        """The current verdict of a transaction (its latest known label), if any."""
        with self._sessions() as session:
            return session.get(Label, transaction_id)

    def label_history(self, transaction_id: str) -> list[LabelEntry]:
        """Every label given to a transaction, oldest first."""
        with self.engine.connect() as connection:
            return self._labels.entries(connection, transaction_id)

    def entity_labels(self, *, since: datetime, before: datetime,
                      accounts: Collection[str] = (), merchants: Collection[str] = (),
                      devices: Collection[str] = (), limit: int = 10_000
                      ) -> tuple[list[TransactionLabel], bool]:
        """The labels known in (since, before) of the transactions of these accounts,
        merchants and devices, with their keys, oldest first; at most the latest `limit`, and
        whether more were left out (see `LabelLog.entity_labels`)."""
        with self.engine.connect() as connection:
            return self._labels.entity_labels(
                connection, since=since, before=before, accounts=accounts,
                merchants=merchants, devices=devices, limit=limit)

    def unpublished_verdict(self, transaction_id: str) -> LabelEntry | None:
        """The entry to produce when the current verdict has not reached the `labels` topic."""
        with self.engine.connect() as connection:
            return self._labels.unpublished_verdict(connection, transaction_id)

    def account_history(self, account_id: str, *, before: datetime, limit: int,
                        exclude: str | None = None) -> list[Decision]:
        """The account's last `limit` decisions with ``event_time <= before``, oldest first."""
        if limit <= 0:
            return []
        query = (select(Decision)
                 .where(Decision.account_id == account_id, Decision.event_time <= before)
                 .order_by(Decision.event_time.desc(), Decision.transaction_id.desc())
                 .limit(limit))
        if exclude is not None:
            query = query.where(Decision.transaction_id != exclude)
        with self._sessions() as session:
            return list(reversed(session.scalars(query).all()))

    def ping(self) -> None:
        """Raise (an SQLAlchemy error) unless the database answers."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def scored_window(self, start: datetime | None = None, end: datetime | None = None,
                      limit: int | None = None) -> list[Decision]:
        """Decisions with `start <= event_time < end`, oldest first (the drift job's window)."""
        query = select(Decision).order_by(Decision.event_time, Decision.transaction_id)
        if start is not None:
            query = query.where(Decision.event_time >= start)
        if end is not None:
            query = query.where(Decision.event_time < end)
        with self._sessions() as session:
            return list(session.scalars(query.limit(limit)))

    def labelled_transactions(self, since: datetime | None = None) -> list[LabelledTransaction]:
        """Stored transactions with their current verdict (retraining data: one row per
        transaction, the latest known label), by label time."""
        query = (select(Decision, Label).join(Label, Label.transaction_id == Decision.transaction_id)
                 .order_by(Label.labelled_at, Label.transaction_id))
        if since is not None:
            query = query.where(Label.labelled_at >= since)
        with self._sessions() as session:
            return [_labelled(decision, label) for decision, label in session.execute(query)]

    def notifications(self, *, status: NotificationStatus | str | None = None,
                      account_ids: Sequence[str] | None = None,
                      since: datetime | None = None, limit: int | None = None) -> list[Notification]:
        """Outbox entries by event time, filtered by status, accounts and event time."""
        query = select(Notification).order_by(Notification.event_time, Notification.dedupe_key)
        if status is not None:
            query = query.where(Notification.status == NotificationStatus(status).value)
        if account_ids is not None:
            query = query.where(Notification.account_id.in_(list(account_ids)))
        if since is not None:
            query = query.where(Notification.event_time >= since)
        with self._sessions() as session:
            return list(session.scalars(query.limit(limit)))

    def load_checkpoints(self, group_id: str, topic: str) -> dict[int, StreamCheckpoint]:
        """The stored position (and snapshot) of every partition of `topic` for `group_id`."""
        query = select(StreamCheckpoint).where(StreamCheckpoint.group_id == group_id,
                                               StreamCheckpoint.topic == topic)
        with self._sessions() as session:
            return {row.partition: row for row in session.scalars(query)}

    def load_state(self, group_id: str, topic: str, partition: int) -> list[tuple[str, str, bytes]]:
        """The (kind, entity, value) entries of a partition's stored feature state."""
        query = select(_STATE.c.kind, _STATE.c.entity, _STATE.c.value).where(
            *_of_partition(_STATE, group_id, topic, partition))
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    def counts(self) -> dict[str, int]:
        """Row count of each table (for status pages and tests)."""
        tables = {"decisions": Decision, "alerts": Alert, "notifications": Notification,
                  "labels": Label}
        with self._sessions() as session:
            return {name: session.scalar(select(func.count()).select_from(model)) or 0
                    for name, model in tables.items()}

    # -- dialect-specific upserts -------------------------------------------------------------

    def _decided_query(self) -> tuple[Any, Callable[[list[str]], Any]]:
        """`decided`'s statement, its ids in ONE bound parameter (a JSON array for SQLite, an
        array for PostgreSQL): an expanded ``IN (?, ?, ...)`` of 500 ids cost 7 ms a query on
        SQLite, mostly in SQLAlchemy, against 1.2 ms for this."""
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            ids = bindparam("ids", type_=ARRAY(String))
            condition, encode = _DECISIONS.c.transaction_id == any_(ids), list
        else:
            values = func.json_each(bindparam("ids", type_=String)).table_valued("value")
            condition = _DECISIONS.c.transaction_id.in_(select(values.c.value))
            encode = json.dumps
        joined = _DECISIONS.outerjoin(
            _SOURCES, _SOURCES.c.transaction_id == _DECISIONS.c.transaction_id)
        query = select(*_DECISIONS.c, _SOURCES.c.topic, _SOURCES.c.partition,
                       _SOURCES.c.record_offset).select_from(joined).where(condition)
        return query, encode

    def _insert(self, model: type[Base]) -> Any:
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(model.__table__)

    def _insert_ignore(self, model: type[Base]) -> Any:
        key = [column.name for column in model.__table__.primary_key]
        return self._insert(model).on_conflict_do_nothing(index_elements=key)

    def _upsert_checkpoint(self, connection: Connection, checkpoint: CheckpointRecord,
                           now: datetime) -> None:
        values: dict[str, Any] = {"next_offset": checkpoint.next_offset, "updated_at": now}
        if checkpoint.snapshot is not None:
            values |= {"snapshot": checkpoint.snapshot,
                       "snapshot_offset": checkpoint.snapshot_offset}
        key = {"group_id": checkpoint.group_id, "topic": checkpoint.topic,
               "partition": checkpoint.partition}
        if checkpoint.expected_offset is None:
            # A concurrent insert of the same key fails here (IntegrityError), rolling back.
            connection.execute(self._insert(StreamCheckpoint), key | values)
        else:
            statement = _CHECKPOINT_MOVES[checkpoint.snapshot is not None]
            params = {f"new_{name}": value for name, value in values.items()}
            params |= {f"of_{name}": value for name, value in key.items()}
            params["expected_offset"] = checkpoint.expected_offset
            if connection.execute(statement, params).rowcount != 1:
                raise StaleCheckpointError(
                    f"checkpoint {tuple(key.values())} moved past offset "
                    f"{checkpoint.expected_offset}: another consumer owns the partition now")
        self._write_state(connection, key, checkpoint)

    def _write_state(self, connection: Connection, key: dict[str, Any],
                     checkpoint: CheckpointRecord) -> None:
        if checkpoint.replace_state:
            connection.execute(delete(_STATE).where(*_of_partition(_STATE, **key)))
        if checkpoint.state:
            where = (key["group_id"], key["topic"], key["partition"])
            self._state_rows.execute(connection, [(*where, kind, entity, value) for
                                                  (kind, entity), value in
                                                  checkpoint.state.items()])


_CHECKPOINTS = StreamCheckpoint.__table__
_STATE = StreamStateEntry.__table__
_DECISIONS = Decision.__table__
_SOURCES = DecisionSource.__table__

#: The columns the consumer's batch gives, in the order of the value tuples below (`scored_at`
#: last; the alerts' `created_at`, `updated_at` and the notifications' `created_at` too).
_DECISION_COLUMNS = ("transaction_id", "account_id", "event_time", "amount", "fraud_probability",
                     "anomaly_score", "decision", "reason_codes", "model_version",
                     "transaction_json", "rules_fired", "rule_set_version", "scored_at")
_decision_values = operator.attrgetter(*_DECISION_COLUMNS)
_SOURCE_COLUMNS = ("transaction_id", "topic", "partition", "record_offset")
_source_values = operator.attrgetter("topic", "partition", "offset")
_ALERT_COLUMNS = (*_ALERT_FIELDS, "created_at", "updated_at")
_alert_values = operator.attrgetter(*_ALERT_FIELDS)
_NOTIFICATION_FIELDS = ("dedupe_key", "transaction_id", "account_id", "channel", "event_time",
                        "payload", "status")
_NOTIFICATION_COLUMNS = (*_NOTIFICATION_FIELDS, "created_at")
_notification_values = operator.attrgetter(*_NOTIFICATION_FIELDS)
_STATE_COLUMNS = ("group_id", "topic", "partition", "kind", "entity", "value")


class _DriverInsert:
    """An INSERT (with its ON CONFLICT clause) of whole rows through the driver's executemany.

    Core's executemany handled each row's parameters in Python (`construct_params`: dict
    look-ups and the bind processors, per row and column), most of the CPU of writing a
    consumer's batch. Here the statement is compiled once with every column of the table;
    each row is a tuple of the `given` columns, reordered in C, and only the columns whose type
    has a bind processor (times, floats on SQLite) go through it: the same processors
    SQLAlchemy applies, so the stored values are the same. A column not given takes its scalar
    Python default, or NULL when it has none, as Core's insert would give it.
    """

    def __init__(self, statement: Any, given: Sequence[str], dialect: Any) -> None:
        table = statement.table
        names = [column.key for column in table.columns]
        fixed: dict[str, Any] = {}
        for column in table.columns:
            if column.key in given:
                continue
            default = column.default
            if default is not None and default.is_scalar:
                fixed[column.key] = default.arg
            elif default is None and column.nullable:
                fixed[column.key] = None
            else:
                raise ValueError(f"{table.name}.{column.key} must be given")
        compiled = statement.compile(dialect=dialect, column_keys=names)
        self.sql = compiled.string
        order = list(compiled.positiontup) if compiled.positional else names
        source = [*given, *fixed]
        self._fixed = tuple(fixed.values())
        self._reorder = operator.itemgetter(*(source.index(name) for name in order))
        types = {column.key: column.type for column in table.columns}
        self._processors = [(i, processor) for i, name in enumerate(order)
                            if (processor := types[name].dialect_impl(dialect)
                                .bind_processor(dialect)) is not None]
        self._names = None if compiled.positional else order
        # PostgreSQL: through binary COPY (`fraudops.store.bulk`), unless an upsert's batch holds
        # a key twice (one INSERT ... SELECT may not update a row twice; executemany may).
        self._copy, self._unique = None, None
        if dialect.name == "postgresql":
            sql = compiled.string
            conflict = sql[sql.index(" ON CONFLICT"):] if " ON CONFLICT" in sql else ""
            self._copy = StagedCopy(table, [table.c[key].name for key in order], conflict,
                                    dialect)
            keys = [order.index(c.key) for c in table.primary_key]
            self._unique = (operator.itemgetter(*keys)
                            if "DO UPDATE" in conflict and keys else None)

    def execute(self, connection: Connection, rows: Iterable[tuple]) -> None:
        """Insert `rows` (tuples of the `given` columns, in that order)."""
        fixed, reorder = self._fixed, self._reorder
        # A batch's rows share values (its decision time): each object is processed once. By
        # identity, not equality: 0.0 == -0.0 and equal times in other zones stay apart.
        processors = [(i, process, {}) for i, process in self._processors]
        out: list = []
        for row in rows:
            values = reorder(row + fixed)
            if processors:
                values = list(values)
                for i, process, done in processors:
                    value = values[i]
                    result = done.get(id(value), done)
                    if result is done:
                        result = done[id(value)] = process(value)
                    values[i] = result
                values = tuple(values)
            out.append(values)
        if not out:
            return
        if (self._copy is not None and len(out) >= bulk.COPY_MIN_ROWS
                and (self._unique is None or len(set(map(self._unique, out))) == len(out))):
            self._copy.write(connection, out)
            return
        if self._names is not None:
            out = [dict(zip(self._names, values, strict=True)) for values in out]
        connection.exec_driver_sql(self.sql, out)


def _checkpoint_move(snapshot: bool) -> Any:
    """The fenced update of a checkpoint row (with its snapshot or not), built once: building
    the statement for every batch cost more than running it."""
    key = ("group_id", "topic", "partition")
    moved = ("next_offset", "updated_at", *(("snapshot", "snapshot_offset") if snapshot else ()))
    return (update(_CHECKPOINTS)
            .where(*(_CHECKPOINTS.c[name] == bindparam(f"of_{name}") for name in key),
                   _CHECKPOINTS.c.next_offset == bindparam("expected_offset"))
            .values({name: bindparam(f"new_{name}") for name in moved}))


#: By whether the checkpoint carries a snapshot.
_CHECKPOINT_MOVES = {snapshot: _checkpoint_move(snapshot) for snapshot in (False, True)}


def _of_partition(table: Any, group_id: str, topic: str, partition: int) -> tuple[Any, ...]:
    """The conditions selecting one partition's rows of a stream-processor table."""
    return (table.c.group_id == group_id, table.c.topic == topic, table.c.partition == partition)


def _decided(row: Any) -> DecisionRecord:
    """A `decided` row (decision columns, then the source's, NULL when none) as a record."""
    values = row._mapping
    source = None if values["record_offset"] is None else RecordSource(
        values["topic"], values["partition"], values["record_offset"])
    return DecisionRecord(
        transaction_id=values["transaction_id"], account_id=values["account_id"],
        event_time=values["event_time"], amount=values["amount"],
        fraud_probability=values["fraud_probability"], anomaly_score=values["anomaly_score"],
        decision=values["decision"], transaction_json=values["transaction_json"],
        reason_codes=values["reason_codes"], model_version=values["model_version"],
        scored_at=values["scored_at"], source=source, rules_fired=values["rules_fired"] or "",
        rule_set_version=values["rule_set_version"] or "")


def _labelled(decision: Decision, label: Label) -> LabelledTransaction:
    return LabelledTransaction(
        transaction_id=decision.transaction_id, transaction_json=decision.transaction_json,
        label=label.label, label_source=label.source, labelled_at=label.labelled_at,
        decision=decision.decision, fraud_probability=decision.fraud_probability,
        anomaly_score=decision.anomaly_score,
    )
