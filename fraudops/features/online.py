"""Online execution of the feature spec, event by event, with per-entity state (the consumer).

`OnlineFeatureState.update(tx)` returns exactly what `compute_batch` computes for the same row of
the same stream (a parity test holds them to 1e-6), out-of-order events included: both follow
the event-time policy of `fraudops.features.policy` (arrival order, each entity's time clamped
to its watermark; `lateness_us` says how late an event is before the caller admits it). The
per-entity tables, each account's state and the velocity windows (the hottest code), run in the
engine `fraudops.features.engine` picks (compiled from `native/` when installed); the label
state, the watermarks and the recent ids are plain Python. A consumer survives restarts by
storing the state: `delta()` hands out the entries (one per account, and per account, merchant
and device velocity) changed since the previous delta, so what a snapshot costs grows with the
traffic since the last one, not with every account ever seen; `restore()` rebuilds the state
from the stored header and entries.

The merchant and device parts can run apart (`owned`): an entity stage keeps one entity's
velocity and label state for the entities of its partitions (`entity_update`), and the scoring
state takes those values as given (`update(tx, given)`). Either way the same code computes
them; with every entity owned (the default) one consumer computes everything, which is right
when it sees every event of the merchants and devices (see `consumers.stages`).

Entries use pickle: they are internal data written and read by the platform's own consumer,
never accepted from outside.
"""

from __future__ import annotations

import functools
import math
import operator
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from fraudops.features import encoding
from fraudops.features.engine import AccountTable, VelocityTable, table_classes
from fraudops.features.labels import LabelState
from fraudops.features.spec import (
    CATEGORY_PREFIX,
    CHANNEL_PREFIX,
    DEFAULT_SEQ_LEN,
    EXPOSURE_WINDOW,
    LABEL_ENTITIES,
    LABEL_WINDOWS,
    NOVELTY_FIELDS,
    VELOCITY_ENTITIES,
    VELOCITY_STATS,
    WINDOWS,
    Z_CLIP,
    Z_VARIANCE_FLOOR,
    FeatureSpec,
)
from fraudops.schema import EXTRA_PREFIX, Transaction, TransactionLabel

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WIDTHS = tuple(WINDOWS.values())
_SNAPSHOT_FORMAT = 3  # 1: the whole state in one pickle; 2: without label state
_ACCOUNT = "account"
_VELOCITY = "velocity."  # + entity
_TAU = 2.0 * math.pi
_SEEN = "seen"
_WATERMARK = "watermark"
#: Entities whose features an entity stage can compute apart (keyed by them in the broker).
STAGE_ENTITIES = ("merchant", "device")
#: How long (event time, behind the newest event) an entity stage remembers the transaction ids
#: it applied, to refuse a duplicate: the upstream stage re-producing its unfinished batch after
#: a crash, a producer retry (see `consumers.stages`).
SEEN_HORIZON_US = 24 * 3600 * 1_000_000
_SEEN_BUCKET_US = 60 * 1_000_000


def entity_feature_names(entity: str) -> tuple[str, ...]:
    """The features an entity stage computes for `entity` ("merchant" or "device"), in the
    order it hands them on: velocity, label-informed, and its "known fraud" flag last."""
    names = [f"{entity}_{stat}_{window}_log" for window in WINDOWS for stat in VELOCITY_STATS]
    for window in LABEL_WINDOWS:
        names += [f"{entity}_fraud_{window}_log", f"{entity}_labelled_{window}_log",
                  f"{entity}_fraud_rate_{window}"]
    return (*names, f"{entity}_fraud_known_{EXPOSURE_WINDOW}")


def epoch_micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class StateDelta:
    """The entries of a state changed since its previous delta, each pickled on its own.

    Applied to a stored copy (upsert by (kind, key), after deleting everything when `full`),
    it brings that copy level with the state; `header` names the format and feature spec.
    """

    header: bytes
    entries: dict[tuple[str, str], bytes]
    #: The entries are the whole state: the stored copy (of an earlier life) must go first.
    full: bool


