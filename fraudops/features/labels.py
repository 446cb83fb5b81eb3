"""Label-informed features: what confirmed verdicts say about an account, merchant or device.

One rule, two execution modes (`fraudops.features.batch` replays it over a label frame,
`LabelState` applies labels one by one as the consumer receives them):

* **Verdicts, not labels.** A transaction's labels, ordered by (`labelled_at`, verdict), become
  *verdict runs* (`verdict_runs`): a label repeating the current verdict changes nothing (a
  duplicate, or a redelivered message, counts once); a label with another verdict closes the
  current run at its `labelled_at` and opens a new one (a flip replaces the earlier verdict from
  its time on). A label more than `LABEL_MEMORY_US` (28 days) after the start of the run it
  repeats opens a new run: the old one has left every window by then, and this is what lets the
  online state forget transactions, so its memory is bounded by the widest window.
* **Point in time.** A run (since, until, verdict) of a transaction counts for a later event of
  the same account, merchant or device at time t, in window w, when ``t - w < since < t`` (known
  strictly before t) and ``until >= t`` (no flip known strictly before t). The event's time is
  clamped to the entity's watermark as for the velocity windows (the event-time policy).
* **Entity keys** are the judged transaction's: in batch those of the frame's row with the
  label's transaction id (a label for a transaction not in the frame is ignored and counted);
  online those the label carries (`TransactionLabel` carries the stored transaction's keys; a
  label with none is ignored and counted).

Features per entity and window: log1p(fraud runs), log1p(labelled runs) and the smoothed fraud
rate ``(fraud + prior * k) / (labelled + k)``; plus "the merchant / the device had confirmed
fraud in the last 7 days" and the account's *risky visits*: how many of its events in the last
7 days (this one included) were at a merchant or on a device with confirmed fraud in the 7 days
before that event.

Online, each label is applied when it arrives and counts for the events after it (if its
`labelled_at` is before theirs): batch and online agree when every label arrives before the
first event it counts for, whatever the order among labels. A label that arrives later than that
counts only from its arrival on; and the state forgets a transaction's verdicts a week after they
left the widest window, so a label more than a week out of order may count once more.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable

from fraudops.features.spec import (
    EXPOSURE_WINDOW,
    LABEL_ENTITIES,
    LABEL_MEMORY_US,
    LABEL_PRIOR_RATE,
    LABEL_PRIOR_WEIGHT,
    LABEL_WINDOWS,
    MICROS,
)

#: A run no later label closed.
OPEN = 2**62
_WIDTHS = tuple(LABEL_WINDOWS.values())
_EXPOSURE_US = LABEL_WINDOWS[EXPOSURE_WINDOW]
_EXPOSURE = tuple(LABEL_WINDOWS).index(EXPOSURE_WINDOW)
#: The online state forgets a transaction's verdicts this long after they left every window.
FORGET_SLACK_US = 7 * 86_400 * MICROS
_SWEEP_EVERY = 4096

Run = tuple[int, int, int]  # (since, until, verdict)


def verdict_runs(labels: Iterable[tuple[int, int]]) -> list[Run]:
    """A transaction's verdict runs from its labels (labelled_at in microseconds, verdict),
    in any order (see the module docstring)."""
    runs: list[list[int]] = []
    for at, verdict in sorted(set(labels)):
        if runs and runs[-1][2] == verdict and at - runs[-1][0] < LABEL_MEMORY_US:
            continue  # the verdict known already: counts once
        if runs:
            runs[-1][1] = at
        runs.append([at, OPEN, verdict])
    return [tuple(run) for run in runs]


def smoothed_rate(fraud, labelled):
    """The fraud rate shrunk towards the prior (works on floats and numpy arrays)."""
    return (fraud + LABEL_PRIOR_RATE * LABEL_PRIOR_WEIGHT) / (labelled + LABEL_PRIOR_WEIGHT)


_PRIOR = smoothed_rate(0, 0)


class EntityLabels:
    """The verdict runs of one entity's transactions within the widest window: counts over
    trailing windows at any time after the entity's watermark, by bisection."""

    __slots__ = ("closed", "fraud", "labelled")

    def __init__(self) -> None:
        self.labelled: list[int] = []  # every run's `since`, sorted
        self.fraud: list[int] = []  # the fraud runs' `since`, sorted
        self.closed: list[Run] = []  # runs a later label closed (flips: few)

    def add(self, run: Run) -> None:
        since, until, verdict = run
        insort(self.labelled, since)
        if verdict:
            insort(self.fraud, since)
        if until != OPEN:
            self.closed.append(run)

    def remove(self, run: Run) -> None:
        """Take a run out (already pruned: nothing to do, it could never count again)."""
        since, until, verdict = run
        for values in (self.labelled, self.fraud) if verdict else (self.labelled,):
            i = bisect_left(values, since)
            if i < len(values) and values[i] == since:
                del values[i]
        if until != OPEN and run in self.closed:
            self.closed.remove(run)

    def counts(self, t: int) -> list[tuple[int, int]]:
        """(fraud, labelled) per window at time `t`; forgets what can never count again (the
        caller's `t` never goes back: it is the entity's watermark)."""
        self._prune(t - LABEL_MEMORY_US)
        out = []
        for width in _WIDTHS:
            low = t - width
            fraud = bisect_left(self.fraud, t) - bisect_right(self.fraud, low)
            labelled = bisect_left(self.labelled, t) - bisect_right(self.labelled, low)
            for since, until, verdict in self.closed:
                if low < since < t and until < t:
                    labelled -= 1
                    fraud -= verdict
            out.append((fraud, labelled))
        return out

    def _prune(self, horizon: int) -> None:
        for values in (self.labelled, self.fraud):
            drop = bisect_right(values, horizon)
            if drop:
                del values[:drop]
        if self.closed:
            self.closed = [run for run in self.closed if run[0] > horizon]

    def to_tuple(self) -> tuple:
        return self.labelled, self.fraud, self.closed

    @classmethod
    def from_tuple(cls, values: tuple) -> EntityLabels:
        entity = cls.__new__(cls)
        entity.labelled, entity.fraud, entity.closed = values
        return entity


