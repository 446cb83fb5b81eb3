"""Sliding velocity windows of the streaming state, and the engine that computes them.

`VelocityTable` (one per entity kind: accounts, merchants, devices) keeps, per entity key, the
count, sum and max of its amounts over each window (t - w, t] and writes log1p of them into an
event's feature vector. Two engines implement it with one interface and the same results:

* ``native``: `fraudops_native.VelocityTable`, compiled from Rust (the `native/` crate,
  installed by `make setup`); the consumer's hottest loop, several times faster.
* ``python``: `PyVelocityTable` below, the reference, for an install without the compiled
  engine.

Both write the same snapshot entries, so a state stored by one restores in the other (the
parity tests hold them together: `tests/features/test_windows.py`). `velocity_table_class`
picks the engine: ``FRAUDOPS_FEATURE_ENGINE`` = ``auto`` (the default: native when installed),
``native`` (required: an error without it) or ``python``.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Protocol

ENGINE_ENV = "FRAUDOPS_FEATURE_ENGINE"
ENGINES = ("auto", "native", "python")

#: A snapshot entry: (times, cents, base, heads, sums, maxima) in plain lists and ints.
Entry = tuple[list[int], list[int], int, list[int], list[int], list[list[int]]]


class VelocityTable(Protocol):
    """What both engines offer (`fraudops_native.VelocityTable`, `PyVelocityTable`)."""

    def add(self, key: str, ts: int, cents: int, vec: list[float]) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def entry(self, key: str) -> Entry: ...
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


class PyVelocityTable:
    """The reference engine: one `_Velocity` per key, in a dict."""

    __slots__ = ("entries", "slots", "widths")

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

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.entries))

    def entry(self, key: str) -> Entry:
        return self.entries[key].entry()

    def load(self, key: str, values: Entry) -> None:
        self.entries[key] = _Velocity.from_entry(values)


def velocity_table_class(engine: str | None = None) -> type:
    """The engine's table class: `engine`, else ``FRAUDOPS_FEATURE_ENGINE``, else ``auto``."""
    engine = engine or os.environ.get(ENGINE_ENV) or "auto"
    if engine not in ENGINES:
        raise ValueError(f"{ENGINE_ENV} must be one of {ENGINES}, got {engine!r}")
    if engine == "python":
        return PyVelocityTable
    try:
        from fraudops_native import VelocityTable as NativeVelocityTable
    except ImportError as error:
        if engine == "native":
            raise ImportError("the native feature engine is not installed (pip install "
                              "./native, or make setup; it needs a Rust toolchain)") from error
        return PyVelocityTable
    return NativeVelocityTable
