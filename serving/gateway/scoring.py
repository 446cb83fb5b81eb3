"""Online state for `POST /v1/score`: what "the account's current state" means here.

The gateway is stateless. For each score request it rebuilds the account's feature state by
replaying the account's most recent transactions *as stored by the stream consumer* (the
``decisions`` table of `fraudops.store`, i.e. every transaction the consumer has scored,
up to `score_history_limit` of them, oldest first, strictly older or equal in event time and
excluding the scored transaction itself) through the same `OnlineFeatureState` the consumer
uses, then applies the scored transaction. "Available" therefore means "already scored and
stored by the consumer": transactions still in Kafka, or older than the replay window, do not
count. Merchant- and device-wide velocity features only see this account's own transactions
(the consumer sees everyone's), so they can be lower than in the stream. The response says
how many stored transactions were used and whether the store could be read at all.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fraudops.features import FeatureSpec, OnlineFeatureState
from fraudops.schema import Transaction


def build_sequence(spec: FeatureSpec, seq_len: int, history: Iterable[Transaction],
                   transaction: Transaction) -> tuple[np.ndarray, np.ndarray, int]:
    """Sequence [1, K, F], mask [1, K] of `transaction` after replaying `history`; and how many
    history events were applied."""
    state = OnlineFeatureState(spec, seq_len)
    used = 0
    for past in history:
        if past.account_id == transaction.account_id and past.timestamp <= transaction.timestamp:
            state.update(past)
            used += 1
    _, sequence, mask = state.update(transaction)
    return sequence[np.newaxis].copy(), mask[np.newaxis].copy(), used