class _RecentIds:
    """The transaction ids applied in the last `SEEN_HORIZON_US` of event time (behind the
    newest event seen), in one-minute buckets (the snapshot entries)."""

    __slots__ = ("buckets", "dirty", "ids", "newest")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}  # id -> its bucket
        self.buckets: dict[int, list[str]] = {}
        self.newest = 0
        self.dirty: set[int] = set()

    def add(self, tx_id: str, ts: int) -> bool:
        """Remember `tx_id`; False when it is remembered already (a duplicate)."""
        if tx_id in self.ids:
            return False
        bucket = ts // _SEEN_BUCKET_US
        self.ids[tx_id] = bucket
        self.buckets.setdefault(bucket, []).append(tx_id)
        self.dirty.add(bucket)
        if bucket > self.newest // _SEEN_BUCKET_US:  # the horizon moves: once a minute
            horizon = (ts - SEEN_HORIZON_US) // _SEEN_BUCKET_US
            for old in [b for b in self.buckets if b < horizon]:
                for gone in self.buckets.pop(old):
                    del self.ids[gone]
                self.dirty.add(old)
        self.newest = max(self.newest, ts)
        return True

    def load(self, bucket: int, values: tuple | None) -> None:
        if values is not None:
            ids, newest = values
            self.buckets[bucket] = ids
            self.ids.update(dict.fromkeys(ids, bucket))
            self.newest = max(self.newest, newest)


