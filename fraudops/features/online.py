"""Online execution of the feature spec, event by event, with per-entity state (the consumer).

`OnlineFeatureState.update(tx)` returns exactly what `compute_batch` computes for the same row of
the same stream (a parity test holds them to 1e-6), out-of-order events included: both follow
the event-time policy of `fraudops.features.policy` (arrival order, each entity's time clamped
to its watermark; `lateness_us` says how late an event is before the caller admits it). State
is plain Python objects: cheap to update. A consumer survives restarts by storing it: `delta()` hands out the entries (one per
account, and per account, merchant and device velocity) changed since the previous delta, so what
a snapshot costs grows with the traffic since the last one, not with every account ever seen;
`restore()` rebuilds the state from the stored header and entries.

Entries use pickle: they are internal data written and read by the platform's own consumer,
never accepted from outside.
"""

from __future__ import annotations

import functools
import math
import pickle
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from fraudops.features import encoding
from fraudops.features.labels import LabelState
from fraudops.features.spec import (
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
from fraudops.schema import Transaction, TransactionLabel

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WIDTHS = tuple(WINDOWS.values())
_SNAPSHOT_FORMAT = 3  # 1: the whole state in one pickle; 2: without label state
_ACCOUNT = "account"
_VELOCITY = "velocity."  # + entity
_TAU = 2.0 * math.pi


def _amount_z(log_amount: float, n: int, total: float, total_sq: float) -> tuple[float, float]:
    """Scalar twin of `encoding.amount_z` (same float64 operations, so the same results)."""
    if n == 0:
        return 0.0, 0.0
    mean = total / n
    diff = log_amount - mean
    if n < 2:
        return 0.0, diff
    var = max(total_sq / n - mean * mean, 0.0)
    return max(-Z_CLIP, min(Z_CLIP, diff / math.sqrt(var + Z_VARIANCE_FLOOR))), diff


def epoch_micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class _Velocity:
    """Count, sum and max of one entity's amounts over each sliding window (t - w, t].

    Only ints are stored (events in two lists, window maxima as absolute event indices), so the
    hot path allocates no per-event containers for the garbage collector to chase.
    """

    __slots__ = ("base", "cents", "heads", "maxima", "sums", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.cents: list[int] = []
        self.base = 0  # absolute index of times[0] (events before it were compacted away)
        self.heads = [0] * len(_WIDTHS)  # absolute index of each window's oldest event
        self.sums = [0] * len(_WIDTHS)
        self.maxima: list[deque[int]] = [deque() for _ in _WIDTHS]

    def add(self, ts: int, cents: int, vec: list[float], slots) -> None:
        """Record an event and write log1p(count, sum, max) per window into `vec` at `slots`.

        A late event is recorded at the entity's watermark (the event-time policy), which
        keeps `times` sorted."""
        times, amounts, base = self.times, self.cents, self.base
        if times and ts < times[-1]:
            ts = times[-1]
        times.append(ts)
        amounts.append(cents)
        newest = base + len(times) - 1
        for w, width in enumerate(_WIDTHS):
            head, total, maxima = self.heads[w], self.sums[w] + cents, self.maxima[w]
            horizon = ts - width
            while times[head - base] <= horizon:
                total -= amounts[head - base]
                head += 1
            while maxima and amounts[maxima[-1] - base] <= cents:
                maxima.pop()
            maxima.append(newest)
            while maxima[0] < head:
                maxima.popleft()
            self.heads[w], self.sums[w] = head, total
            count_slot, sum_slot, max_slot = slots[w]
            vec[count_slot] = math.log1p(newest - head + 1)
            vec[sum_slot] = math.log1p(total / 100.0)
            vec[max_slot] = math.log1p(amounts[maxima[0] - base] / 100.0)
        self._compact()

    def to_tuple(self) -> tuple:
        """Plain containers (they pickle about 3x faster than the object itself), without the
        events that left every window (`_compact` drops them only now and then)."""
        first = min(self.heads) - self.base
        return (self.times[first:], self.cents[first:], self.base + first, self.heads,
                self.sums, [list(m) for m in self.maxima])

    @classmethod
    def from_tuple(cls, values: tuple) -> _Velocity:
        times, cents, base, heads, sums, maxima = values
        windows = cls.__new__(cls)
        windows.times, windows.cents, windows.base, windows.heads = times, cents, base, heads
        windows.sums, windows.maxima = sums, [deque(m) for m in maxima]
        return windows

    def _compact(self) -> None:
        drop = min(self.heads) - self.base  # the widest window's head
        if drop > 256 and drop * 2 > len(self.times):
            del self.times[:drop], self.cents[:drop]
            self.base += drop


class _Account:
    """What the stream remembers about one account."""

    __slots__ = ("filled", "history", "last_ts", "n", "seen", "sum", "sumsq")

    def __init__(self, seq_len: int, dim: int) -> None:
        self.seen: tuple[set, ...] = tuple(set() for _ in NOVELTY_FIELDS)
        self.last_ts: int | None = None
        self.n = 0
        self.sum = 0.0
        self.sumsq = 0.0
        self.history = np.zeros((seq_len, dim), dtype=np.float32)  # oldest first
        self.filled = 0

    def to_tuple(self) -> tuple:
        """Plain values: they pickle about 3x faster than the object itself."""
        return (self.seen, self.last_ts, self.n, self.sum, self.sumsq, self.history.tobytes(),
                self.history.shape, self.filled)

    @classmethod
    def from_tuple(cls, values: tuple) -> _Account:
        seen, last_ts, n, total, total_sq, history, shape, filled = values
        account = cls.__new__(cls)
        account.seen, account.last_ts, account.n = seen, last_ts, n
        account.sum, account.sumsq, account.filled = total, total_sq, filled
        account.history = np.frombuffer(history, dtype=np.float32).reshape(shape).copy()
        return account

    def push(self, features: np.ndarray) -> None:
        """Append to the last-K history (a rolling array: no per-event allocation)."""
        self.history[:-1] = self.history[1:]
        self.history[-1] = features
        self.filled = min(self.filled + 1, len(self.history))


@dataclass(frozen=True)
class _Plain:
    """An entry already in plain values (the label state's)."""

    values: tuple | None

    def to_tuple(self) -> tuple | None:
        return self.values


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


class OnlineFeatureState:
    """Per-account, per-merchant and per-device state for streaming feature computation."""

    def __init__(self, spec: FeatureSpec, seq_len: int = DEFAULT_SEQ_LEN) -> None:
        self.spec = spec
        self.seq_len = seq_len
        self.accounts: dict[str, _Account] = {}
        self.velocity: dict[str, dict[str, _Velocity]] = {e: {} for e in VELOCITY_ENTITIES}
        #: (kind, key) of the entries changed since the last `delta()`.
        self._dirty: set[tuple[str, str]] = set()
        self._full = True  # nothing stored matches this state yet
        self._index = {name: i for i, name in enumerate(spec.names)}
        self._novelty_slots = [self._index[f"account_new_{f.removesuffix('_id')}"]
                               for f in NOVELTY_FIELDS]
        self._velocity_slots = {
            entity: [[self._index[f"{entity}_{stat}_{window}_log"] for stat in VELOCITY_STATS]
                     for window in WINDOWS]
            for entity in VELOCITY_ENTITIES
        }
        #: Verdicts and what they say about accounts, merchants and devices.
        self.labels = LabelState()
        self._label_slots: dict = {}
        for entity in LABEL_ENTITIES:  # the counts are log1p'd, the rate is not
            self._label_slots[entity] = [
                (self._index[f"{entity}_fraud_{w}_log"], self._index[f"{entity}_labelled_{w}_log"],
                 self._index[f"{entity}_fraud_rate_{w}"]) for w in LABEL_WINDOWS]
        self._label_slots["merchant_known"] = self._index[f"merchant_fraud_known_{EXPOSURE_WINDOW}"]
        self._label_slots["device_known"] = self._index[f"device_fraud_known_{EXPOSURE_WINDOW}"]
        self._label_slots["risky_visits"] = self._index[
            f"account_risky_visits_{EXPOSURE_WINDOW}_log"]

    def update(self, tx: Transaction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply one event (in arrival order, late or not): its features [F], the account's
        sequence [K, F] including it, and the sequence mask [K]."""
        features = self.features(tx)
        self.accounts[tx.account_id].push(features)
        return (features, *self.sequence(tx.account_id))

    def lateness_us(self, tx: Transaction) -> int:
        """How far (microseconds) `tx` is behind its account's watermark, the latest event time
        applied for the account (0: on time, or a new account). Changes nothing."""
        account = self.accounts.get(tx.account_id)
        if account is None or account.last_ts is None:
            return 0
        return max(0, account.last_ts - epoch_micros(tx.timestamp))

    def features(self, tx: Transaction) -> np.ndarray:
        """Compute one event's features and update the state (without the sequence)."""
        ts = epoch_micros(tx.timestamp)
        cents = round(tx.amount * 100.0)
        vec = [0.0] * self.spec.dim
        at = self._index
        log_amount = math.log1p(cents / 100.0)
        vec[at["amount_log"]] = log_amount
        day = (ts % encoding.DAY_US) / encoding.DAY_US
        week = (((ts // encoding.DAY_US) + encoding.EPOCH_WEEKDAY) % 7 + day) / 7.0
        vec[at["hour_sin"]], vec[at["hour_cos"]] = math.sin(_TAU * day), math.cos(_TAU * day)
        vec[at["dow_sin"]], vec[at["dow_cos"]] = math.sin(_TAU * week), math.cos(_TAU * week)
        vec[at["channel_" + tx.channel.value]] = 1.0
        vec[at["category_" + tx.merchant_category.value]] = 1.0
        account = self.accounts.get(tx.account_id)
        if account is None:
            account = self.accounts[tx.account_id] = _Account(self.seq_len, self.spec.dim)
        self._dirty.add((_ACCOUNT, tx.account_id))
        self._account_features(vec, account, tx, ts, log_amount)
        keys, times = {}, {}
        for entity, key in VELOCITY_ENTITIES.items():
            entity_key = keys[entity] = getattr(tx, key)
            times[entity] = None
            if entity_key is not None:
                # The entity's clamped time (the event-time policy) for its label windows too.
                times[entity] = self._velocity_features(vec, entity, entity_key, ts, cents)
        self.labels.features(vec, self._label_slots, times, keys)
        for name in self.spec.passthrough:
            value = tx.extra.get(name, 0.0)
            vec[at["extra_" + name]] = value if math.isfinite(value) else 0.0
        return np.array(vec, dtype=np.float32)

    def _account_features(self, vec, account: _Account, tx, ts: int, log_amount: float) -> None:
        at = self._index
        for field, seen, slot in zip(NOVELTY_FIELDS, account.seen, self._novelty_slots,
                                     strict=True):
            value = getattr(tx, field)
            if value is not None and value not in seen:
                seen.add(value)
                vec[slot] = 1.0
        first = account.last_ts is None
        if not first and ts < account.last_ts:
            ts = account.last_ts  # a late event: its gap is zero, the watermark stays
        vec[at["account_first_seen"]] = float(first)
        vec[at["account_gap_log"]] = 0.0 if first else math.log1p((ts - account.last_ts) / 1e6)
        vec[at["account_history_log"]] = math.log1p(account.n)
        z, diff = _amount_z(log_amount, account.n, account.sum, account.sumsq)
        vec[at["account_amount_z"]], vec[at["account_amount_diff"]] = z, diff
        account.last_ts = ts
        account.n += 1
        account.sum += log_amount
        account.sumsq += log_amount * log_amount

    def _velocity_features(self, vec, entity: str, key: str, ts: int, cents: int) -> int:
        table = self.velocity[entity]
        windows = table.get(key)
        if windows is None:
            windows = table[key] = _Velocity()
        self._dirty.add((_VELOCITY + entity, key))
        windows.add(ts, cents, vec, self._velocity_slots[entity])
        return windows.times[-1]

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

    def sequence(self, account_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The account's last K feature vectors, front-padded with zeros, and the mask."""
        mask = np.zeros(self.seq_len, dtype=bool)
        account = self.accounts.get(account_id)
        if account is None:
            return np.zeros((self.seq_len, self.spec.dim), dtype=np.float32), mask
        mask[self.seq_len - account.filled:] = True
        return account.history.copy(), mask

    def delta(self) -> StateDelta:
        """The entries changed since the previous delta (every entry the first time), pickled;
        starts tracking afresh. Costs in proportion to the accounts, merchants and devices
        seen since then (see `StateDelta`)."""
        if self._full:
            keys = [(_ACCOUNT, key) for key in self.accounts]
            keys += [(_VELOCITY + entity, key) for entity, table in self.velocity.items()
                     for key in table]
            keys += self.labels.keys()
        else:
            keys = self._dirty | self.labels.dirty
        dumps, protocol = pickle.dumps, pickle.HIGHEST_PROTOCOL
        entries = {(kind, key): dumps(self._entry(kind, key).to_tuple(), protocol)
                   for kind, key in keys}
        delta = StateDelta(self._header, entries, full=self._full)
        self._dirty, self._full, self.labels.dirty = set(), False, set()
        return delta

    def _entry(self, kind: str, key: str) -> _Account | _Velocity | _Plain:
        if kind == _ACCOUNT:
            return self.accounts[key]
        if kind in LabelState.KINDS:
            return _Plain(self.labels.entry(kind, key))
        return self.velocity[kind.removeprefix(_VELOCITY)][key]

    @functools.cached_property
    def _header(self) -> bytes:
        return pickle.dumps({"format": _SNAPSHOT_FORMAT, "spec": self.spec.to_dict(),
                             "seq_len": self.seq_len}, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, header: bytes,
                entries: Iterable[tuple[str, str, bytes]]) -> OnlineFeatureState:
        """Rebuild a state from a delta's header and the stored (kind, key, entry) rows;
        refuses another format or feature-spec version (ValueError)."""
        payload = pickle.loads(header)
        if payload.get("format") != _SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported state snapshot format {payload.get('format')!r}")
        spec = FeatureSpec.from_dict(payload["spec"])
        state = cls(spec, payload["seq_len"])
        if spec.fingerprint != payload["spec"]["fingerprint"]:
            raise ValueError("state snapshot was written under a different feature spec")
        for kind, key, blob in entries:
            if kind == _ACCOUNT:
                state.accounts[key] = _Account.from_tuple(pickle.loads(blob))
            elif kind in LabelState.KINDS:
                state.labels.load(kind, key, pickle.loads(blob))
            else:
                table = state.velocity[kind.removeprefix(_VELOCITY)]
                table[key] = _Velocity.from_tuple(pickle.loads(blob))
        state._full = False  # the stored copy is this state
        return state
