"""The event-time policy: what the features do with events that arrive out of event-time order.

Payment streams deliver late and out-of-order events as a matter of course (retries, offline
terminals, several producers). Both execution modes apply one rule, so they stay equal on any
stream (the parity test feeds them the same out-of-order stream):

* **Arrival order.** An event is applied when it arrives, never re-placed in the past: the
  decisions already taken on the events after it cannot be taken back, the last-K sequence the
  model sees is what the consumer actually saw, and an event costs O(1) whatever its lateness.
* **Clamped to the entity's watermark.** For the stateful features of an entity (the account's
  gap since its previous event, the sliding windows of the account, the merchant and the
  device) the event's time is ``max(event time, latest time applied for that entity)``. A late
  event therefore has a gap of zero (never negative: that was the ``math domain error``) and
  counts in the windows as if it happened at the watermark; windows stay sorted, so the state
  and its snapshots keep their format. Stateless features (amount, time of day, day of week)
  use the event's own time. On a time-sorted stream (every training set) the clamp changes
  nothing, so models trained before this policy existed see the same features.
* **Bounded lateness.** Lateness is measured against the *account's* watermark (the account is
  the partition key, so the measure does not depend on how the stream is partitioned). An event
  more than ``allowed_lateness_s`` behind it is not applied: the consumer dead-letters it with
  the reason ``too_late``, and `admit_stream` marks it so. ``inf`` accepts any lateness (every
  event is scored under the clamp). The clamp distorts a window by at most the lateness it
  allows, which is why the default is one hour, the narrowest window.

`admit_stream` replays the consumer's admission rules on a frame in arrival order (duplicates of
a decided id are dropped, too-late events are dropped); `compute_batch(admitted.frame, spec,
arrival_order=True)` then gives the features the consumer computed for every decided event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudops.features.batch import timestamps_us
from fraudops.features.spec import MICROS

#: Outcomes of `admit_stream` (the consumer's dead-letter reasons for the last two).
DECIDED = "decided"
DUPLICATE = "duplicate"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
TOO_LATE = "too_late"

DEFAULT_ALLOWED_LATENESS_S = 3600.0


@dataclass(frozen=True)
class EventTimePolicy:
    """How late (behind its account's latest event) an event may be and still be applied."""

    allowed_lateness_s: float = DEFAULT_ALLOWED_LATENESS_S

    def __post_init__(self) -> None:
        if math.isnan(self.allowed_lateness_s) or self.allowed_lateness_s < 0:
            raise ValueError(f"allowed_lateness_s must be >= 0, got {self.allowed_lateness_s}")

    def too_late(self, late_by_us: int) -> bool:
        """Whether an event `late_by_us` microseconds behind its account's watermark is refused."""
        return late_by_us > self.allowed_lateness_s * MICROS


@dataclass(frozen=True)
class StreamAdmission:
    """What the consumer does with each row of a stream, in arrival order."""

    #: Per input row: DECIDED, DUPLICATE, CONFLICTING_DUPLICATE or TOO_LATE.
    outcome: np.ndarray
    #: Per input row: microseconds behind its account's watermark when it arrived (0: on time).
    late_by_us: np.ndarray
    #: The decided rows, in arrival order (index reset): what the features are computed on.
    frame: pd.DataFrame

    @property
    def decided(self) -> np.ndarray:
        return self.outcome == DECIDED


def admit_stream(frame: pd.DataFrame, policy: EventTimePolicy) -> StreamAdmission:
    """The consumer's admission rules replayed on a normalized frame in arrival order.

    A transaction id decided earlier in the stream is a duplicate (same content) or a
    conflicting duplicate (different content) and is not applied; an event later than the
    policy allows behind its account's watermark (the latest event time applied for the
    account) is too late and is not applied either. An id whose first event was refused (too
    late) is not decided, so a later event under that id is judged afresh, as the consumer does.
    """
    ts = timestamps_us(frame)
    accounts = frame["account_id"].to_numpy(dtype=object)
    ids = frame["transaction_id"].to_numpy(dtype=object)
    content = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    outcome = np.empty(len(frame), dtype=object)
    late_by = np.zeros(len(frame), dtype=np.int64)
    decided: dict[str, int] = {}
    watermark: dict[str, int] = {}
    for i, (tx_id, account, moment) in enumerate(zip(ids, accounts, ts.tolist(), strict=True)):
        first = decided.get(tx_id)
        if first is not None:
            outcome[i] = DUPLICATE if content[first] == content[i] else CONFLICTING_DUPLICATE
            continue
        latest = watermark.get(account, moment)
        late_by[i] = max(0, latest - moment)
        if policy.too_late(int(late_by[i])):
            outcome[i] = TOO_LATE
            continue
        outcome[i] = DECIDED
        decided[tx_id] = i
        watermark[account] = max(latest, moment)
    kept = frame[outcome == DECIDED].reset_index(drop=True)
    return StreamAdmission(outcome=outcome.astype(str), late_by_us=late_by, frame=kept)
