"""The loop's batch handling without a broker: a fenced (zombie) batch is rolled back and every
partition it touched is rewound. The Kafka source and sink are recording stand-ins here (the
broker-backed loop is exercised in test_consumer_kafka.py and test_consumer_e2e.py)."""

from __future__ import annotations

import threading

from consumer_helpers import record, rule_score, stream_records

from consumers.app import Loop
from consumers.metrics import ConsumerMetrics
from consumers.processor import ProcessorConfig, StreamProcessor
from consumers.settings import ConsumerSettings
from fraudops.store import Store


class RecordingSource:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []
        self.commits: list[dict] = []

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.seeks.append((topic, partition, offset))

    def commit(self, offsets: dict, *, wait: bool = False) -> bool:
        self.commits.append(dict(offsets))
        return True


class RecordingSink:
    def __init__(self) -> None:
        self.sent: list = []

    def send_all(self, messages: list) -> None:
        self.sent.extend(messages)


class Dispatcher:
    def wake(self) -> None:
        pass


def make_loop(store: Store, new_state) -> tuple[Loop, RecordingSource]:
    processor = StreamProcessor(ProcessorConfig(group_id="g"), store=store, score=rule_score,
                                new_state=new_state)
    processor.assign([0])
    source = RecordingSource()
    loop = Loop(source, RecordingSink(), processor, Dispatcher(), threading.Event(),
                ConsumerSettings(), ConsumerMetrics())
    return loop, source


def test_fenced_batch_rewinds_every_partition(store: Store, new_state) -> None:
    owner, owner_source = make_loop(store, new_state)
    zombie, zombie_source = make_loop(store, new_state)
    transactions = stream_records(8)
    owner.handle(transactions[:5])
    assert owner_source.commits == [{("transactions", 0): 5}]
    label = record({"transaction_id": "tx-1", "label": 1}, 3, topic="labels")
    zombie.handle(transactions[:3] + [label])  # its checkpoint is stale: rolled back
    assert zombie_source.commits == []
    assert sorted(zombie_source.seeks) == [("labels", 0, 3), ("transactions", 0, 5)]
    assert store.counts()["decisions"] == 5 and store.counts()["labels"] == 0
