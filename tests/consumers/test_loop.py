"""The loop's batch handling without a broker: a fenced (zombie) batch is rolled back and every
partition it touched is rewound. The Kafka source and sink are recording stand-ins here (the
broker-backed loop is exercised in test_consumer_kafka.py and test_consumer_e2e.py)."""

from __future__ import annotations

import threading
import time

import pytest
from consumer_helpers import record, rule_score, stream_records, tx_doc

from consumers.app import Loop
from consumers.exceptions import ConsumerError
from consumers.metrics import ConsumerMetrics
from consumers.processor import ProcessorConfig, StreamProcessor
from consumers.settings import ConsumerSection, ConsumerSettings
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
    """Records what is sent; `fail` makes the acknowledgement wait raise, like a broker error."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list = []
        self.fail = fail
        self.waited = 0

    def send(self, messages: list) -> RecordingSink:
        self.sent.extend(messages)
        return self

    def wait(self) -> None:
        self.waited += 1
        if self.fail:
            raise ConsumerError("1 of 1 records not produced: broker unavailable")


class Dispatcher:
    def wake(self) -> None:
        pass


def make_loop(store: Store, new_state, sink: RecordingSink | None = None, *,
              overlap: bool = False, score=rule_score) -> tuple[Loop, RecordingSource]:
    processor = StreamProcessor(ProcessorConfig(group_id="g"), store=store, score=score,
                                new_state=new_state)
    processor.assign([0])
    source = RecordingSource()
    settings = ConsumerSettings(consumer=ConsumerSection(overlap_scoring=overlap))
    loop = Loop(source, sink or RecordingSink(), processor, Dispatcher(), threading.Event(),
                settings, ConsumerMetrics())
    return loop, source


def test_batch_is_durable_only_after_its_records_are_acknowledged(store: Store,
                                                                  new_state) -> None:
    sink = RecordingSink(fail=True)
    loop, source = make_loop(store, new_state, sink)
    with pytest.raises(ConsumerError, match="not produced"):
        loop.handle(stream_records(4))
    assert sink.waited == 1 and len(sink.sent) >= 4  # the decisions were handed over
    assert store.counts()["decisions"] == 0 and source.commits == []  # rolled back
    assert store.load_checkpoints("g", "transactions") == {}

    sink.fail = False
    retry, retry_source = make_loop(store, new_state, sink)  # the restarted process
    retry.handle(stream_records(4))
    assert store.counts()["decisions"] == 4
    assert retry_source.commits == [{("transactions", 0): 4}]


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


@pytest.mark.parametrize("overlap", [False, True])
def test_pipelined_batches_after_a_fenced_one_are_skipped_and_rewound(store: Store, new_state,
                                                                      overlap: bool) -> None:
    owner, _ = make_loop(store, new_state)
    zombie, zombie_source = make_loop(store, new_state, overlap=overlap)
    transactions = stream_records(12)
    owner.handle(transactions[:5])
    # Two batches in flight at once (pipelined): the first is fenced, so the second, whose
    # checkpoint follows the first, must not be written either, and a pending third is dropped.
    for chunk in (transactions[:3], transactions[3:7]):
        zombie.processor.ingest(chunk)
        zombie.pipeline.submit(zombie.processor.take())
    zombie.processor.ingest(transactions[7:9])
    zombie.pipeline.drain()
    zombie._settle()
    assert zombie_source.commits == []
    assert zombie_source.seeks == [("transactions", 0, 5)]  # where the owner's store says
    assert store.counts()["decisions"] == 5 and zombie.processor.pending == 0
    zombie.handle(transactions[5:12])  # re-synchronised: continues after the owner
    assert store.counts()["decisions"] == 12
    assert zombie_source.commits == [{("transactions", 0): 12}]


@pytest.mark.parametrize("overlap", [False, True])
def test_pipelined_batches_are_written_in_order(store: Store, new_state, overlap: bool) -> None:
    loop, source = make_loop(store, new_state, overlap=overlap)
    transactions = stream_records(30)
    for start in range(0, 30, 5):
        loop.processor.ingest(transactions[start:start + 5])
        loop.pipeline.submit(loop.processor.take())
    loop.pipeline.drain()
    loop._settle()
    assert [c[("transactions", 0)] for c in source.commits] == [5, 10, 15, 20, 25, 30]
    assert store.counts()["decisions"] == 30
    assert store.load_checkpoints("g", "transactions")[0].next_offset == 30


@pytest.mark.parametrize("overlap", [False, True])
def test_pipelined_batch_after_a_failed_write_is_not_written(store: Store, new_state,
                                                             overlap: bool) -> None:
    class FailsOnce(RecordingSink):
        def wait(self) -> None:
            self.waited += 1
            if self.waited == 1:
                raise ConsumerError("1 of 5 records not produced: broker unavailable")

    loop, source = make_loop(store, new_state, FailsOnce(), overlap=overlap)
    loop.processor.assign([1])
    first = stream_records(5)
    # Another partition: its checkpoint does not depend on the first batch's, so only the
    # pipeline's rule (nothing is written after a failure) keeps it from being written.
    second = [record(tx_doc(100 + i, "acc-9"), i, partition=1) for i in range(5)]
    for chunk in (first, second):
        loop.processor.ingest(chunk)
        loop.pipeline.submit(loop.processor.take())
    loop.pipeline.drain()
    with pytest.raises(ConsumerError, match="not produced"):
        loop._settle()
    assert store.counts()["decisions"] == 0 and source.commits == []
    assert store.load_checkpoints("g", "transactions") == {}


class FeedingSource(RecordingSource):
    """Hands out its records a poll at a time; while paused it returns nothing at once (the
    real source then waits at most its idle time), and counts those polls."""

    def __init__(self, records: list) -> None:
        super().__init__()
        self.records, self.paused, self.paused_polls = list(records), False, 0

    def pause_all(self) -> None:
        self.paused = True

    def resume_all(self) -> None:
        self.paused = False

    def poll_batch(self, max_records: int, max_wait_s: float, stop, idle_s: float) -> list:
        if self.paused:
            self.paused_polls += 1
            return []
        out, self.records = self.records[:max_records], self.records[max_records:]
        return out

    def lag(self) -> dict:
        return {}


def test_pipelined_loop_waits_for_the_scorer_instead_of_polling(store: Store, new_state) -> None:
    """A full batch waiting for a slow predictor: the polling thread sleeps until the scorer is
    free. (It used to poll while paused, each poll taking one record: 15 us of CPU per
    transaction in the GIL the scoring and writing threads need.)"""
    def slow_score(x, mask):
        time.sleep(0.2)
        return rule_score(x, mask)

    processor = StreamProcessor(ProcessorConfig(group_id="g"), store=store, score=slow_score,
                                new_state=new_state)
    processor.assign([0])
    source = FeedingSource(stream_records(20))
    settings = ConsumerSettings(consumer=ConsumerSection(pipelined=True, batch_size=5))
    loop = Loop(source, RecordingSink(), processor, Dispatcher(), threading.Event(), settings,
                ConsumerMetrics())
    try:
        deadline = time.monotonic() + 10
        while store.counts()["decisions"] < 20 and time.monotonic() < deadline:
            loop._settle()
            loop._step()
    finally:
        loop.pipeline.close()
    assert store.counts()["decisions"] == 20
    # four batches of 0.2 s each, the polling thread waiting for the scorer in steps of 20 ms
    assert source.paused_polls <= 4 * (0.2 / 0.02 + 2), source.paused_polls


def test_overlap_scores_the_next_batch_while_writing_the_previous_one(store: Store,
                                                                    new_state) -> None:
    """`overlap_scoring`: the polling thread hands batch 2 to the predictor before it writes
    batch 1 itself (the write waits here until batch 2's scoring has begun: it times out if
    the order is the other way round), and the writes run on the polling thread."""
    scoring_second, first_may_finish = threading.Event(), threading.Event()
    calls = []

    def score(x, mask):
        calls.append(len(x))
        if len(calls) == 1:  # still scoring when the step that submitted it returns
            first_may_finish.wait(5)
        else:
            scoring_second.set()
        return rule_score(x, mask)

    class OrderSink(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.threads, self.waited_for_second = [], []

        def send(self, messages: list) -> OrderSink:
            self.threads.append(threading.current_thread().name)
            self.waited_for_second.append(scoring_second.wait(5))
            return super().send(messages)

    sink = OrderSink()
    loop, source = make_loop(store, new_state, sink, overlap=True, score=score)
    transactions = stream_records(10)
    try:
        loop.processor.ingest(transactions[:6])
        loop._overlap_step()  # batch 1 to the predictor; nothing scored to write yet
        first_may_finish.set()
        loop.pipeline.wait_scorer_idle(5)
        loop.processor.ingest(transactions[6:])
        loop._overlap_step()  # batch 2 to the predictor, then batch 1 written here
        loop.pipeline.drain()  # batch 2 written here too
        loop._settle()
    finally:
        loop.pipeline.close()
    assert calls == [6, 4]
    assert sink.waited_for_second == [True, True]
    assert sink.threads == [threading.current_thread().name] * 2
    assert [c[("transactions", 0)] for c in source.commits] == [6, 10]
    assert store.counts()["decisions"] == 10


def test_overlap_writes_a_snapshot_behind_while_scoring_goes_on(store: Store, new_state) -> None:
    """`overlap_scoring`: a batch carrying a state snapshot (here the partition's first) is
    persisted on the writing thread; the polling thread goes on taking, scoring and producing
    the next batches meanwhile (their decisions are out before the snapshot is durable), and
    they are persisted after it, in order."""
    release = threading.Event()

    class HeldSink(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.waits: list[str] = []

        def wait(self) -> None:
            self.waits.append(threading.current_thread().name)
            if len(self.waits) == 1:  # the snapshot batch's acks: held until released
                assert release.wait(5)
            super().wait()

    sink = HeldSink()
    loop, source = make_loop(store, new_state, sink, overlap=True)
    decisions = loop.processor.config.topics.decisions
    transactions = stream_records(15)
    try:
        for start in range(0, 15, 5):
            loop.processor.ingest(transactions[start:start + 5])
            loop._overlap_step()
            loop.pipeline.wait_scorer_idle(5)
        loop.pipeline.write_scored()
        produced = [m for m in sink.sent if m.topic == decisions]
        durable_then = store.counts()["decisions"]
        release.set()
        loop.pipeline.drain()
        loop._settle()
    finally:
        release.set()
        loop.pipeline.close()
    assert len(produced) == 15 and durable_then == 0
    assert [c[("transactions", 0)] for c in source.commits] == [5, 10, 15]
    assert store.counts()["decisions"] == 15
    assert store.load_checkpoints("g", "transactions")[0].next_offset == 15
    assert len(sink.waits) == 3
    assert all(name.startswith("fraud-write") for name in sink.waits)


def test_overlap_writes_inline_again_once_the_snapshot_is_written(store: Store,
                                                                  new_state) -> None:
    """After the writing thread caught up, batches without a snapshot are written on the
    polling thread again."""
    sink = RecordingSink()
    sink.waits = []
    sink.wait = lambda: sink.waits.append(threading.current_thread().name)
    loop, source = make_loop(store, new_state, sink, overlap=True)
    transactions = stream_records(10)
    try:
        for start in (0, 5):
            loop.processor.ingest(transactions[start:start + 5])
            loop._overlap_step()
            loop.pipeline.wait_scorer_idle(5)
            loop.pipeline.write_scored()
            loop.pipeline.drain()
        loop._settle()
    finally:
        loop.pipeline.close()
    assert [c[("transactions", 0)] for c in source.commits] == [5, 10]
    first, second = sink.waits
    assert first.startswith("fraud-write") and second == threading.current_thread().name


def test_overlap_loop_decides_a_stream_through_its_steps(store: Store, new_state) -> None:
    """The loop itself in overlap mode, a slow predictor and small batches: every transaction
    decided once, positions committed in order."""
    def slow_score(x, mask):
        time.sleep(0.05)
        return rule_score(x, mask)

    processor = StreamProcessor(ProcessorConfig(group_id="g"), store=store, score=slow_score,
                                new_state=new_state)
    processor.assign([0])
    source = FeedingSource(stream_records(40))
    settings = ConsumerSettings(consumer=ConsumerSection(overlap_scoring=True, batch_size=7))
    loop = Loop(source, RecordingSink(), processor, Dispatcher(), threading.Event(), settings,
                ConsumerMetrics())
    try:
        deadline = time.monotonic() + 10
        while store.counts()["decisions"] < 40 and time.monotonic() < deadline:
            loop._settle()
            loop._step()
        loop.pipeline.drain()
        loop._settle()
    finally:
        loop.pipeline.close()
    assert store.counts()["decisions"] == 40
    committed = [c[("transactions", 0)] for c in source.commits]
    assert committed == sorted(committed) and committed[-1] == 40
