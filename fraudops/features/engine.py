"""The per-entity tables of the streaming feature state, and the engine that runs them.

Two tables hold what `fraudops.features.online.OnlineFeatureState` updates for every event:

* a `VelocityTable` per entity kind (accounts, merchants, devices) keeps, per entity key, the
  count, sum and max of its amounts over each window (t - w, t] and writes log1p of them into
  the event's feature vector;
* the `AccountTable` keeps each account's novelty sets, amount statistics and last-K feature
  history, writes the account features and hands out the sequence the model sees.

Two engines implement both with one interface and the same results:

* ``native``: `fraudops_native`, compiled from Rust (the `native/` crate, installed by
  `make setup` and in the images): the consumer's hottest code, several times faster;
* ``python``: `PyVelocityTable` and `PyAccountTable` below, the reference, for an install
  without the compiled engine.

Both write the same snapshot entries, so a state stored by one restores in the other (the
tests hold them together: `tests/features/test_engine.py`). `table_classes` picks the engine:
``FRAUDOPS_FEATURE_ENGINE`` = ``auto`` (the default: native when installed), ``native``
(required: an error without it) or ``python``.
"""

from __future__ import annotations

import math
import os
import pickle
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, Protocol

import numpy as np

ENGINE_ENV = "FRAUDOPS_FEATURE_ENGINE"
ENGINES = ("auto", "native", "python")

#: A velocity snapshot entry: (times, cents, base, heads, sums, maxima) in plain lists and ints.
Entry = tuple[list[int], list[int], int, list[int], list[int], list[list[int]]]
#: An account snapshot entry: (seen sets, last_ts, n, sum, sumsq, history as float32 bytes,
#: its shape, filled rows).
AccountEntry = tuple[tuple[set[str], ...], int | None, int, float, float, bytes,
                     tuple[int, int], int]


class VelocityTable(Protocol):
    """What both engines offer (`fraudops_native.VelocityTable`, `PyVelocityTable`)."""

    def add(self, key: str, ts: int, cents: int, vec: list[float]) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def entry(self, key: str) -> Entry: ...
    def dump(self, keys: Iterable[str]) -> list[bytes]: ...
    def load(self, key: str, values: Entry) -> None: ...


class _Velocity:
    """Count, sum and max of one entity's amounts over each sliding window (t - w, t].

    Only ints are stored (events in two lists, window maxima as absolute event indices), so the
    hot path allocates no per-event containers for the garbage collector to chase.
    """

    __slots__ = ("base", "cents", "heads", "maxima", "sums", "times")

    def __init__(self, windows: int) -> None:
        self.times: list[int] = []
        self.cents: list[int] = []
        self.base = 0  # absolute index of times[0] (events before it were compacted away)
        self.heads = [0] * windows  # absolute index of each window's oldest event
        self.sums = [0] * windows
        self.maxima: list[deque[int]] = [deque() for _ in range(windows)]

    def add(self, ts: int, cents: int, widths: Sequence[int], vec: list[float], slots) -> int:
        """Record an event and write log1p(count, sum, max) per window into `vec` at `slots`;
        returns its time. A late event is recorded at the entity's watermark (the event-time
        policy), which keeps `times` sorted."""
        times, amounts, base = self.times, self.cents, self.base
        if times and ts < times[-1]:
            ts = times[-1]
        times.append(ts)
        amounts.append(cents)
        newest = base + len(times) - 1
        heads, sums, all_maxima, log1p = self.heads, self.sums, self.maxima, math.log1p
        # Locals instead of attribute look-ups in the loop; the same operations in the same
        # order as the native engine, so the same floats.
        for w, width in enumerate(widths):
            head, total, maxima = heads[w], sums[w] + cents, all_maxima[w]
            horizon = ts - width
            while times[head - base] <= horizon:
                total -= amounts[head - base]
                head += 1
            while maxima and amounts[maxima[-1] - base] <= cents:
                maxima.pop()
            maxima.append(newest)
            while maxima[0] < head:
                maxima.popleft()
            heads[w], sums[w] = head, total
            count_slot, sum_slot, max_slot = slots[w]
            vec[count_slot] = log1p(newest - head + 1)
            vec[sum_slot] = log1p(total / 100.0)
            vec[max_slot] = log1p(amounts[maxima[0] - base] / 100.0)
        if heads[0] - base > 256:  # cheap test first: `_compact` looks at every window
            self._compact()
        return ts

    def entry(self) -> Entry:
        """Plain containers, without the events that left every window (`_compact` drops them
        only now and then)."""
        first = min(self.heads) - self.base
        return (self.times[first:], self.cents[first:], self.base + first, list(self.heads),
                list(self.sums), [list(m) for m in self.maxima])

    @classmethod
    def from_entry(cls, values: Entry) -> _Velocity:
        times, cents, base, heads, sums, maxima = values
        windows = cls.__new__(cls)
        windows.times, windows.cents, windows.base = list(times), list(cents), base
        windows.heads, windows.sums = list(heads), list(sums)
        windows.maxima = [deque(m) for m in maxima]
        return windows

    def _compact(self) -> None:
        drop = min(self.heads) - self.base  # the widest window's head
        if drop > 256 and drop * 2 > len(self.times):
            del self.times[:drop], self.cents[:drop]
            self.base += drop


