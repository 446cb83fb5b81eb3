"""A million generated messages through the consumer's ingest path: no crash, one decision per id.

Pushes N generated records (`--messages`, default 1,000,000) through `StreamProcessor` (ingest,
decide with an injected rule-based scoring function, persist into a SQLite store in a temporary
folder) in polls of `--poll` records over `--partitions` partitions, as the Kafka loop would.
The stream mixes what a payment stream and a broken producer send:

* valid transactions (20,000 accounts, one second apart on average), 8% of them late by up to
  the allowed lateness behind their account's latest transaction, 2% later than that;
* 1% byte-identical redeliveries of a recent transaction, 0.5% reformatted ones (other key
  order and time zone), 0.3% conflicting duplicates (a known id, another amount);
* poison: timestamps at the edges of the calendar with offsets, timestamps out of range or
  without a zone, absurd amounts (negative, NaN, 1e12), schema violations, invalid JSON,
  garbage bytes, empty and oversized values;
* labels on the labels topic: known, unknown and malformed.

Every `--restart-every` records the process "dies" before its pending batch is durable and a
new processor restores the partitions from the store and re-reads from where they say.
`processor_messages_per_second` counts the time inside the processor only (generating the
stream costs about as much); `--clean` runs valid on-time transactions alone, for comparison.
A crash
is any exception out of the processor (the figure must be 0). At the end it checks that the
store holds one decision per decided id and that every decision published for an id, however
often it was redelivered, is the same bytes.

    python benchmarks/bench_ingest_fuzz.py                      # 1,000,000 messages
    python benchmarks/bench_ingest_fuzz.py --messages 100000 --out fuzz.json
    python benchmarks/bench_ingest_fuzz.py --messages 100000 --clean   # the same, no poison
    python benchmarks/bench_ingest_fuzz.py --smoke              # tiny: checks the script runs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
import tempfile
import time
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from consumers.messages import Incoming
from consumers.processor import ProcessorConfig, StreamProcessor
from fraudops.features import EventTimePolicy, OnlineFeatureState, build_spec
from fraudops.protocol import ScoreBatch
from fraudops.schema import APPROVE, BLOCK, REVIEW
from fraudops.settings import TopicSettings
from fraudops.store import Store

log = logging.getLogger("bench_ingest_fuzz")
#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
SMOKE = {"messages": 3_000, "restart_every": 1_000}
T0 = datetime(2026, 3, 1, tzinfo=UTC)
TOPICS = TopicSettings()
LATENESS_S = 3600.0
SPEC = build_spec()
AMOUNT = SPEC.names.index("amount_log")
HISTORY = SPEC.names.index("account_history_log")
EDGE_TIMES = ("9999-12-31T23:30:00-05:00", "0001-01-01T00:30:00+05:00",
              "9999-12-31T23:59:59.999999-23:59", "0001-01-01T00:00:00+23:59",
              "2100-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2026-03-01T09:00:00",
              "2026-02-30T10:00:00Z", "yesterday")
POISON = (b"", b"{", b"\xff\xfe\x00", b"[1, 2, 3]", b"null", b'{"transaction_id": 5}',
          b"x" * 70_000, (b'{"transaction_id":"a","account_id":"b","timestamp":'
                          b'"2026-03-01T00:00:00Z","amount":NaN}'))
#: (kind, share of the records); the rest are valid on-time transactions.
MIX = (("late", 0.08), ("too_late", 0.02), ("redelivery", 0.01), ("reformatted", 0.005),
       ("conflicting", 0.003), ("edge_time", 0.004), ("absurd_amount", 0.004),
       ("schema", 0.004), ("poison", 0.006), ("label", 0.01))


def rule_score(x: np.ndarray, mask: np.ndarray) -> ScoreBatch:
    """Stands in for the predictor: the probability rises with the amount."""
    probability = 1.0 / (1.0 + np.exp(-(x[:, -1, AMOUNT].astype(np.float64) - 7.0)))
    decision = [BLOCK if p > 0.9 else REVIEW if p > 0.5 else APPROVE for p in probability]
    return ScoreBatch(fraud_probability=probability.astype(np.float32),
                      anomaly_score=x[:, -1, HISTORY].astype(np.float32), decision=decision,
                      reason_codes=[("amount_log",)] * len(decision), model_version="rule/1")


class Stream:
    """The generated records, in order, each on its partition with its offset."""

    def __init__(self, seed: int, partitions: int, accounts: int = 20_000,
                 mix: tuple = MIX) -> None:
        self.rng = random.Random(seed)
        self.partitions = partitions
        self.accounts = accounts
        self.latest: dict[int, datetime] = {}  # account -> latest event time sent
        self.recent: list[dict] = []  # a ring of recent valid documents
        self.offsets = Counter()
        self.kinds = Counter()
        self.clock = T0
        self.serial = 0
        kinds, shares = zip(*mix, strict=True) if mix else ((), ())
        self._kinds, self._cumulative = kinds, np.cumsum(shares).tolist()

    def records(self, n: int):
        for _ in range(n):
            kind = self._draw_kind()
            self.kinds[kind] += 1
            topic, account, value = self._message(kind)
            partition = zlib.crc32(account.encode()) % self.partitions
            offset = self.offsets[(topic, partition)]
            self.offsets[(topic, partition)] += 1
            yield Incoming(topic, partition, offset, account.encode(), value)

    def _draw_kind(self) -> str:
        u = self.rng.random()
        for kind, bound in zip(self._kinds, self._cumulative, strict=True):
            if u < bound:
                return kind if (self.recent or kind in ("edge_time", "poison")) else "valid"
        return "valid"

    def _message(self, kind: str) -> tuple[str, str, bytes]:
        rng = self.rng
        if kind in ("valid", "late", "too_late"):
            doc = self._transaction(kind)
            return TOPICS.transactions, doc["account_id"], json.dumps(doc).encode()
        if kind == "poison":
            return TOPICS.transactions, f"acc-{rng.randrange(self.accounts)}", rng.choice(POISON)
        earlier = self.recent[rng.randrange(len(self.recent))] if self.recent else None
        if kind == "edge_time" and earlier is None:
            earlier = self._transaction("valid", remember=False)
        doc = dict(earlier)
        if kind == "label":
            label = {"transaction_id": rng.choice([doc["transaction_id"], "tx-unknown"]),
                     "label": rng.choice([0, 1, 1, 7, "yes"])}
            return TOPICS.labels, doc["account_id"], json.dumps(label).encode()
        if kind == "reformatted":
            moment = datetime.fromisoformat(doc["timestamp"])
            zone = timezone(timedelta(minutes=rng.randrange(-1439, 1440)))
            doc = dict(reversed(list(doc.items()))) | {"timestamp": moment.astimezone(zone)
                                                       .isoformat(), "currency": "USD"}
        elif kind == "conflicting":
            doc["amount"] = round(doc["amount"] + 1.0, 2)
        elif kind == "edge_time":
            doc["timestamp"] = rng.choice(EDGE_TIMES)
        elif kind == "absurd_amount":
            doc["amount"] = rng.choice([-5.0, 1e12, float("nan"), float("inf"), "lots"])
        elif kind == "schema":
            doc[rng.choice(["channel", "country", "extra", "unexpected"])] = rng.choice(
                [12, "ZZZ", {"v": "x"}, [1]])
        return TOPICS.transactions, doc["account_id"], json.dumps(doc).encode()

    def _transaction(self, kind: str, remember: bool = True) -> dict:
        rng = self.rng
        self.clock += timedelta(seconds=rng.expovariate(1.0))
        account = rng.randrange(self.accounts)
        moment = self.clock
        latest = self.latest.get(account)
        if latest is not None and kind == "late":
            moment = latest - timedelta(seconds=rng.uniform(0.001, LATENESS_S))
        elif latest is not None and kind == "too_late":
            moment = latest - timedelta(seconds=rng.uniform(LATENESS_S + 1, 7 * 86_400))
        self.latest[account] = max(latest or moment, moment)
        zone = timezone(timedelta(minutes=rng.choice([0, 0, 0, 60, -300, 330, 840, -720])))
        self.serial += 1
        doc = {"transaction_id": f"tx-{self.serial}", "account_id": f"acc-{account}",
               "timestamp": moment.astimezone(zone).isoformat(),
               "amount": round(rng.lognormvariate(3.0, 1.5), 2),
               "merchant_id": f"m-{rng.randrange(2_000)}", "device_id": f"d-{account % 30_000}",
               "channel": rng.choice(["online", "card_present", "atm"]),
               "country": rng.choice(["US", "GB", "FR"])}
        if remember:
            if len(self.recent) < 10_000:
                self.recent.append(doc)
            else:
                self.recent[rng.randrange(10_000)] = doc
        return doc


class Run:
    """The processor under test, its restarts, and what it made durable and published."""

    def __init__(self, store: Store, partitions: int, snapshot_s: float) -> None:
        self.store = store
        self.partitions = list(range(partitions))
        self.snapshot_s = snapshot_s
        self.crashes: Counter = Counter()
        self.restarts = 0
        self.decided: set[str] = set()
        self.decided_twice = 0
        self.published: dict[str, bytes] = {}  # id -> digest of its decision record
        self.published_differently = 0
        self.dead_letters: Counter = Counter()
        self.tail: dict[int, list[Incoming]] = {p: [] for p in self.partitions}
        self.polled = 0
        self.busy_s = 0.0  # inside the processor (the rest is generating the stream)
        self.processor = self._new()
        self.metrics = [self.processor.metrics]

    def _new(self) -> StreamProcessor:
        config = ProcessorConfig(group_id="bench", snapshot_interval_s=self.snapshot_s,
                                 event_time=EventTimePolicy(LATENESS_S))
        processor = StreamProcessor(config, store=self.store, score=rule_score,
                                    new_state=lambda: OnlineFeatureState(SPEC))
        self.seeks = processor.assign(self.partitions)
        return processor

    def _keep(self, records: list[Incoming]) -> None:
        for r in records:
            if r.topic == TOPICS.transactions:
                self.tail[r.partition].append(r)
        self.polled += len(records)
        if self.polled >= 50_000:
            self.polled = 0
            self._trim()

    def poll(self, records: list[Incoming]) -> None:
        self._keep(records)
        started = time.perf_counter()
        try:
            outcome = self.processor.process(records)
            self.processor.persist(outcome)
            self.busy_s += time.perf_counter() - started
        except Exception as error:  # counted: the figure that must stay 0
            self.crashes[type(error).__name__] += 1
            log.exception("crash")
            self.restart()
            return
        self._account(outcome)

    def _account(self, outcome) -> None:
        for decision in outcome.writes.decisions:
            if decision.transaction_id in self.decided:
                self.decided_twice += 1
            self.decided.add(decision.transaction_id)
        for message in outcome.outgoing:
            if message.topic == TOPICS.dead_letter:
                self.dead_letters[dict(message.headers)["dlq.reason"].decode()] += 1
            elif message.topic == TOPICS.decisions:
                start = len(b'{"transaction_id":"')
                tx_id = message.value[start:message.value.index(b'"', start)].decode()
                digest = hashlib.blake2b(message.value, digest_size=8).digest()
                if self.published.setdefault(tx_id, digest) != digest:
                    self.published_differently += 1

    def die(self, records: list[Incoming]) -> None:
        """Ingest records, then die before they are durable; restart."""
        self._keep(records)
        self.processor.ingest(records)
        self.restart()

    def restart(self) -> None:
        """A new process re-reads from the positions its store holds (none: from the start,
        as Kafka would without a committed offset)."""
        self.restarts += 1
        self.processor = self._new()
        self.metrics.append(self.processor.metrics)
        replay = sorted((r for p, offset in self.seeks.items()
                         for r in self.tail[p] if r.offset >= (offset or 0)),
                        key=lambda r: (r.offset, r.partition))
        for p in self.partitions:
            self.tail[p] = []
        for start in range(0, len(replay), 500):
            self.poll(replay[start:start + 500])
        self._trim()

    def _trim(self) -> None:
        """Forget the records before each partition's snapshot: never read again."""
        checkpoints = self.store.load_checkpoints("bench", TOPICS.transactions)
        for p, checkpoint in checkpoints.items():
            start = checkpoint.snapshot_offset or 0
            self.tail[p] = [r for r in self.tail[p] if r.offset >= start]

    def counter(self, name: str, **labels: str) -> float:
        return sum(m.registry.get_sample_value(name, labels) or 0.0 for m in self.metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--poll", type=int, default=500, help="records per poll")
    parser.add_argument("--restart-every", type=int, default=250_000,
                        help="records between two simulated crashes (0: none)")
    parser.add_argument("--snapshot-interval-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--clean", action="store_true",
                        help="valid on-time transactions only (the baseline for throughput)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check the script still runs (overrides --messages)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    # Dead letters are the point here: the processor's (rate-limited) warnings stay out.
    logging.basicConfig(level=logging.ERROR)

    stream = Stream(args.seed, args.partitions, mix=() if args.clean else MIX)
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        store = Store.from_url(f"sqlite:///{Path(tmp) / 'store.db'}")
        run = Run(store, args.partitions, args.snapshot_interval_s)
        started = time.perf_counter()
        poll: list[Incoming] = []
        for i, record in enumerate(stream.records(args.messages), 1):
            poll.append(record)
            if len(poll) == args.poll:
                run.poll(poll)
                poll = []
            if args.restart_every and i % args.restart_every == 0 and i < args.messages:
                run.die(poll)  # ingested, never durable: the process dies here
                poll = []
        run.poll(poll)
        seconds = time.perf_counter() - started
        stored = store.counts()
        store.close()

    result = {
        "messages": args.messages, "partitions": args.partitions, "poll": args.poll,
        "crashes": sum(run.crashes.values()), "crash_types": dict(run.crashes),
        "restarts": run.restarts, "clean": args.clean, "seconds": round(seconds, 1),
        "processor_seconds": round(run.busy_s, 1),
        "processor_messages_per_second": round(args.messages / run.busy_s),
        "generated": dict(sorted(stream.kinds.items())),
        "decisions_stored": stored["decisions"], "decided_ids": len(run.decided),
        "decided_twice": run.decided_twice,
        "ids_published_with_different_bytes": run.published_differently,
        "republished": run.counter("fraud_consumer_duplicates_total", outcome="republished"),
        "late_accepted": run.counter("fraud_consumer_late_events_total", outcome="accepted"),
        "replayed": run.counter("fraud_consumer_replayed_total"),
        "labels_stored": stored["labels"],
        "dead_letters": dict(sorted(run.dead_letters.items())),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    ok = (result["crashes"] == 0 and run.decided_twice == 0 and run.published_differently == 0
          and stored["decisions"] == len(run.decided))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
