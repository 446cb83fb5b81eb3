"""What the stream processor works on: its configuration, a batch being prepared (ingested
records waiting for the predictor) and a batch's outcome (what the loop ships and persists)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from consumers.idempotency import Pending
from consumers.messages import Incoming, Outgoing
from fraudops.features import EventTimePolicy
from fraudops.schema import Transaction
from fraudops.settings import TopicSettings
from fraudops.store import BatchWrite


@dataclass(frozen=True)
class ProcessorConfig:
    """What the processor needs to know besides its collaborators."""

    group_id: str
    topics: TopicSettings = field(default_factory=TopicSettings)
    max_message_bytes: int = 64 * 1024
    snapshot_interval_s: float = 10.0
    model_version: str = ""
    event_time: EventTimePolicy = field(default_factory=EventTimePolicy)
    #: Stop when more than `breaker_share` of the last `breaker_window` messages were
    #: dead-lettered (0: never).
    breaker_window: int = 1000
    breaker_share: float = 0.5


@dataclass
class BatchOutcome:
    """Everything one batch produces; shipped by the loop, then made durable by `persist`."""

    writes: BatchWrite = field(default_factory=BatchWrite)
    outgoing: list[Outgoing] = field(default_factory=list)
    #: (topic, partition) -> next offset to commit to Kafka.
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Event times (epoch seconds) of the decided transactions, for the latency histogram.
    event_times: list[float] = field(default_factory=list)
    replayed: int = 0

    @property
    def scored(self) -> int:
        return len(self.writes.decisions)


@dataclass
class PreparedBatch:
    """Ingested records waiting for the predictor, with what they already produced."""

    #: Every record ingested into the batch (rewound if the batch is lost).
    records: list[Incoming] = field(default_factory=list)
    #: The records to score, their transactions, raw JSON, pending entries and model inputs.
    scored: list[Incoming] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    payloads: list[str] = field(default_factory=list)
    entries: list[Pending] = field(default_factory=list)
    sequences: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    #: Redeliveries of transactions still in flight: their decisions are published again once
    #: decided (an earlier batch's, or this one's).
    republish: list[Pending] = field(default_factory=list)
    outcome: BatchOutcome = field(default_factory=BatchOutcome)

    def __len__(self) -> int:
        return len(self.records)