class _Keyed:
    """A Python table's keys: its `entries` dict's (iterated over a copy, as the native
    tables hand out theirs)."""

    __slots__ = ("entries",)
    entries: dict

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.entries))

    def dump(self, keys: Iterable[str]) -> list[bytes]:
        """The snapshot entries of `keys`, pickled (the native tables write theirs directly)."""
        return [pickle.dumps(self.entry(key), pickle.HIGHEST_PROTOCOL) for key in keys]


class PyVelocityTable(_Keyed):
    """The reference engine: one `_Velocity` per key, in a dict."""

    __slots__ = ("slots", "widths")

    def __init__(self, widths: Sequence[int], slots: Sequence[Sequence[int]]) -> None:
        if len(widths) != len(slots) or any(w <= 0 for w in widths):
            raise ValueError("one (count, sum, max) slot triple per window, every width > 0")
        self.widths = tuple(widths)
        self.slots = tuple(tuple(s) for s in slots)
        self.entries: dict[str, _Velocity] = {}

    def add(self, key: str, ts: int, cents: int, vec: list[float]) -> int:
        windows = self.entries.get(key)
        if windows is None:
            windows = self.entries[key] = _Velocity(len(self.widths))
        return windows.add(ts, cents, self.widths, vec, self.slots)

    def entry(self, key: str) -> Entry:
        return self.entries[key].entry()

    def load(self, key: str, values: Entry) -> None:
        self.entries[key] = _Velocity.from_entry(values)


class AccountTable(Protocol):
    """What both engines offer (`fraudops_native.AccountTable`, `PyAccountTable`)."""

    def features(self, key: str, ts: int, log_amount: float,
                 novelty: tuple[str | None, str | None, str | None], vec: list[float]) -> None: ...
    def push(self, key: str, vec: list[float]) -> tuple[bytearray, int]: ...
    def last_ts(self, key: str) -> int | None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def entry(self, key: str) -> AccountEntry: ...
    def dump(self, keys: Iterable[str]) -> list[bytes]: ...
    def load(self, key: str, values: AccountEntry) -> None: ...


def amount_z(log_amount: float, n: int, total: float, total_sq: float, clip: float,
             floor: float) -> tuple[float, float]:
    """Scalar twin of `encoding.amount_z` (same float64 operations, so the same results)."""
    if n == 0:
        return 0.0, 0.0
    mean = total / n
    diff = log_amount - mean
    if n < 2:
        return 0.0, diff
    var = max(total_sq / n - mean * mean, 0.0)
    return max(-clip, min(clip, diff / math.sqrt(var + floor))), diff


class _Account:
    """What the stream remembers about one account."""

    __slots__ = ("filled", "history", "last_ts", "n", "seen", "sum", "sumsq")

    def __init__(self, seq_len: int, dim: int) -> None:
        self.seen: tuple[set[str], ...] = (set(), set(), set())
        self.last_ts: int | None = None
        self.n = 0
        self.sum = 0.0
        self.sumsq = 0.0
        self.history = np.zeros((seq_len, dim), dtype=np.float32)  # oldest first
        self.filled = 0


