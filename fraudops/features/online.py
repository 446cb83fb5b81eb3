"""Online execution of the feature spec, event by event, with per-entity state (the consumer).

`OnlineFeatureState.update(tx)` returns exactly what `compute_batch` computes for the same row of
the same stream (a parity test holds them to 1e-6). State is plain Python objects: cheap to
update, and `snapshot()`/`restore()` turn it into bytes so a consumer survives restarts.

Snapshots use pickle: they are internal data written and read by the platform's own consumer,
never accepted from outside.
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from datetime import UTC, datetime

import numpy as np

from fraudops.features import encoding
from fraudops.features.spec import (
    DEFAULT_SEQ_LEN,
    NOVELTY_FIELDS,
    VELOCITY_ENTITIES,
    WINDOWS,
    Z_CLIP,
    Z_VARIANCE_FLOOR,
    FeatureSpec,
)
from fraudops.schema import Transaction

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WIDTHS = tuple(WINDOWS.values())
_SNAPSHOT_FORMAT = 1


def epoch_micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class _Velocity:
    """Count, sum and max of one entity's amounts over each sliding window (t - w, t]."""

    __slots__ = ("times", "cents", "heads", "sums", "maxima")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.cents: list[int] = []
        self.heads = [0] * len(_WIDTHS)
        self.sums = [0] * len(_WIDTHS)
        self.maxima: list[deque] = [deque() for _ in _WIDTHS]

    def add(self, ts: int, cents: int) -> list[tuple[int, int, int]]:
        """Record an event; return (count, sum, max) per window, the event included."""
        times, amounts = self.times, self.cents
        times.append(ts)
        amounts.append(cents)
        out = []
        for w, width in enumerate(_WIDTHS):
            head, total, maxima = self.heads[w], self.sums[w] + cents, self.maxima[w]
            while times[head] <= ts - width:
                total -= amounts[head]
                head += 1
            while maxima and maxima[-1][1] <= cents:
                maxima.pop()
            maxima.append((ts, cents))
            while maxima[0][0] <= ts - width:
                maxima.popleft()
            self.heads[w], self.sums[w] = head, total
            out.append((len(times) - head, total, maxima[0][1]))
        self._compact()
        return out

    def _compact(self) -> None:
        oldest = min(self.heads)  # the widest window's head
        if oldest > 256 and oldest * 2 > len(self.times):
            del self.times[:oldest], self.cents[:oldest]
            self.heads = [h - oldest for h in self.heads]


class _Account:
    """What the stream remembers about one account."""

    __slots__ = ("seen", "last_ts", "n", "sum", "sumsq", "history")

    def __init__(self, seq_len: int) -> None:
        self.seen: tuple[set, ...] = tuple(set() for _ in NOVELTY_FIELDS)
        self.last_ts: int | None = None
        self.n = 0
        self.sum = 0.0
        self.sumsq = 0.0
        self.history: deque[np.ndarray] = deque(maxlen=seq_len)