class OnlineFeatureState:
    """Per-account, per-merchant and per-device state for streaming feature computation;
    `owned` names the entities whose state it keeps (the others' values are given)."""

    def __init__(self, spec: FeatureSpec, seq_len: int = DEFAULT_SEQ_LEN,
                 owned: Iterable[str] = tuple(VELOCITY_ENTITIES), engine: str | None = None
                 ) -> None:
        self.spec = spec
        self.seq_len = seq_len
        self.owned = tuple(e for e in VELOCITY_ENTITIES if e in set(owned))
        self._index = {name: i for i, name in enumerate(spec.names)}
        self._velocity_slots = {
            entity: [[self._index[f"{entity}_{stat}_{window}_log"] for stat in VELOCITY_STATS]
                     for window in WINDOWS]
            for entity in VELOCITY_ENTITIES
        }
        # The accounts and the velocity windows by entity kind, in the engine `engine` names
        # (`fraudops.features.engine`: compiled when installed).
        tables = table_classes(engine)
        account_slots = [self._index[f"account_new_{f.removesuffix('_id')}"]
                         for f in NOVELTY_FIELDS]
        account_slots += [self._index[name] for name in (
            "account_first_seen", "account_gap_log", "account_history_log", "account_amount_z",
            "account_amount_diff")]
        self.accounts: AccountTable = tables.account(seq_len, spec.dim, account_slots, Z_CLIP,
                                                     Z_VARIANCE_FLOOR)
        self.velocity: dict[str, VelocityTable] = {
            e: tables.velocity(_WIDTHS, self._velocity_slots[e]) for e in self.owned}
        self._novelty = operator.attrgetter(*NOVELTY_FIELDS)
        #: The sequence masks by rows filled (front-padded: the last `filled` rows are real).
        self._masks = [np.arange(seq_len) >= seq_len - filled for filled in range(seq_len + 1)]
        self.seen = _RecentIds()  # used by the stages only (`consumers.stages`)
        #: The router's account watermarks (the latest event time admitted per account).
        self.watermarks: dict[str, int] = {}
        #: (kind, key) of the entries changed since the last `delta()`.
        self._dirty: set[tuple[str, str]] = set()
        self._full = True  # nothing stored matches this state yet
        self._dim = spec.dim
        self._time_slots = tuple(self._index[name] for name in (
            "amount_log", "hour_sin", "hour_cos", "dow_sin", "dow_cos"))
        #: (one-hot prefix, enum member) -> its slot, filled as members are met.
        self._onehot: dict[tuple[str, object], int] = {}
        #: Verdicts and what they say about the owned accounts, merchants and devices.
        self.labels = LabelState(self.owned)
        self._label_slots: dict = {}
        for entity in LABEL_ENTITIES:  # the counts are log1p'd, the rate is not
            self._label_slots[entity] = [
                (self._index[f"{entity}_fraud_{w}_log"], self._index[f"{entity}_labelled_{w}_log"],
                 self._index[f"{entity}_fraud_rate_{w}"]) for w in LABEL_WINDOWS]
        self._label_slots["merchant_known"] = self._index[f"merchant_fraud_known_{EXPOSURE_WINDOW}"]
        self._label_slots["device_known"] = self._index[f"device_fraud_known_{EXPOSURE_WINDOW}"]
        self._label_slots["risky_visits"] = self._index[
            f"account_risky_visits_{EXPOSURE_WINDOW}_log"]
        self._entity_slots = {e: [self._index[n] for n in entity_feature_names(e)]
                              for e in STAGE_ENTITIES}

    def update(self, tx: Transaction, given: dict[str, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply one event (in arrival order, late or not): its features [F], the account's
        sequence [K, F] including it, and the sequence mask [K]. `given`: the values of the
        entities not owned (`entity_update` of their stage), for those the event has a key of."""
        history, filled = self.accounts.push(tx.account_id, self._vector(tx, given))
        sequence = np.frombuffer(history, dtype=np.float32).reshape(self.seq_len, self._dim)
        return sequence[-1].copy(), sequence, self._masks[filled].copy()

    def route(self, tx: Transaction, allowed_lateness_us: float) -> tuple[str, int]:
        """The router's admission of `tx`, in its account's arrival order (the `transactions`
        partition), under the consumer's rules (`fraudops.features.policy.admit_stream`):
        ("duplicate", 0) for an id admitted before (within `SEEN_HORIZON_US`), ("too_late",
        lateness) for an event more than allowed behind its account's watermark (not
        remembered: a later copy is judged afresh), else ("new", lateness) (remembered; the
        watermark moves)."""
        ts = epoch_micros(tx.timestamp)
        if tx.transaction_id in self.seen.ids:
            return "duplicate", 0
        latest = self.watermarks.get(tx.account_id, ts)
        late_by = max(0, latest - ts)
        if late_by > allowed_lateness_us:
            return "too_late", late_by
        self.seen.add(tx.transaction_id, ts)
        if ts >= latest:
            self.watermarks[tx.account_id] = ts
            self._dirty.add((_WATERMARK, tx.account_id))
        return "new", late_by

    def lateness_us(self, tx: Transaction) -> int:
        """How far (microseconds) `tx` is behind its account's watermark, the latest event time
        applied for the account (0: on time, or a new account). Changes nothing."""
        last = self.accounts.last_ts(tx.account_id)
        return 0 if last is None else max(0, last - epoch_micros(tx.timestamp))

    def features(self, tx: Transaction, given: dict[str, np.ndarray] | None = None
                 ) -> np.ndarray:
        """Compute one event's features and update the state (without the sequence)."""
        return np.array(self._vector(tx, given), dtype=np.float32)

    def _vector(self, tx: Transaction, given: dict[str, np.ndarray] | None) -> list[float]:
        """One event's features (float64, in a list) after updating the state with it."""
        ts = epoch_micros(tx.timestamp)
        cents = round(tx.amount * 100.0)
        vec = [0.0] * self._dim
        at = self._index
        log_amount = math.log1p(cents / 100.0)
        amount_slot, hour_sin, hour_cos, dow_sin, dow_cos = self._time_slots
        vec[amount_slot] = log_amount
        day = (ts % encoding.DAY_US) / encoding.DAY_US
        week = (((ts // encoding.DAY_US) + encoding.EPOCH_WEEKDAY) % 7 + day) / 7.0
        vec[hour_sin], vec[hour_cos] = math.sin(_TAU * day), math.cos(_TAU * day)
        vec[dow_sin], vec[dow_cos] = math.sin(_TAU * week), math.cos(_TAU * week)
        onehot = self._onehot
        for prefix, member in ((CHANNEL_PREFIX, tx.channel), (CATEGORY_PREFIX,
                                                               tx.merchant_category)):
            slot = onehot.get((prefix, member))
            if slot is None:  # the first time (an unknown name raises as before)
                slot = onehot[(prefix, member)] = at[prefix + member.value]
            vec[slot] = 1.0
        self._dirty.add((_ACCOUNT, tx.account_id))
        self.accounts.features(tx.account_id, ts, log_amount, self._novelty(tx), vec)
        account_ts = self._velocity_features(vec, "account", tx.account_id, ts, cents)
        self.labels.entity_features(vec, self._label_slots, "account", tx.account_id, account_ts)
        risky = False
        for entity in STAGE_ENTITIES:
            key = getattr(tx, VELOCITY_ENTITIES[entity])
            if entity in self.velocity:
                risky |= self._entity_features(vec, entity, key, ts, cents)
            else:
                risky |= self._given(vec, entity, key, given)
        self.labels.exposure(vec, self._label_slots, tx.account_id, account_ts, risky)
        for name in self.spec.passthrough:
            value = tx.extra.get(name, 0.0)
            vec[at[EXTRA_PREFIX + name]] = value if math.isfinite(value) else 0.0
        return vec

    def _entity_features(self, vec, entity: str, key: str | None, ts: int, cents: int) -> bool:
        """A merchant's or device's velocity and label features (whether it had confirmed fraud
        in the exposure window); the event's time is clamped to the entity's watermark (the
        event-time policy) for both."""
        t = None if key is None else self._velocity_features(vec, entity, key, ts, cents)
        return self.labels.entity_features(vec, self._label_slots, entity, key, t)

    def _given(self, vec, entity: str, key: str | None,
               given: dict[str, np.ndarray] | None) -> bool:
        """Write the values an entity stage computed (an event without the key: the values
        of no entity, as computed here)."""
        if key is None:
            return self.labels.entity_features(vec, self._label_slots, entity, None, None)
        if given is None or entity not in given:
            raise ValueError(f"no {entity} features given for {entity} {key}")
        values = given[entity]
        for slot, value in zip(self._entity_slots[entity], values, strict=True):
            vec[slot] = float(value)
        return bool(values[-1] > 0)

    def entity_update(self, tx: Transaction, entity: str) -> np.ndarray | None:
        """An entity stage's step: apply `tx` to its `entity`'s state and return the entity's
        features (float64, `entity_feature_names` order). None for a transaction without the
        entity's key, or one applied before (a duplicate: see `SEEN_HORIZON_US`)."""
        key = getattr(tx, VELOCITY_ENTITIES[entity])
        ts = epoch_micros(tx.timestamp)
        if key is None or not self.seen.add(tx.transaction_id, ts):
            return None
        vec = [0.0] * self.spec.dim
        self._entity_features(vec, entity, key, ts, round(tx.amount * 100.0))
        return np.array([vec[slot] for slot in self._entity_slots[entity]], dtype=np.float64)

    def _velocity_features(self, vec, entity: str, key: str, ts: int, cents: int) -> int:
        """Write the entity's window features; returns the event's time clamped to the
        entity's watermark."""
        self._dirty.add((_VELOCITY + entity, key))
        return self.velocity[entity].add(key, ts, cents, vec)

    def apply_label(self, label: TransactionLabel) -> bool:
        """Apply one label as it arrives: it counts for the later events of its account,
        merchant and device from its `labelled_at` on (`fraudops.features.labels`). Idempotent
        (a redelivered label changes nothing); False when it changed nothing or was ignored
        (no `labelled_at`, or no entity keys: counted in `labels.ignored`)."""
        if label.labelled_at is None:
            self.labels.ignored += 1
            return False
        keys = {entity: getattr(label, field) for entity, field in LABEL_ENTITIES.items()}
        return self.labels.apply(label.transaction_id, epoch_micros(label.labelled_at),
                                 label.label, keys)

    def delta(self) -> StateDelta:
        """The entries changed since the previous delta (every entry the first time), pickled;
        starts tracking afresh. Costs in proportion to the accounts, merchants and devices
        seen since then (see `StateDelta`)."""
        if self._full:
            keys = [(_ACCOUNT, key) for key in self.accounts]
            keys += [(_VELOCITY + entity, key) for entity, table in self.velocity.items()
                     for key in table]
            keys += self.labels.keys()
            keys += [(_SEEN, str(bucket)) for bucket in self.seen.buckets]
            keys += [(_WATERMARK, account) for account in self.watermarks]
        else:
            keys = (self._dirty | self.labels.dirty
                    | {(_SEEN, str(bucket)) for bucket in self.seen.dirty})
        # The tables pickle their own entries (the native ones without building them first).
        tables = {_ACCOUNT: self.accounts} | {_VELOCITY + entity: table
                                               for entity, table in self.velocity.items()}
        by_table: dict[str, list[str]] = {}
        others = []
        for kind, key in keys:
            if kind in tables:
                by_table.setdefault(kind, []).append(key)
            else:
                others.append((kind, key))
        entries = {}
        for kind, table_keys in by_table.items():
            entries.update(zip([(kind, key) for key in table_keys], tables[kind].dump(table_keys),
                               strict=True))
        dumps, protocol = pickle.dumps, pickle.HIGHEST_PROTOCOL
        entries.update({(kind, key): dumps(self._entry(kind, key), protocol)
                        for kind, key in others})
        delta = StateDelta(self._header, entries, full=self._full)
        self._dirty, self._full, self.labels.dirty = set(), False, set()
        self.seen.dirty = set()
        return delta

    def _entry(self, kind: str, key: str) -> tuple | None:
        """One entry outside the tables (which `dump` theirs) in plain values (None:
        forgotten since it changed)."""
        if kind in LabelState.KINDS:
            return self.labels.entry(kind, key)
        if kind == _WATERMARK:
            return (self.watermarks[key],)
        ids = self.seen.buckets.get(int(key))  # _SEEN
        return None if ids is None else (ids, self.seen.newest)

    @functools.cached_property
    def _header(self) -> bytes:
        return pickle.dumps({"format": _SNAPSHOT_FORMAT, "spec": self.spec.to_dict(),
                             "seq_len": self.seq_len, "owned": self.owned},
                            protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, header: bytes, entries: Iterable[tuple[str, str, bytes]],
                owned: Iterable[str] | None = None, engine: str | None = None
                ) -> OnlineFeatureState:
        """Rebuild a state from a delta's header and the stored (kind, key, entry) rows;
        refuses another format or feature-spec version (ValueError). With `owned` (the
        entities the caller keeps now) the entries of other entities are dropped."""
        payload = pickle.loads(header)
        if payload.get("format") != _SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported state snapshot format {payload.get('format')!r}")
        spec = FeatureSpec.from_dict(payload["spec"])
        stored_owned = tuple(payload.get("owned", VELOCITY_ENTITIES))
        state = cls(spec, payload["seq_len"], stored_owned if owned is None else owned, engine)
        if spec.fingerprint != payload["spec"]["fingerprint"]:
            raise ValueError("state snapshot was written under a different feature spec")
        for kind, key, blob in entries:
            if kind == _ACCOUNT:
                state.accounts.load(key, pickle.loads(blob))
            elif kind in LabelState.KINDS:
                state.labels.load(kind, key, pickle.loads(blob))
            elif kind == _SEEN:
                state.seen.load(int(key), pickle.loads(blob))
            elif kind == _WATERMARK:
                state.watermarks[key] = pickle.loads(blob)[0]
            else:
                table = state.velocity.get(kind.removeprefix(_VELOCITY))
                if table is not None:
                    table.load(key, pickle.loads(blob))
        # The stored copy is this state, unless it kept other entities (then it is replaced).
        state._full = state.owned != stored_owned
        return state