class PyAccountTable(_Keyed):
    """The reference engine's accounts: one `_Account` per account id, in a dict.

    `slots`: positions of (new merchant, new device, new country, first seen, gap, history
    length, amount z, amount difference); `z_clip`, `z_floor`: the z-score's clip and variance
    floor."""

    __slots__ = ("dim", "seq_len", "slots", "z_clip", "z_floor")

    def __init__(self, seq_len: int, dim: int, slots: Sequence[int], z_clip: float,
                 z_floor: float) -> None:
        if seq_len <= 0 or len(slots) != 8 or any(s >= dim for s in slots):
            raise ValueError("seq_len must be > 0 and every slot below dim")
        self.seq_len, self.dim, self.slots = seq_len, dim, tuple(slots)
        self.z_clip, self.z_floor = z_clip, z_floor
        self.entries: dict[str, _Account] = {}

    def features(self, key: str, ts: int, log_amount: float,
                 novelty: tuple[str | None, str | None, str | None], vec: list[float]) -> None:
        """Apply an event to the account's statistics and write its account features (a late
        event's time clamped to the account's watermark: its gap is zero)."""
        account = self.entries.get(key)
        if account is None:
            account = self.entries[key] = _Account(self.seq_len, self.dim)
        *novelty_slots, first_slot, gap_slot, history_slot, z_slot, diff_slot = self.slots
        for value, seen, slot in zip(novelty, account.seen, novelty_slots, strict=True):
            if value is not None and value not in seen:
                seen.add(value)
                vec[slot] = 1.0
        last = account.last_ts
        if last is not None and ts < last:
            ts = last
        vec[first_slot] = float(last is None)
        vec[gap_slot] = 0.0 if last is None else math.log1p((ts - last) / 1e6)
        vec[history_slot] = math.log1p(account.n)
        vec[z_slot], vec[diff_slot] = amount_z(log_amount, account.n, account.sum,
                                               account.sumsq, self.z_clip, self.z_floor)
        account.last_ts = ts
        account.n += 1
        account.sum += log_amount
        account.sumsq += log_amount * log_amount

    def push(self, key: str, vec: list[float]) -> tuple[bytearray, int]:
        """Append `vec` to the account's last-K history; the history after it (float32 bytes,
        oldest first, front-padded with zeros) and the rows filled."""
        if len(vec) != self.dim:
            raise ValueError(f"a feature vector has {self.dim} values")
        account = self.entries.get(key)
        if account is None:
            account = self.entries[key] = _Account(self.seq_len, self.dim)
        history = account.history
        history[:-1] = history[1:]
        history[-1] = vec
        account.filled = min(account.filled + 1, self.seq_len)
        return bytearray(history.tobytes()), account.filled

    def last_ts(self, key: str) -> int | None:
        account = self.entries.get(key)
        return None if account is None else account.last_ts

    def entry(self, key: str) -> AccountEntry:
        a = self.entries[key]
        return (tuple(set(s) for s in a.seen), a.last_ts, a.n, a.sum, a.sumsq,
                a.history.tobytes(), a.history.shape, a.filled)

    def load(self, key: str, values: AccountEntry) -> None:
        seen, last_ts, n, total, total_sq, history, shape, filled = values
        if (tuple(shape) != (self.seq_len, self.dim) or len(history) != 4 * self.seq_len * self.dim
                or not 0 <= filled <= self.seq_len or n < 0):
            raise ValueError(f"not an account entry of shape ({self.seq_len}, {self.dim})")
        account = _Account.__new__(_Account)
        account.seen = tuple(set(s) for s in seen)
        account.last_ts, account.n, account.sum, account.sumsq = last_ts, n, total, total_sq
        account.history = np.frombuffer(history, dtype=np.float32).reshape(shape).copy()
        account.filled = filled
        self.entries[key] = account


class Tables(NamedTuple):
    """An engine's table classes."""

    velocity: type[VelocityTable]
    account: type[AccountTable]


PYTHON = Tables(PyVelocityTable, PyAccountTable)


def table_classes(engine: str | None = None) -> Tables:
    """The engine's table classes: `engine`, else ``FRAUDOPS_FEATURE_ENGINE``, else ``auto``."""
    engine = engine or os.environ.get(ENGINE_ENV) or "auto"
    if engine not in ENGINES:
        raise ValueError(f"{ENGINE_ENV} must be one of {ENGINES}, got {engine!r}")
    if engine == "python":
        return PYTHON
    try:
        import fraudops_native
    except ImportError as error:
        if engine == "native":
            raise ImportError("the native feature engine is not installed (pip install "
                              "./native, or make setup; it needs a Rust toolchain)") from error
        return PYTHON
    return Tables(fraudops_native.VelocityTable, fraudops_native.AccountTable)