class OnlineFeatureState:
    """Per-account, per-merchant and per-device state for streaming feature computation."""

    def __init__(self, spec: FeatureSpec, seq_len: int = DEFAULT_SEQ_LEN) -> None:
        self.spec = spec
        self.seq_len = seq_len
        self.accounts: dict[str, _Account] = {}
        self.velocity: dict[str, dict[str, _Velocity]] = {e: {} for e in VELOCITY_ENTITIES}
        self._index = {name: i for i, name in enumerate(spec.names)}

    def update(self, tx: Transaction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply one event (in stream order): its features [F], the account's sequence [K, F]
        including it, and the sequence mask [K]."""
        features = self.features(tx)
        history = self.accounts[tx.account_id].history
        history.append(features)
        return (features, *self.sequence(tx.account_id))

    def features(self, tx: Transaction) -> np.ndarray:
        """Compute one event's features and update the state (without the sequence)."""
        ts = epoch_micros(tx.timestamp)
        cents = int(encoding.to_cents(np.array([tx.amount]))[0])
        vec = np.zeros(self.spec.dim, dtype=np.float64)
        put = self._put(vec)
        log_amount = float(encoding.cents_log(cents))
        put("amount_log", log_amount)
        for name, value in zip(("hour_sin", "hour_cos", "dow_sin", "dow_cos"),
                               encoding.cyclic_time(np.array([ts]))[0], strict=True):
            put(name, value)
        put(f"channel_{tx.channel.value}", 1.0)
        put(f"category_{tx.merchant_category.value}", 1.0)
        account = self.accounts.get(tx.account_id)
        if account is None:
            account = self.accounts[tx.account_id] = _Account(self.seq_len)
        self._account_features(put, account, tx, ts, log_amount)
        for entity, key in VELOCITY_ENTITIES.items():
            entity_key = getattr(tx, key)
            if entity_key is not None:
                self._velocity_features(put, entity, entity_key, ts, cents)
        for name in self.spec.passthrough:
            value = tx.extra.get(name, 0.0)
            put(f"extra_{name}", value if math.isfinite(value) else 0.0)
        return vec.astype(np.float32)

    def _put(self, vec: np.ndarray):
        index = self._index

        def put(name: str, value: float) -> None:
            vec[index[name]] = value

        return put

    def _account_features(self, put, account: _Account, tx, ts: int, log_amount: float) -> None:
        for field, seen in zip(NOVELTY_FIELDS, account.seen, strict=True):
            value = getattr(tx, field)
            if value is not None and value not in seen:
                seen.add(value)
                put(f"account_new_{field.removesuffix('_id')}", 1.0)
        first = account.last_ts is None
        put("account_first_seen", float(first))
        put("account_gap_log", 0.0 if first else math.log1p((ts - account.last_ts) / 1e6))
        put("account_history_log", math.log1p(account.n))
        z, diff = encoding.amount_z(log_amount, account.n, account.sum, account.sumsq,
                                    Z_VARIANCE_FLOOR, Z_CLIP)
        put("account_amount_z", float(z))
        put("account_amount_diff", float(diff))
        account.last_ts = ts
        account.n += 1
        account.sum += log_amount
        account.sumsq += log_amount * log_amount

    def _velocity_features(self, put, entity: str, key: str, ts: int, cents: int) -> None:
        table = self.velocity[entity]
        windows = table.get(key)
        if windows is None:
            windows = table[key] = _Velocity()
        for window, (count, total, biggest) in zip(WINDOWS, windows.add(ts, cents), strict=True):
            put(f"{entity}_count_{window}_log", math.log1p(count))
            put(f"{entity}_sum_{window}_log", math.log1p(total / 100.0))
            put(f"{entity}_max_{window}_log", math.log1p(biggest / 100.0))

    def sequence(self, account_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The account's last K feature vectors, front-padded with zeros, and the mask."""
        x = np.zeros((self.seq_len, self.spec.dim), dtype=np.float32)
        mask = np.zeros(self.seq_len, dtype=bool)
        account = self.accounts.get(account_id)
        if account is not None and account.history:
            n = len(account.history)
            x[self.seq_len - n:] = np.stack(account.history)
            mask[self.seq_len - n:] = True
        return x, mask

    def snapshot(self) -> bytes:
        """The whole state as bytes (see module docstring on trust)."""
        payload = {"format": _SNAPSHOT_FORMAT, "spec": self.spec.to_dict(), "seq_len": self.seq_len,
                   "accounts": self.accounts, "velocity": self.velocity}
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, blob: bytes) -> OnlineFeatureState:
        """Rebuild a state from `snapshot()` bytes; refuses another feature-spec version."""
        payload = pickle.loads(blob)  # noqa: S301 - internal data, see module docstring
        if payload.get("format") != _SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported state snapshot format {payload.get('format')!r}")
        spec = FeatureSpec.from_dict(payload["spec"])
        state = cls(spec, payload["seq_len"])
        if spec.fingerprint != payload["spec"]["fingerprint"]:
            raise ValueError("state snapshot was written under a different feature spec")
        state.accounts, state.velocity = payload["accounts"], payload["velocity"]
        return state
