"""Online state for `POST /v1/score`: what "the account's current state" means here.

The gateway is stateless. For each score request it rebuilds the account's feature state by
replaying the account's most recent transactions *as stored by the stream consumer* (the
``decisions`` table of `fraudops.store`, i.e. every transaction the consumer has scored,
up to `score_history_limit` of them, oldest first, strictly older or equal in event time and
excluding the scored transaction itself) through the same `OnlineFeatureState` the consumer
uses, then applies the scored transaction. "Available" therefore means "already scored and
stored by the consumer": transactions still in Kafka, or older than the replay window, do not
count. Merchant- and device-wide velocity features only see this account's own transactions
(the consumer sees everyone's), so they can be lower than in the stream.

Label-informed features see the verdicts the store holds (`label_history`, each with its
`labelled_at` and its transaction's keys): the labels known strictly before the scored event of
the account's transactions and of the transactions at the merchants and on the devices of the
account's last 7 days (`label_scope`), applied with `OnlineFeatureState.apply_label` in
`labelled_at` order, interleaved with the replayed events by time: each label before the first
event later than it, as the consumer applies labels that arrive on time. A label therefore
counts as it does in `compute_batch` over the same rows and labels. The response says how many
stored transactions and labels were used and whether the store could be read at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from fraudops.features import FeatureSpec, OnlineFeatureState
from fraudops.features.spec import EXPOSURE_WINDOW, LABEL_MEMORY_US, LABEL_WINDOWS
from fraudops.schema import Transaction, TransactionLabel

#: How far before the oldest event they count for labels are read: a verdict counts for
#: `LABEL_MEMORY_US` (28 days). A label repeating the verdict of one known further back than
#: that (a redelivery, a second source) counts once more than in batch, where the earlier one
#: makes it a repeat (`fraudops.features.labels.verdict_runs`): rare, and reading twice as far
#: back for it doubled the labels of a busy merchant.
LABEL_LOOKBACK = timedelta(microseconds=LABEL_MEMORY_US)
_EXPOSURE = timedelta(microseconds=LABEL_WINDOWS[EXPOSURE_WINDOW])
#: Most labels one request reads (the latest; `LabelScope`'s query says when more were known).
LABEL_LIMIT = 10_000


@dataclass(frozen=True)
class LabelScope:
    """Whose labels, known in (since, before), the replay of one scored transaction needs."""

    since: datetime
    before: datetime
    accounts: frozenset[str]
    merchants: frozenset[str] = field(default_factory=frozenset)
    devices: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Replay:
    """The scored transaction's sequence [1, K, F] and mask [1, K], and what built them."""

    x: np.ndarray
    mask: np.ndarray
    history_used: int
    labels_applied: int


def replayed(history: Iterable[Transaction], transaction: Transaction) -> list[Transaction]:
    """The events of `history` the replay applies: the account's, not after `transaction`."""
    return [past for past in history if past.account_id == transaction.account_id
            and past.timestamp <= transaction.timestamp]


def label_scope(history: Sequence[Transaction], transaction: Transaction) -> LabelScope:
    """The labels the scored event's label features count: those of the account's
    transactions, and of the merchants' and devices' of its events in the exposure window
    (7 days: the scored event's own merchant and device, and those its risky visits count);
    known before the scored event and at most `LABEL_LOOKBACK` before those events.

    The earlier events of the sequence get the verdicts on these entities too (exact for
    those at the same merchants and devices); a merchant or device only they touched is not
    read: each costs its whole recent label stream, and a busy merchant's is long."""
    start = transaction.timestamp - _EXPOSURE
    touched = [e for e in (*replayed(history, transaction), transaction) if e.timestamp > start]
    return LabelScope(
        since=start - LABEL_LOOKBACK, before=transaction.timestamp,
        accounts=frozenset({transaction.account_id}),
        merchants=frozenset(e.merchant_id for e in touched if e.merchant_id),
        devices=frozenset(e.device_id for e in touched if e.device_id))


def replay(spec: FeatureSpec, seq_len: int, history: Iterable[Transaction],
           transaction: Transaction, labels: Iterable[TransactionLabel] = ()) -> Replay:
    """Replay `history` (oldest first) with `labels` interleaved by `labelled_at`, then score
    `transaction`. Labels without a `labelled_at` or known at or after the scored event are
    not applied."""
    cutoff = transaction.timestamp
    pending = sorted((label for label in labels
                      if label.labelled_at is not None and label.labelled_at < cutoff),
                     key=lambda label: label.labelled_at)
    state = OnlineFeatureState(spec, seq_len)
    used = applied = 0
    for past in replayed(history, transaction):
        while applied < len(pending) and pending[applied].labelled_at <= past.timestamp:
            state.apply_label(pending[applied])
            applied += 1
        state.update(past)
        used += 1
    for label in pending[applied:]:
        state.apply_label(label)
    _, sequence, mask = state.update(transaction)
    return Replay(sequence[np.newaxis].copy(), mask[np.newaxis].copy(), used, len(pending))


def build_sequence(spec: FeatureSpec, seq_len: int, history: Iterable[Transaction],
                   transaction: Transaction) -> tuple[np.ndarray, np.ndarray, int]:
    """Sequence [1, K, F], mask [1, K] of `transaction` after replaying `history` without
    labels; and how many history events were applied."""
    result = replay(spec, seq_len, history, transaction)
    return result.x, result.mask, result.history_used

