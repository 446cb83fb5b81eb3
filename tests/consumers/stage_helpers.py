"""Helpers of the entity-stage tests: an in-memory partitioned log, a phased stream with labels,
and the batch reference computed in the order each stage consumed."""

from __future__ import annotations

import heapq
import json
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, TopicPartition
from consumer_helpers import make_topics

from consumers.messages import Incoming, Outgoing
from fraudops.data import tabular
from fraudops.features import build_spec, compute_batch
from fraudops.features.online import STAGE_ENTITIES, entity_feature_names
from fraudops.settings import TopicSettings
from fraudops.testing import read_records

PARTITIONS = 3
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SPEC = build_spec()
ENTITY_COLUMNS = {e: [SPEC.names.index(n) for n in entity_feature_names(e)]
                  for e in STAGE_ENTITIES}


def partition_of(key: bytes | None, partitions: int) -> int:
    return zlib.crc32(key or b"") % partitions


@dataclass
class Log:
    """A topic: partitions of records, appended by key."""

    name: str
    partitions: int
    parts: list[list[Incoming]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parts = [[] for _ in range(self.partitions)]

    def append(self, key: bytes | None, value: bytes, headers: tuple = ()) -> None:
        part = self.parts[partition_of(key, self.partitions)]
        part.append(Incoming(self.name, partition_of(key, self.partitions), len(part), key,
                             value, -1, tuple(headers)))

    def extend(self, outgoing: list[Outgoing]) -> None:
        for message in outgoing:
            self.append(message.key, message.value, message.headers)


@dataclass
class PhasedStream:
    """Transactions in phases (each phase's events after the previous phase's, a few late
    within it, some delivered twice at once) and, after each phase, labels known between that
    phase and the next: every label arrives before the events it counts for, whatever path it
    takes, so batch (by `labelled_at`) and online (as labels arrive) agree."""

    phases: list[tuple[list[dict], list[dict]]]  # (transaction docs, label docs)

    @property
    def transactions(self) -> list[dict]:
        seen, out = set(), []
        for docs, _ in self.phases:
            for doc in docs:
                if doc["transaction_id"] not in seen:
                    seen.add(doc["transaction_id"])
                    out.append(doc)
        return out

    @property
    def labels(self) -> pd.DataFrame:
        docs = [doc for _, labels in self.phases for doc in labels]
        frame = pd.DataFrame(docs, columns=["transaction_id", "label", "labelled_at", "source",
                                            "account_id", "merchant_id", "device_id"])
        frame["labelled_at"] = pd.to_datetime(frame["labelled_at"], utc=True, format="ISO8601")
        return frame


def phased_stream(seed: int, phases: int = 3, per_phase: int = 40, accounts: int = 9,
                  merchants: int = 5, devices: int = 7, phase_hours: float = 20.0
                  ) -> PhasedStream:
    rng = np.random.default_rng(seed)
    amounts = rng.permutation(phases * per_phase) + 1
    out, judged, n = [], [], 0
    for k in range(phases):
        start = k * phase_hours * 3600
        seconds = np.sort(rng.uniform(start, start + 0.8 * phase_hours * 3600, per_phase))
        docs = []
        for s in seconds:
            merchant = None if rng.random() < 0.1 else f"m-{rng.integers(merchants)}"
            device = None if rng.random() < 0.15 else f"d-{rng.integers(devices)}"
            docs.append({"transaction_id": f"tx-{n}", "account_id": f"acc-{rng.integers(accounts)}",
                         "timestamp": (T0 + timedelta(seconds=float(s))).isoformat(),
                         # distinct amounts: a scored row's amount names its transaction
                         "amount": float(amounts[n]) + float(np.round(rng.random(), 1)) / 2,
                         "merchant_id": merchant, "device_id": device, "channel": "online",
                         "merchant_category": "retail", "country": "US"})
            n += 1
        for i in range(len(docs) - 1):  # late events: a few swapped with their successor
            if rng.random() < 0.15:
                docs[i], docs[i + 1] = docs[i + 1], docs[i]
        arrived = []
        for doc in docs:
            arrived.append(doc)
            if rng.random() < 0.08:  # delivered twice (a producer retry)
                arrived.append(doc)
        judged += docs
        labelled_at = T0 + timedelta(seconds=start + 0.9 * phase_hours * 3600)
        labels = []
        for doc in rng.permutation(np.array(judged, dtype=object))[: len(judged) // 3]:
            verdict = int(rng.random() < 0.4)
            at = labelled_at + timedelta(seconds=float(rng.uniform(0, 3600)))
            labels.append({"transaction_id": doc["transaction_id"], "label": verdict,
                           "labelled_at": at.isoformat(), "source": "analyst",
                           "account_id": doc["account_id"], "merchant_id": doc["merchant_id"],
                           "device_id": doc["device_id"]})
            if rng.random() < 0.1:
                labels.append(dict(labels[-1]))  # the same label twice
        out.append((arrived, labels))
    return PhasedStream(out)


def encode(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def interleave(parts: list[list], rng: np.random.Generator) -> list:
    """The records of every partition, each partition's order kept, partitions interleaved at
    random (the order a consumer of several partitions may see them in)."""
    cursors, out = [0] * len(parts), []
    while True:
        open_ = [p for p, c in enumerate(cursors) if c < len(parts[p])]
        if not open_:
            return out
        p = open_[rng.integers(len(open_))]
        out.append(parts[p][cursors[p]])
        cursors[p] += 1


def consumed_order(records: list[Incoming]) -> list[str]:
    """The transaction ids in the order a stage first applied them (labels and repeats left
    out)."""
    seen, out = set(), []
    for r in records:
        if ("fraudops.kind", b"label") in r.headers:
            continue
        tx_id = json.loads(r.value)["transaction_id"]
        if tx_id not in seen:
            seen.add(tx_id)
            out.append(tx_id)
    return out


def batch_in_order(transactions: list[dict], order: list[str], labels: pd.DataFrame
                   ) -> dict[str, np.ndarray]:
    """`compute_batch` over the transactions in `order` (a stage's arrival order), by id."""
    by_id = {doc["transaction_id"]: doc for doc in transactions}
    frame = tabular.normalize(pd.DataFrame([by_id[i] for i in order]))
    rows = compute_batch(frame, SPEC, arrival_order=True, labels=labels)
    return dict(zip(order, rows.astype(np.float64), strict=True))


def expected_features(transactions: list[dict], labels: pd.DataFrame,
                      orders: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Per transaction id: the batch features with each entity's columns computed in the order
    its stage consumed (`orders`: "merchant", "device", and "account" for the scoring
    consumer)."""
    merchant, device, account = (batch_in_order(transactions, orders[s], labels)
                                 for s in ("merchant", "device", "account"))
    out = {}
    for tx_id, row in account.items():
        row = row.copy()
        row[ENTITY_COLUMNS["merchant"]] = merchant[tx_id][ENTITY_COLUMNS["merchant"]]
        row[ENTITY_COLUMNS["device"]] = device[tx_id][ENTITY_COLUMNS["device"]]
        out[tx_id] = row
    return out


def stage_topics(broker) -> TopicSettings:
    """Fresh topics, the stages' internal ones with as many partitions as `transactions`."""
    topics = make_topics(broker, PARTITIONS)
    suffix = uuid.uuid4().hex[:8]
    internal = {name: broker.create_topic(f"{name}-{suffix}", PARTITIONS)
                for name in ("by_merchant", "by_device", "enriched")}
    return topics.model_copy(update=internal)


def read_back(broker, topic: str) -> list[Incoming]:
    """Every record of `topic`, each partition in offset order."""
    probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "stage-tests-reader"})
    try:
        ends = [probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in range(PARTITIONS)]
    finally:
        probe.close()
    total = sum(high - low for low, high in ends)
    records: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    for r in read_records(broker.bootstrap, topic, until=lambda got: len(got) >= total,
                          timeout=60):
        records[r.partition].append(Incoming(r.topic, r.partition, r.offset, r.key, r.value,
                                             r.timestamp, tuple(r.headers)))
    # Partitions merged by the records' timestamps, each partition's order kept: an order the
    # consumer may have read them in (the merchants' "known fraud" flags, which the account's
    # risky visits count, depend on the order across partitions; phases keep it unambiguous).
    return list(heapq.merge(*records.values(), key=lambda r: r.timestamp_ms))
