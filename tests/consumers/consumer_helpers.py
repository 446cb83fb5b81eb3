"""Helpers of the consumer tests: transactions, records, a rule-based scoring function.

`rule_score` stands in for the predictor in the broker-free unit tests (the processor takes any
scoring function); the end-to-end tests use the real KServe predictor.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np

from consumers.messages import Incoming
from fraudops.features import build_spec
from fraudops.protocol import ScoreBatch

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SPEC = build_spec()
SEQ_LEN = 4
AMOUNT = SPEC.names.index("amount_log")
HISTORY = SPEC.names.index("account_history_log")


def tx_doc(i: int, account: str = "acc-1", amount: float = 20.0, **extra: object) -> dict:
    """A valid transaction document, the i-th of its stream (one minute apart)."""
    return {"transaction_id": f"tx-{i}", "account_id": account,
            "timestamp": (T0 + timedelta(minutes=i)).isoformat(), "amount": amount,
            "merchant_id": f"m-{i % 3}", "channel": "online", **extra}


def record(doc: dict | bytes, offset: int, partition: int = 0,
           topic: str = "transactions") -> Incoming:
    value = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    key = None if isinstance(doc, bytes) else doc.get("account_id", "").encode()
    return Incoming(topic, partition, offset, key, value)


def rule_score(x: np.ndarray, mask: np.ndarray) -> ScoreBatch:
    """Probability rises with the amount of the scored (last) transaction."""
    log_amount = x[:, -1, AMOUNT].astype(np.float64)
    probability = 1.0 / (1.0 + np.exp(-(log_amount - 7.0)))
    decision = ["block" if p > 0.9 else "review" if p > 0.5 else "approve" for p in probability]
    # The anomaly score echoes a stateful feature (how many earlier events the account has), so
    # a state that was reset or double-applied shows up in the stored decisions.
    return ScoreBatch(fraud_probability=probability.astype(np.float32),
                      anomaly_score=x[:, -1, HISTORY].astype(np.float32),
                      decision=decision, reason_codes=[("amount_log",)] * len(decision),
                      model_version="rule/1")