class LabelState:
    """The label-informed part of the online state: per-transaction verdicts (to apply a flip
    or ignore a repeat), per-entity runs, and each account's recent risky visits."""

    def __init__(self, entities: Iterable[str] = tuple(LABEL_ENTITIES)) -> None:
        #: transaction id -> (labels [(labelled_at, verdict)], entity keys, runs)
        self.verdicts: dict[str, tuple[list, tuple, list[Run]]] = {}
        #: The entities whose runs this state keeps (an entity stage keeps its own only).
        self.entities: dict[str, dict[str, EntityLabels]] = {e: {} for e in entities}
        #: account -> clamped times of its risky visits in the exposure window
        self.risky: dict[str, list[int]] = {}
        self.ignored = 0  # labels without entity keys (their transaction unknown to the sender)
        self.watermark = -OPEN  # the latest labelled_at applied
        self.dirty: set[tuple[str, str]] = set()
        self._since_sweep = 0

    def apply(self, tx_id: str, at: int, verdict: int, keys: dict[str, str | None]) -> bool:
        """Apply one label (labelled_at `at` in microseconds); False when it changes nothing
        (a repeat, a redelivery) or is ignored (no entity keys)."""
        record = self.verdicts.get(tx_id)
        if record is None:
            if not any(keys.get(e) for e in self.entities):
                self.ignored += 1
                return False
            record = ([], tuple(keys[e] for e in LABEL_ENTITIES), [])
        labels, entity_keys, old = record
        if (at, verdict) in labels:
            return False
        labels = sorted([*labels, (at, verdict)])
        new = verdict_runs(labels)
        self.verdicts[tx_id] = (labels, entity_keys, new)
        self.dirty.add(("verdict", tx_id))
        if new != old:
            self._move_runs(entity_keys, old, new)
        self.watermark = max(self.watermark, at)
        self._since_sweep += 1
        if self._since_sweep >= _SWEEP_EVERY:
            self.forget()
        return new != old

    def _move_runs(self, entity_keys: tuple, old: list[Run], new: list[Run]) -> None:
        for entity, key in zip(LABEL_ENTITIES, entity_keys, strict=True):
            table = self.entities.get(entity)
            if key is None or table is None:
                continue
            runs = table.get(key)
            if runs is None:
                runs = table[key] = EntityLabels()
            for run in old:
                if run not in new:
                    runs.remove(run)
            for run in new:
                if run not in old:
                    runs.add(run)
            self.dirty.add(("labels." + entity, key))

    def forget(self) -> None:
        """Drop the verdicts that left every window a while ago (memory bound)."""
        self._since_sweep = 0
        horizon = self.watermark - LABEL_MEMORY_US - FORGET_SLACK_US
        stale = [tx_id for tx_id, (_, _, runs) in self.verdicts.items() if runs[-1][0] < horizon]
        for tx_id in stale:
            del self.verdicts[tx_id]

    def features(self, vec: list[float], slots: dict, times: dict[str, int | None],
                 keys: dict[str, str | None]) -> None:
        """Write one event's label features into `vec`; `times` are the event's clamped times
        per entity (None: no key)."""
        known = {entity: self.entity_features(vec, slots, entity, keys[entity], times[entity])
                 for entity in LABEL_ENTITIES}
        self.exposure(vec, slots, keys["account"], times["account"],
                      known["merchant"] or known["device"])

    def entity_features(self, vec: list[float], slots: dict, entity: str, key: str | None,
                        t: int | None) -> bool:
        """Write one entity's label features for an event at its clamped time `t` (None: the
        event has no key for it); a merchant's or device's "known fraud" flag too. Returns
        whether the entity had confirmed fraud in the exposure window."""
        runs = None if key is None else self.entities[entity].get(key)
        known = False
        if runs is None:  # nothing known (the common case): counts stay 0
            for _, _, r_slot in slots[entity]:
                vec[r_slot] = _PRIOR
        else:
            counts = runs.counts(t)
            for (fraud, labelled), (f_slot, l_slot, r_slot) in zip(counts, slots[entity],
                                                                    strict=True):
                vec[f_slot] = math.log1p(fraud)
                vec[l_slot] = math.log1p(labelled)
                vec[r_slot] = smoothed_rate(fraud, labelled)
            known = counts[_EXPOSURE][0] > 0
        flag = slots.get(entity + "_known")
        if flag is not None:
            vec[flag] = float(known)
        return known

    def exposure(self, vec: list[float], slots: dict, account: str, t: int,
                 risky: bool) -> None:
        """The account's risky visits, this event's included when `risky` (its merchant or
        device had confirmed fraud in the exposure window)."""
        if risky or account in self.risky:
            vec[slots["risky_visits"]] = math.log1p(self._risky_visits(account, t, risky))

    def _risky_visits(self, account: str, t: int, risky: bool) -> int:
        visits = self.risky.get(account)
        if visits is None:
            if not risky:
                return 0
            visits = self.risky[account] = []
        drop = bisect_right(visits, t - _EXPOSURE_US)
        if drop:
            del visits[:drop]
        if risky:
            visits.append(t)
        self.dirty.add(("risky", account))
        return len(visits)

    # -- snapshots (see `fraudops.features.online.StateDelta`) --------------------------------

    def keys(self) -> list[tuple[str, str]]:
        """Every entry of the state, as (kind, key)."""
        keys = [("verdict", tx_id) for tx_id in self.verdicts]
        keys += [("labels." + e, key) for e, table in self.entities.items() for key in table]
        return keys + [("risky", account) for account in self.risky]

    def entry(self, kind: str, key: str) -> tuple | None:
        """One entry as plain values (None: forgotten since it changed)."""
        if kind == "verdict":
            return self.verdicts.get(key)
        if kind == "risky":
            return (self.risky.get(key),)
        runs = self.entities[kind.removeprefix("labels.")].get(key)
        return None if runs is None else runs.to_tuple()

    def load(self, kind: str, key: str, values: tuple | None) -> None:
        """Put back one entry written by `entry`."""
        if values is None:
            return
        if kind == "verdict":
            self.verdicts[key] = values
            self.watermark = max(self.watermark, max(at for at, _ in values[0]))
        elif kind == "risky":
            if values[0] is not None:
                self.risky[key] = values[0]
        else:
            table = self.entities.get(kind.removeprefix("labels."))
            if table is not None:  # an entity this state no longer owns: dropped
                table[key] = EntityLabels.from_tuple(values)

    KINDS = ("verdict", "risky", *("labels." + e for e in LABEL_ENTITIES))
