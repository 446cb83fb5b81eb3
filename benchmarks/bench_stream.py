"""Stream benchmark: the consumer + predictor on a real broker, against two baselines.

Starts a broker (``--kafka apache``: Apache Kafka, KRaft, from Maven Central; ``tansu``: the
embedded broker; ``both``: the whole run on each, then side by side), the `fraud-scorer` predictor (`fraudops serve predictor`, models of the
default architecture unless ``--sequence-model-uri``/``--autoencoder-model-uri`` name trained
ones: timing does not depend on weight values) and `fraudops consume` as subprocesses, sends
``--broker-warmup-seconds`` of traffic through the fresh broker (a JVM compiles its hot code in
its first minutes; the broker's cores by round are reported), then:

1. sustained throughput: N synthetic transactions (`fraudops.data.generate`) produced up front,
   consumer started, time from the first to the N-th decision (Prometheus counter); then the
   same transactions again as a real stream delivers them (``messy``: 10% late, out of order
   within the allowed lateness, and 1% delivered twice), throughput against the clean run;
2. event-to-decision latency p50/p95/p99 at a fixed offered rate (default 1,000 tx/s) and at
   saturation (offered rate = the sustained throughput of step 1), transactions timestamped at
   produce time; latency = the decision row's ``scored_at`` (stamped when the batch's database
   transaction starts) minus the event time, exact per transaction; and, as a cross-check that
   includes the broker's acks and the commit, the consumer's own event-to-decision histogram
   (observed after each commit, percentiles interpolated inside its buckets);
3. CPU per process (consumer, predictor, broker, load producer) in each phase;
4. the transport floor at the fixed rate: librdkafka + the broker alone (no processing), same
   rate, duration and partitions, so that what the consumer adds shows;
5. baselines on the same broker: (a) the raw librdkafka consume ceiling (read + JSON decode
   only), (b) a naive design: one synchronous predictor call (and one commit) per transaction,
   i.e. the same consumer with batch size 1;
6. scale-out (``scaleout``): the same backlog drained by each of ``--consumers`` counts of
   consumer processes in one consumer group (one store, one predictor) on ``--partitions``
   partitions, every consumer busy throughout the measured interval: tx/s in total and per
   consumer, cores of each process, each consumer's resident memory, the ratio to one consumer
   and to the raw librdkafka ceiling of the same run, and the sizing figures (tx/s per
   consumer core, consumer, predictor and broker cores per 1,000 tx/s);
7. the feature state's memory per account (``memory``, in this process, no broker):
   tracemalloc of the consumer's `OnlineFeatureState` after N distinct accounts, per million.

    python benchmarks/bench_stream.py --transactions 200000 --out stream.json
    python benchmarks/bench_stream.py --phases scaleout --consumers 1 2 --partitions 2
    python benchmarks/bench_stream.py --phases fixed --transactions 20000   # latency alone
    python benchmarks/bench_stream.py --kafka both --out stream.json        # both brokers
    python benchmarks/bench_stream.py --smoke                                # seconds: it runs

Each consumer writes to a SQLite file of its own, unless ``--database-url`` names a PostgreSQL
server (the deployments' store): each store is then a fresh database there (dropped at the
end), and the server's processes are measured as the ``store`` process.

    python benchmarks/bench_stream.py --phases sustained \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Consumer settings come from the environment as usual (e.g. FRAUDOPS_CONSUMER__PIPELINED=true).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psutil
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import Producer as KafkaProducer
from sqlalchemy import create_engine, make_url, text

from fraudops.store import Store
from fraudops.testing import free_port
from local.kafka import Flavour, LocalBroker, make_broker

FRAUDOPS = Path(sys.executable).parent / "fraudops"
PHASES = ("sustained", "messy", "naive", "fixed", "saturation", "scaleout", "memory")
SCORED = re.compile(r"^fraud_consumer_transactions_scored_total\{[^}]*\} (\S+)$", re.MULTILINE)
STAGE_SUM = re.compile(r'^fraud_consumer_stage_seconds_sum\{stage="(\w+)"\} (\S+)$', re.MULTILINE)
STAGE_CPU = re.compile(r'^fraud_consumer_stage_cpu_seconds_total\{stage="(\w+)"\} (\S+)$',
                       re.MULTILINE)
STAGE_COUNT = re.compile(r'^fraud_consumer_stage_seconds_count\{stage="(\w+)"\} (\S+)$', re.MULTILINE)
EVENT_BUCKET = re.compile(
    r'^fraud_consumer_event_to_decision_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.MULTILINE)
COUNTER = r"^{}(?:\{{[^}}]*\}})? (\S+)$"
EVENT_COUNT = re.compile(r"^fraud_consumer_event_to_decision_seconds_count (\S+)$", re.MULTILINE)


def wait_http(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def broker_topics(broker: LocalBroker, partitions: int) -> dict[str, str]:
    """A fresh set of the consumer's topics; returns FRAUDOPS_KAFKA__TOPICS__* variables."""
    suffix = uuid.uuid4().hex[:6]
    return {f"FRAUDOPS_KAFKA__TOPICS__{field.upper()}": broker.create_topic(f"{field}-{suffix}",
                                                                             partitions)
            for field in ("transactions", "decisions", "alerts", "labels", "dead_letter")}


def write_default_models(directory: Path, seq_len: int = 16, fit_rows: int = 20_000
                         ) -> tuple[str, str]:
    """Default-architecture models (weights untrained) with normalisation and the anomaly
    threshold fitted on the generator's feature rows: about 1% of realistic transactions are
    alerts. Fitted on random rows instead, the features' real ranges looked anomalous and 95%
    of transactions became alerts (an alert row and a second record each), which inflated
    persist and produce against a real deployment."""
    from fraudops.data.generate import GeneratorConfig, generate
    from fraudops.features import build_spec
    from fraudops.features.batch import compute_batch
    from fraudops.models.untrained import write_untrained_pair

    spec = build_spec()
    # Another seed than the benchmark's transactions: fitted on data like them, not on them.
    rows = compute_batch(generate(GeneratorConfig(rows=fit_rows, seed=10_001)), spec)
    sequence, autoencoder = write_untrained_pair(directory, spec, rows, seq_len,
                                                 calibrate_fpr=0.01)
    return str(sequence), str(autoencoder)


def transaction_docs(n: int, seed: int) -> list[dict]:
    """Realistic synthetic transactions (the project's generator) as JSON-ready dicts."""
    from fraudops.data.generate import GeneratorConfig, generate

    frame = generate(GeneratorConfig(rows=max(n, 1000), seed=seed)).head(n)
    columns = [c for c in frame.columns if c not in ("label", "fraud_scenario")]
    frame = frame[columns].astype(object).where(frame[columns].notna(), None)
    frame["timestamp"] = [t.isoformat() for t in frame["timestamp"]]
    return [{k: v for k, v in row.items() if v is not None}
            for row in frame.to_dict("records")]


def messy_docs(docs: list[dict], late_share: float, duplicate_share: float,
               seed: int) -> tuple[list[dict], dict[str, int]]:
    """The same transactions as a real stream delivers them: `late_share` of them stamped 1 s
    to 30 min before their account's previous transaction (out of order for the account, within
    the default allowed lateness of an hour, so all are scored; an account's first transaction
    cannot be late) and `duplicate_share` delivered a second time, the same bytes a few hundred
    messages later (a producer's retry)."""
    rng = np.random.default_rng(seed)
    out, latest, late = [], {}, 0
    for doc in docs:
        stamp = datetime.fromisoformat(doc["timestamp"])
        previous = latest.get(doc["account_id"])  # the account's watermark as delivered
        if previous is not None and rng.random() < late_share:
            shift = timedelta(seconds=float(rng.uniform(1.0, 1800.0)))
            stamp, late = min(stamp, previous) - shift, late + 1
            doc = dict(doc, timestamp=stamp.isoformat())
        # The consumer measures lateness against the latest event time it has *seen*: a late
        # event does not move it, so the next event is compared with the same watermark.
        latest[doc["account_id"]] = max(stamp, previous or stamp)
        out.append(doc)
    duplicates = round(len(docs) * duplicate_share)
    # Descending, so each insertion only shifts what comes after the earlier picks.
    for i in sorted(rng.choice(len(out), size=duplicates, replace=False).tolist(), reverse=True):
        out.insert(min(len(out), i + int(rng.integers(1, 500))), out[i])
    return out, {"late": late, "duplicates": duplicates}


def produce_backlog(bootstrap: str, topic: str, docs: list[dict]) -> float:
    """Produce every document as fast as possible; returns messages/s."""
    producer = _producer(bootstrap, linger_ms=20)
    start = time.perf_counter()
    for doc in docs:
        _send(producer, topic, doc["account_id"].encode(), json.dumps(doc).encode())
    producer.flush()
    elapsed = time.perf_counter() - start
    return len(docs) / elapsed


def _producer(bootstrap: str, linger_ms: int) -> KafkaProducer:
    """The load generator's producer (librdkafka, as the consumers'; acks=1: the offered
    load, not what is measured), placing keys as the platform's producers do."""
    return KafkaProducer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": 1,
                          "partitioner": "murmur2_random"})


def _send(producer: KafkaProducer, topic: str, key: bytes, value: bytes, **kw) -> None:
    while True:
        try:
            producer.produce(topic, value, key, **kw)
            return
        except BufferError:  # the local queue is full: let it drain
            producer.poll(0.05)


def produce_at_rate(bootstrap: str, topic: str, templates: list[dict], rate: float,
                    seconds: float, prefix: str) -> int:
    """Produce `rate` tx/s for `seconds`, each stamped with the current time; returns the count."""
    producer = _producer(bootstrap, linger_ms=1)
    start, sent, tick = time.monotonic(), 0, 0.005
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate)
        stamp = datetime.now(UTC).isoformat()
        while sent < due:
            doc = dict(templates[sent % len(templates)], transaction_id=f"{prefix}-{sent}",
                       timestamp=stamp)
            _send(producer, topic, doc["account_id"].encode(), json.dumps(doc).encode())
            sent += 1
        producer.poll(0)
        time.sleep(tick)
    producer.flush()
    return sent


def _consumer(bootstrap: str, group_id: str) -> KafkaConsumer:
    """A librdkafka consumer with the consumer unit's fetch and group settings (the
    environment's, as the consumer subprocess reads them)."""
    from consumers.settings import ConsumerSettings

    settings = ConsumerSettings()
    c, kafka = settings.consumer, settings.kafka
    return KafkaConsumer({"bootstrap.servers": bootstrap, "group.id": group_id,
                          "auto.offset.reset": "earliest", "enable.auto.commit": False,
                          "fetch.wait.max.ms": c.fetch_max_wait_ms,
                          "max.partition.fetch.bytes": c.max_partition_fetch_bytes,
                          "session.timeout.ms": kafka.session_timeout_ms,
                          "heartbeat.interval.ms": kafka.heartbeat_interval_ms})


def raw_consume_ceiling(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """The consumers' client (librdkafka) reading + JSON decode only, with the consumer's
    fetch settings: messages per second and per CPU-second of this process (librdkafka's
    fetch threads included)."""
    consumer = _consumer(bootstrap, f"ceiling-{uuid.uuid4()}")
    consumer.subscribe([topic])
    seen, start, cpu = 0, None, 0.0
    while seen < n:
        records = [r for r in consumer.consume(2000, 1.0) if r.error() is None]
        if records and start is None:
            start, cpu = time.perf_counter(), time.process_time()
        for record in records:
            json.loads(record.value())
        seen += len(records)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    consumer.close()
    return {"msg_s": round(seen / elapsed, 1), "msg_per_cpu_second": round(seen / cpu, 1)}


def transport_floor(bootstrap: str, topic: str, templates: list[dict], rate: float,
                    seconds: float) -> dict:
    """Event-to-receipt latency of librdkafka + the broker alone, no processing: the same
    offered rate, duration, partition count and fetch settings as the consumer's phase. What
    the consumer adds is its latency minus this floor."""
    consumer = _consumer(bootstrap, f"floor-{uuid.uuid4()}")
    consumer.subscribe([topic])
    while not consumer.assignment():
        consumer.consume(1, 0.1)
    stamps: list[tuple[float, float]] = []
    done = threading.Event()

    def receive() -> None:
        parse = datetime.fromisoformat
        while not done.is_set():
            # the first record as soon as it is there, then what is already fetched
            records = consumer.consume(1, 0.05)
            if records:
                records += consumer.consume(1999, 0)
            records = [r for r in records if r.error() is None]
            now = time.time()
            stamps.extend((parse(json.loads(r.value())["timestamp"]).timestamp(), now)
                          for r in records)

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    sent = produce_at_rate(bootstrap, topic, templates, rate, seconds, "floor")
    deadline = time.monotonic() + 30
    while len(stamps) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    reader.join(5)
    consumer.close()
    events, received = np.array(stamps).T
    # A growth over the run is the broker's own slowdown (tansu's memory engine: its fetch
    # cost grows with the data kept in the topic).
    return windowed_percentiles(events, received - events)


def warm_broker(broker: LocalBroker, templates: list[dict], rate: float, seconds: float,
                partitions: int, round_s: float = 15.0) -> dict:
    """Traffic through a fresh broker before anything is measured: a JVM compiles its hot code
    in its first minutes (Apache Kafka's CPU at 1,000 msg/s measured 0.80, 0.64, 0.32, 0.28,
    0.22 core in consecutive 15-s rounds from its start), which a broker running for days has
    done long ago. Rounds of `transport_floor` at `rate` for `seconds`; the broker's cores and
    the floor's p99 of each round are returned, so the settling shows."""
    process = psutil.Process(broker.process.pid)
    cores, p99 = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        topic = broker.unique_topic("warmup", partitions)
        cpu, start = sum(process.cpu_times()[:4]), time.monotonic()
        floor = transport_floor(broker.bootstrap, topic, templates, rate,
                                min(round_s, max(1.0, deadline - start)))
        cores.append(round((sum(process.cpu_times()[:4]) - cpu) / (time.monotonic() - start), 3))
        p99.append(floor["p99_ms"])
    return {"seconds": seconds, "rate_msg_s": rate, "broker_cores_by_round": cores,
            "floor_p99_ms_by_round": p99}


def cpu_us_per_transaction(now: dict[str, float], before: dict[str, float],
                           transactions: float) -> dict[str, float]:
    """CPU microseconds per transaction of each stage between two `Consumer.stage_cpu`."""
    return {stage: round(1e6 * (total - before.get(stage, 0.0)) / max(transactions, 1), 1)
            for stage, total in now.items()}


def cpu_ms_per_batch(now: dict[str, float], before: dict[str, float],
                     totals: dict[str, tuple[float, float]],
                     totals_before: dict[str, tuple[float, float]]) -> dict[str, float]:
    """CPU milliseconds per micro-batch of each stage between two `Consumer.stage_cpu`, over
    the batches counted between two `Consumer.stage_totals`."""
    batches = totals["batch_size"][1] - totals_before.get("batch_size", (0.0, 0.0))[1]
    return {stage: round(1e3 * (total - before.get(stage, 0.0)) / max(batches, 1), 3)
            for stage, total in now.items()}


class CpuMeter:
    """CPU seconds of processes (with their children, except for this one's: the services it
    started are measured on their own) between `start` and `stop`."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in processes.items()}

    def sample(self) -> dict[str, float]:
        """CPU seconds so far of each process (with its children)."""
        out = {}
        for name, process in self.processes.items():
            total = 0.0
            children = [] if process.pid == os.getpid() else process.children(recursive=True)
            for p in [process, *children]:
                try:
                    times = p.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            out[name] = total
        return out

    def start(self) -> None:
        self._t0, self._cpu0 = time.monotonic(), self.sample()

    def stop(self) -> dict[str, float]:
        """Average cores used per process over the interval (1.0 = one core busy)."""
        elapsed, cpu = time.monotonic() - self._t0, self.sample()
        return {name: round((cpu[name] - self._cpu0[name]) / elapsed, 3) for name in cpu}


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (0 once it is gone)."""
    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


class StoreServer:
    """A PostgreSQL server for the consumers' stores (`--database-url`): a fresh database per
    store, dropped by `close`; `pid` is the server's (its backends are its children)."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        if not self.url.drivername.startswith("postgresql"):
            raise SystemExit(f"--database-url must name a PostgreSQL server, not {url!r}")
        self.engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with self.engine.connect() as connection:
            backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        self.pid = psutil.Process(backend).parent().pid
        self.databases: list[str] = []

    def database(self, name: str) -> str:
        """A fresh database for the store `name`; its URL."""
        database = re.sub(r"[^a-z0-9_]", "_", f"fraudops_bench_{name}_{uuid.uuid4().hex[:6]}")
        with self.engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        self.databases.append(database)
        return self.url.set(database=database).render_as_string(hide_password=False)

    def close(self) -> None:
        with self.engine.connect() as connection:
            for database in self.databases:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        self.engine.dispose()


class Consumer:
    """`fraudops consume` in a subprocess with its own topics, store and metrics port."""

    def __init__(self, workdir: Path, bootstrap: str, topics: dict[str, str], predictor: str,
                 batch_size: int, name: str, db_url: str | None = None,
                 group_id: str | None = None, wait: bool = True) -> None:
        """`db_url` and `group_id` default to the consumer's own; consumers of one group share
        both (`Bench.scaleout`). `wait=False`: returns once started (then `wait_ready`)."""
        self.metrics_port = free_port()
        self.db_url = db_url or f"sqlite:///{workdir / f'{name}.db'}"
        Store.from_url(self.db_url).close()  # `fraudops db upgrade`: the consumer refuses without
        env = {**os.environ, **topics, "FRAUDOPS_HOME": str(workdir / name),
               "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
               "FRAUDOPS_DATABASE__URL": self.db_url,
               "FRAUDOPS_CONSUMER__GROUP_ID": group_id or f"bench-{name}-{uuid.uuid4().hex[:6]}",
               "FRAUDOPS_CONSUMER__PREDICTOR_URL": predictor,
               "FRAUDOPS_CONSUMER__BATCH_SIZE": str(batch_size),
               "FRAUDOPS_CONSUMER__METRICS_PORT": str(self.metrics_port)}
        self.log = (workdir / f"{name}.log").open("wb")
        self.process = subprocess.Popen([str(FRAUDOPS), "consume"], env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        wait_http(f"http://127.0.0.1:{self.metrics_port}/metrics", self.process)

    def scored(self) -> float:
        body = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return sum(float(v) for v in SCORED.findall(body))

    def stage_totals(self) -> dict[str, tuple[float, float]]:
        """(sum, count) so far of each loop stage's seconds, of the predictor call's seconds
        and of the batch sizes (from the consumer's metrics)."""
        body = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        counts = dict(STAGE_COUNT.findall(body))
        totals = {stage: (float(total), float(counts[stage]))
                  for stage, total in STAGE_SUM.findall(body)}
        for name, metric in (("predictor_call", "predictor_request_seconds"),
                             ("batch_size", "batch_size")):
            total = re.search(rf"^fraud_consumer_{metric}_sum (\S+)$", body, re.MULTILINE)
            count = re.search(rf"^fraud_consumer_{metric}_count (\S+)$", body, re.MULTILINE)
            if total and count:
                totals[name] = (float(total.group(1)), float(count.group(1)))
        return totals

    def stage_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the thread running each loop stage (the consumer's metrics)."""
        body = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return {stage: float(total) for stage, total in STAGE_CPU.findall(body)}

    def stage_means(self, since: dict[str, tuple[float, float]] | None = None
                    ) -> dict[str, float]:
        """Mean milliseconds per micro-batch in each loop stage and the predictor call, and the
        mean batch size, over everything or since an earlier `stage_totals`."""
        return means_per_batch(self.stage_totals(), since or {})

    def event_histogram(self) -> tuple[list[tuple[float, float]], float]:
        """The consumer's event-to-decision histogram: cumulative (bound, count) and total."""
        body = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        buckets = [(float(le), float(count)) for le, count in EVENT_BUCKET.findall(body)
                   if le != "+Inf"]
        return buckets, float(EVENT_COUNT.search(body).group(1))

    def durable_latency(self, since: tuple[list, float]) -> dict[str, float]:
        """Event-to-durable-decision percentiles from the consumer's own histogram (observed
        after each batch's commit) for what was decided after `since` (an `event_histogram`
        taken earlier); linear interpolation inside the buckets."""
        (now, total), (before, total_before) = self.event_histogram(), since
        buckets = [(bound, count - old) for (bound, count), (_, old) in zip(now, before,
                                                                          strict=True)]
        return {f"p{q}_ms": round(1000 * histogram_quantile(buckets, total - total_before,
                                                            q / 100), 2)
                for q in (50, 95, 99)}

    def counter(self, name: str) -> float:
        """A counter of the consumer's metrics, summed over its labels."""
        body = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return sum(float(v) for v in re.findall(COUNTER.format(name), body, re.MULTILINE))

    def wait_scored(self, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while (count := self.scored()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return count

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.log.close()


def means_per_batch(now: dict[str, tuple[float, float]],
                before: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean per batch between two `Consumer.stage_totals` (milliseconds; batch size as is)."""
    means = {}
    for name, (total, count) in now.items():
        total_before, count_before = before.get(name, (0.0, 0.0))
        if count > count_before:
            scale = 1 if name == "batch_size" else 1000
            means[name] = round(scale * (total - total_before) / (count - count_before), 2)
    return means


class StageSampler(threading.Thread):
    """A consumer's `Consumer.stage_means` every `interval_s` while it runs (a stage that slows
    down over the run, or one that spikes, shows here and not in the run's averages)."""

    def __init__(self, consumer: Consumer, interval_s: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.consumer, self.interval_s = consumer, interval_s
        self.means: list[dict[str, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        last = self.consumer.stage_totals()
        while not self._done.wait(self.interval_s):
            now = self.consumer.stage_totals()
            self.means.append(means_per_batch(now, last))
            last = now

    def stop(self) -> list[dict[str, float]]:
        self._done.set()
        self.join(10)
        return self.means


def histogram_quantile(buckets: list[tuple[float, float]], total: float, q: float) -> float:
    """The q-quantile of a cumulative histogram, as Prometheus' histogram_quantile computes it."""
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            share = (rank - below) / (count - below) if count > below else 0.0
            return lower + (upper - lower) * share
        lower, below = upper, count
    return lower


def windowed_percentiles(events: np.ndarray, latency: np.ndarray,
                         window_s: float = 5.0) -> dict:
    """`percentiles` of the whole run, plus p50 and p99 per `window_s` of event time (a rising
    series is the broker slowing down; a lone spike, a pause such as a state snapshot)."""
    window = ((events - events.min()) // window_s).astype(int)
    by = {q: [round(float(np.percentile(latency[window == w], q)) * 1000, 1)
              for w in np.unique(window)] for q in (50, 99)}
    return percentiles(latency) | {"p50_ms_by_5s": by[50], "p99_ms_by_5s": by[99]}


def percentiles(seconds: np.ndarray) -> dict[str, float]:
    p50, p95, p99 = np.percentile(seconds * 1000, [50, 95, 99])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2),
            "p99_ms": round(float(p99), 2), "max_ms": round(float(seconds.max() * 1000), 2),
            "count": len(seconds)}


class RunSampler(threading.Thread):
    """Every `interval_s`, while consumers of one group run: each one's decisions so far (its
    metrics), the CPU seconds of every process (`CpuMeter.sample`) and each consumer's resident
    memory. `busy_window` then picks the interval in which all of them had work."""

    def __init__(self, consumers: dict[str, Consumer], meter: CpuMeter,
                 interval_s: float) -> None:
        super().__init__(daemon=True)
        self.consumers, self.meter, self.interval_s = consumers, meter, interval_s
        self.samples: list[dict] = []
        self._done = threading.Event()

    def sample(self) -> None:
        self.samples.append({
            "t": time.monotonic(),
            "scored": {name: c.scored() for name, c in self.consumers.items()},
            "cpu": self.meter.sample(),
            "rss": {name: rss_bytes(c.process.pid) for name, c in self.consumers.items()}})

    def start(self) -> None:
        # The first sample before `start` returns, so before the caller produces anything: taken
        # on the thread, it came late on a busy machine, after some of the backlog was decided
        # (CI counted 1,500 of 2,000 transactions in `decided_per_consumer`).
        self.sample()
        super().start()

    def run(self) -> None:
        while not self._done.wait(self.interval_s):
            self.sample()

    def stop(self) -> list[dict]:
        self._done.set()
        self.join(10)
        self.sample()
        return self.samples


def busy_window(samples: list[dict], start: float) -> tuple[int, int]:
    """Indices of the samples bounding the interval in which every consumer was busy: from the
    first sample at or after `start` to the last one before the first consumer to run out of
    work reached its final count (a consumer that decided nothing after `start` is left out).
    The whole run from `start` when that leaves no interval (a tiny backlog)."""
    first = next(i for i, s in enumerate(samples) if s["t"] >= start)
    final = samples[-1]["scored"]
    ends = [next(i for i, s in enumerate(samples) if s["scored"][name] >= count) - 1
            for name, count in final.items() if count > samples[first]["scored"][name]]
    last = min(ends, default=len(samples) - 1)
    return (first, last) if last > first else (first, len(samples) - 1)


def account_state_memory(accounts: int, per_account: int, seed: int = 0) -> dict:
    """Memory of the scoring consumer's feature state per account: `OnlineFeatureState` as
    `fraudops consume` builds it (the spec, K=16, every entity owned), traced with tracemalloc,
    after `per_account` transactions of each of `accounts` distinct accounts, all within the
    widest velocity window (7 days: the windows keep every one of them), each account with its
    own device and one merchant per 10 accounts (so the figure does not depend on `accounts`);
    the transactions are parsed inside the trace (the ids the state keeps as keys count) and
    dropped. The native engine's tables (`fraudops.features.engine`) count the bytes they hold
    outside Python's allocator themselves (`nbytes`), added to what tracemalloc saw. Also the account-only state of stage mode (`--stage`: the merchant and device
    values given by their stages; `bench_stages.py` measures theirs per merchant and device)."""
    import gc
    import tracemalloc

    from fraudops.features import DEFAULT_SEQ_LEN, OnlineFeatureState, build_spec
    from fraudops.features.online import entity_feature_names
    from fraudops.schema import Transaction

    spec, rng, merchants = build_spec(), np.random.default_rng(seed), max(1, accounts // 10)
    n = accounts * per_account
    amounts = np.round(rng.lognormal(3, 1.2, n), 2).tolist()
    shops = rng.integers(merchants, size=n).tolist()
    step = timedelta(days=6) / max(n, 1)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    out: dict = {"accounts": accounts, "transactions_per_account": per_account,
                 "merchants": merchants, "devices": accounts, "seq_len": DEFAULT_SEQ_LEN}
    for mode, owned in (("scoring", ("account", "merchant", "device")),
                        ("account_only", ("account",))):
        given = {e: np.zeros(len(entity_feature_names(e)), dtype=np.float32)
                 for e in ("merchant", "device")} if mode == "account_only" else None
        gc.collect()
        start = time.perf_counter()
        tracemalloc.start()
        state = OnlineFeatureState(spec, DEFAULT_SEQ_LEN, owned)
        for i in range(n):
            a = i % accounts  # accounts interleaved: each one's transactions spread in time
            state.update(Transaction(
                transaction_id=f"tx-{i}", account_id=f"account-{a:09d}", timestamp=t0 + i * step,
                amount=amounts[i], merchant_id=f"merchant-{shops[i]}",
                device_id=f"device-{a:09d}", channel="online", merchant_category="retail",
                country="US"), given)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(state.accounts) == accounts
        # The native engine's tables live outside Python's allocator: they count their own.
        native = sum(table.nbytes() for table in (state.accounts, *state.velocity.values())
                     if hasattr(table, "nbytes"))
        used = traced + native
        per = used / accounts
        out[mode] = {"state_bytes": used, "bytes_per_account": round(per),
                     "native_bytes": native, "python_bytes": traced,
                     "mib_per_million_accounts": round(per * 1e6 / 2**20, 1),
                     "trace_seconds": round(time.perf_counter() - start, 1)}
        del state
    return out


class Bench:
    """The benchmark's shared services and the phases that use them."""

    def __init__(self, args: argparse.Namespace, workdir: Path, flavour: Flavour) -> None:
        self.args, self.workdir = args, workdir
        self.store_server = StoreServer(args.database_url) if args.database_url else None
        self.broker = make_broker(flavour, workdir / f"kafka-{flavour}").start()
        try:
            self.predictor_url, self.predictor = self._start_predictor()
        except BaseException:
            self.broker.stop()
            raise
        self.docs = transaction_docs(args.transactions, args.seed)
        self.broker_warmup = (warm_broker(self.broker, self.docs, args.rate,
                                          args.broker_warmup_seconds, args.partitions)
                              if args.broker_warmup_seconds > 0 else None)

    def _start_predictor(self) -> tuple[str, subprocess.Popen]:
        a = self.args
        if a.sequence_model_uri and a.autoencoder_model_uri:
            sequence, autoencoder = a.sequence_model_uri, a.autoencoder_model_uri
        else:
            sequence, autoencoder = write_default_models(self.workdir / "models")
        port = free_port()
        env = {**os.environ, "FRAUDOPS_HOME": str(self.workdir / "predictor"),
               "FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI": sequence,
               "FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI": autoencoder,
               "FRAUDOPS_PREDICTOR__HTTP_PORT": str(port),
               "FRAUDOPS_PREDICTOR__POLL_INTERVAL_S": "0",
               "FRAUDOPS_PREDICTOR__TORCH_THREADS": str(a.predictor_threads)}
        log = (self.workdir / "predictor.log").open("wb")
        process = subprocess.Popen([str(FRAUDOPS), "serve", "predictor"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v2/models/fraud-scorer/ready", process)
        return url, process

    def consumer(self, topics: dict[str, str], name: str, batch_size: int | None = None
                 ) -> Consumer:
        return Consumer(self.workdir, self.broker.bootstrap, topics, self.predictor_url,
                        batch_size or self.args.batch_size, name, db_url=self.store_url(name))

    def store_url(self, name: str) -> str | None:
        """A fresh store on the PostgreSQL server (None: the consumer's own SQLite file)."""
        return None if self.store_server is None else self.store_server.database(name)

    def services(self) -> dict[str, int]:
        """The shared services' processes: predictor, broker and the store's server."""
        processes = {"predictor": self.predictor.pid, "broker": self.broker.process.pid}
        if self.store_server is not None:
            processes["store"] = self.store_server.pid
        return processes

    def meter(self, consumer: Consumer, producer: bool = False) -> CpuMeter:
        processes = {"consumer": consumer.process.pid, **self.services()}
        if producer:
            processes["load_producer(bench)"] = os.getpid()
        return CpuMeter(processes)

    def sustained(self, docs: list[dict] | None = None, decisions: int | None = None,
                  label: str = "sustained") -> dict:
        """Backlog of N transactions (`docs`, default the clean ones); first to last of the
        `decisions` expected (default: one per document)."""
        docs = self.docs if docs is None else docs
        decisions = len(docs) if decisions is None else decisions
        topics = broker_topics(self.broker, self.args.partitions)
        topic = topics["FRAUDOPS_KAFKA__TOPICS__TRANSACTIONS"]
        produce_rate = produce_backlog(self.broker.bootstrap, topic, docs)
        self.backlog_topic = topic
        consumer = self.consumer(topics, label)
        meter = self.meter(consumer)
        try:
            consumer.wait_scored(1, timeout=120)
            # the stage counters first: the work they see from here covers every decision
            # counted from `first` on
            stages_before, cpu_before = consumer.stage_totals(), consumer.stage_cpu()
            start, first = time.monotonic(), consumer.scored()
            meter.start()
            done = consumer.wait_scored(decisions, timeout=self.args.timeout)
            elapsed = time.monotonic() - start
            cpu = meter.stop()
            stages = consumer.stage_means(stages_before)
            stage_cpu = cpu_us_per_transaction(consumer.stage_cpu(), cpu_before, done - first)
            counts = {name: int(consumer.counter(f"fraud_consumer_{name}_total"))
                      for name in ("late_events", "duplicates", "dead_letters", "alerts")}
        finally:
            consumer.stop()
        throughput = (done - first) / elapsed
        if done <= first:
            # Everything was decided before the first scrape saw a decision (a smoke-sized
            # backlog on a busy machine): no interval to measure; the figures say so.
            print(f"{label}: all {int(done):,} decided before the measurement window opened; "
                  "no throughput measured (use a larger backlog)", file=sys.stderr)
        return {"transactions": decisions, "messages": len(docs), "decided": int(done),
                "decided_before_window": int(first),
                "throughput_tx_s": round(throughput, 1),
                # messages handled per second (duplicates included), from the same interval
                "throughput_msg_s": round(throughput * len(docs) / max(decisions, 1), 1),
                "elapsed_s": round(elapsed, 2), "cpu_cores": cpu,
                # what one fully used core would sustain: comparable across machine loads
                "tx_per_consumer_cpu_second": round(throughput / max(cpu["consumer"], 1e-9), 1),
                "load_average_after": os.getloadavg(),
                "mean_stage_ms_per_batch": stages, "consumer_counters": counts,
                # CPU budget per transaction: each stage's thread, each whole process
                "stage_cpu_us_per_tx": stage_cpu,
                "process_cpu_us_per_tx": {name: round(1e6 * cores / max(throughput, 1e-9), 1)
                                          for name, cores in cpu.items()},
                "backlog_produce_msg_s": round(produce_rate, 1)}

    def messy(self) -> dict:
        """`sustained` again on the same transactions with late events and duplicates mixed in
        (`--late-share`, `--duplicate-share`): what a real stream costs against the clean one."""
        docs, mixed = messy_docs(self.docs, self.args.late_share, self.args.duplicate_share,
                                 self.args.seed)
        result = self.sustained(docs, decisions=len(self.docs), label="messy")
        return {**result, "late_share": self.args.late_share,
                "duplicate_share": self.args.duplicate_share, "mixed_in": mixed}

    def latency(self, rate: float, label: str) -> dict:
        """Offered `rate` tx/s for `--latency-seconds`, events stamped at produce time."""
        topics = broker_topics(self.broker, self.args.partitions)
        topic = topics["FRAUDOPS_KAFKA__TOPICS__TRANSACTIONS"]
        consumer = self.consumer(topics, label)
        try:
            warm = produce_at_rate(self.broker.bootstrap, topic, self.docs[:2000], 200, 2, "warm")
            consumer.wait_scored(warm, timeout=120)  # assigned, connections warm
            after_warmup = consumer.event_histogram()
            stages_before, cpu_before = consumer.stage_totals(), consumer.stage_cpu()
            meter = self.meter(consumer, producer=True)
            meter.start()
            sampler = StageSampler(consumer)
            sampler.start()
            start = time.monotonic()
            sent = produce_at_rate(self.broker.bootstrap, topic, self.docs, rate,
                                   self.args.latency_seconds, label)
            done = consumer.wait_scored(warm + sent, timeout=self.args.timeout) - warm
            elapsed = time.monotonic() - start
            cpu = meter.stop()
            stages, stages_by_5s = consumer.stage_means(), sampler.stop()
            totals, stage_cpu = consumer.stage_totals(), consumer.stage_cpu()
            durable = consumer.durable_latency(after_warmup)
        finally:
            consumer.stop()
        events, latencies = _measured(consumer, "warm")
        return {"offered_tx_s": round(rate, 1), "sent": sent, "decided": int(done),
                "achieved_tx_s": round(done / elapsed, 1),
                "latency": windowed_percentiles(events, latencies), "cpu_cores": cpu,
                # incl. the broker's acks and the commit (from the histogram's buckets)
                "latency_to_durable_histogram": durable,
                "mean_stage_ms_per_batch": stages,
                "mean_stage_ms_per_batch_by_5s": stages_by_5s,
                # CPU of each stage's thread per batch: at this rate batches are small, and
                # what a batch costs whatever its size shows here
                "stage_cpu_ms_per_batch": cpu_ms_per_batch(stage_cpu, cpu_before, totals,
                                                           stages_before),
                "load_average_after": os.getloadavg()}

    def transport_floor(self, rate: float) -> dict:
        """librdkafka + broker latency at `rate` on a fresh topic (see `transport_floor`)."""
        topic = broker_topics(self.broker, self.args.partitions)["FRAUDOPS_KAFKA__TOPICS__TRANSACTIONS"]
        return transport_floor(self.broker.bootstrap, topic, self.docs, rate,
                               self.args.latency_seconds)

    def naive(self) -> dict:
        """The same consumer with one predictor call and one commit per transaction."""
        topics = broker_topics(self.broker, self.args.partitions)
        topic = topics["FRAUDOPS_KAFKA__TOPICS__TRANSACTIONS"]
        docs = self.docs[: self.args.naive_transactions]
        produce_backlog(self.broker.bootstrap, topic, docs)
        consumer = self.consumer(topics, "naive", batch_size=1)
        meter = self.meter(consumer)
        try:
            consumer.wait_scored(1, timeout=120)
            start, first = time.monotonic(), consumer.scored()
            meter.start()
            time.sleep(self.args.naive_seconds)
            done = consumer.scored()
            elapsed = time.monotonic() - start
            cpu = meter.stop()
        finally:
            consumer.stop()
        throughput = (done - first) / elapsed
        return {"decided": int(done - first), "throughput_tx_s": round(throughput, 1),
                "elapsed_s": round(elapsed, 2), "cpu_cores": cpu,
                "tx_per_consumer_cpu_second": round(throughput / max(cpu["consumer"], 1e-9), 1),
                "load_average_after": os.getloadavg()}

    def scaleout(self, count: int) -> dict:
        """`count` consumers (processes) in one consumer group sharing one store (a SQLite file
        in WAL mode; in a deployment, PostgreSQL) on a fresh topic of `--partitions`
        partitions, all scoring with the one predictor. The group is formed and every member
        assigned before the backlog is produced (warm-up transactions of their own accounts on
        every partition until each consumer has decided one: no rebalance while measuring);
        measured from the end of the produce to the moment the first consumer runs out of work
        (`busy_window`), so every consumer is busy throughout."""
        a = self.args
        topics = broker_topics(self.broker, a.partitions)
        topic = topics["FRAUDOPS_KAFKA__TOPICS__TRANSACTIONS"]
        db_url = (self.store_url(f"scaleout{count}")
                  or f"sqlite:///{self.workdir / f'scaleout-{count}.db'}")
        group = f"bench-scaleout-{count}-{uuid.uuid4().hex[:6]}"
        load_before = os.getloadavg()
        consumers: dict[str, Consumer] = {}
        try:
            for i in range(count):  # started together, then waited for
                consumers[f"consumer_{i}"] = Consumer(
                    self.workdir, self.broker.bootstrap, topics, self.predictor_url,
                    a.batch_size, f"scaleout{count}-{i}", db_url=db_url, group_id=group,
                    wait=False)
            for consumer in consumers.values():
                consumer.wait_ready()
            warm = self._form_group(topic, list(consumers.values()))
            meter = CpuMeter({**{name: c.process.pid for name, c in consumers.items()},
                              **self.services(), "bench": os.getpid()})
            sampler = RunSampler(consumers, meter, a.sample_seconds)
            sampler.start()
            produce_rate = produce_backlog(self.broker.bootstrap, topic, self.docs)
            produced = time.monotonic()
            stages_before = {name: c.stage_totals() for name, c in consumers.items()}
            deadline = produced + a.timeout
            while (sum(c.scored() for c in consumers.values()) < warm + len(self.docs)
                   and time.monotonic() < deadline):  # scraped as seldom as sampled: it costs
                time.sleep(a.sample_seconds)
            samples = sampler.stop()
            stages = {name: c.stage_means(stages_before[name]) for name, c in consumers.items()}
        finally:
            for consumer in consumers.values():
                consumer.stop()
        first, last = busy_window(samples, produced)
        s0, s1 = samples[first], samples[last]
        seconds = s1["t"] - s0["t"]
        span = max(seconds, 1e-9)  # 0 when one sample came after the produce: nothing measured
        per_consumer = {name: round((s1["scored"][name] - s0["scored"][name]) / span, 1)
                        for name in consumers}
        cores = {name: round((s1["cpu"][name] - s0["cpu"][name]) / span, 3)
                 for name in s1["cpu"]}
        consumer_cores = sum(cores[name] for name in consumers)
        throughput = sum(per_consumer.values())
        before = int(sum(s0["scored"].values()) - warm)
        if throughput == 0:  # (see `sustained`): the backlog was decided while it was produced
            print(f"scale-out, {count} consumer(s): all {before:,} decided before the measurement "
                  "window opened; no throughput measured (use a larger backlog)", file=sys.stderr)
        mib = 2**20
        return {"consumers": count, "partitions": a.partitions, "transactions": len(self.docs),
                "decided": int(sum(samples[-1]["scored"].values()) - warm),
                "warm_up_transactions": warm, "decided_before_window": before,
                # of the backlog, each consumer's share (its partitions')
                "decided_per_consumer": {name: int(samples[-1]["scored"][name]
                                                   - samples[0]["scored"][name])
                                         for name in consumers},
                "window_s": round(seconds, 2),
                "window_decided": round(throughput * seconds),
                "throughput_tx_s": round(throughput, 1), "per_consumer_tx_s": per_consumer,
                "cpu_cores": cores, "consumer_cores_total": round(consumer_cores, 3),
                "tx_per_consumer_core": round(throughput / max(consumer_cores, 1e-9), 1),
                "consumer_rss_mib": {name: round(s1["rss"][name] / mib, 1) for name in consumers},
                "consumer_rss_peak_mib": {name: round(max(s["rss"][name] for s in samples) / mib, 1)
                                          for name in consumers},
                "predictor_rss_mib": round(rss_bytes(self.predictor.pid) / mib, 1),
                "mean_stage_ms_per_batch": stages,
                "store": "one SQLite file (WAL) shared by the group",
                "backlog_produce_msg_s": round(produce_rate, 1), "backlog_topic": topic,
                "load_average_before": load_before, "load_average_after": os.getloadavg()}

    def scaleout_all(self) -> dict:
        """`scaleout` for each of `--consumers`, the raw librdkafka ceiling on the first one's
        topic (same partitions, same run), and the capacity figures of the one-consumer run."""
        runs = [self.scaleout(count) for count in self.args.consumers]
        raw = raw_consume_ceiling(self.broker.bootstrap, runs[0]["backlog_topic"], len(self.docs))
        one = next((r for r in runs if r["consumers"] == 1), None)
        for r in runs:
            r["vs_raw_consume_ceiling"] = round(r["throughput_tx_s"] / raw["msg_s"], 6)
            if one:
                r["vs_one_consumer"] = round(r["throughput_tx_s"]
                                             / max(one["throughput_tx_s"], 1e-9), 2)
        return {"runs": runs, "raw_consume_ceiling": raw, "capacity": capacity(one or runs[0])}

    def _form_group(self, topic: str, consumers: list[Consumer], timeout: float = 120.0) -> int:
        """Warm-up transactions on every partition, every 0.2 s, until each consumer has decided
        one (all assigned: the group is formed), then until all are decided; returns how many
        were sent. Their accounts are their own and they carry no merchant or device, so the
        backlog's state starts as in the other phases."""
        producer = _producer(self.broker.bootstrap, linger_ms=1)
        template = {k: v for k, v in self.docs[0].items() if k not in ("merchant_id", "device_id")}
        sent, deadline = 0, time.monotonic() + timeout
        while True:
            for partition in range(self.args.partitions):
                doc = dict(template, transaction_id=f"warm-{sent}",
                           account_id=f"warm-{partition}")
                _send(producer, topic, doc["account_id"].encode(), json.dumps(doc).encode(),
                      partition=partition)
                sent += 1
            producer.flush()
            if all(c.scored() > 0 for c in consumers):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the group of {len(consumers)} did not form in {timeout} s")
            time.sleep(0.2)
        while sum(c.scored() for c in consumers) < sent:
            if time.monotonic() > deadline:
                raise TimeoutError("warm-up transactions not all decided")
            time.sleep(0.1)
        return sent

    def close(self) -> None:
        self.predictor.terminate()
        self.predictor.wait(30)
        self.broker.stop()
        if self.store_server is not None:
            self.store_server.close()


def capacity(run: dict) -> dict:
    """Sizing figures of a `Bench.scaleout` run (the one-consumer run where there is one): each
    process's cores per 1,000 tx/s while the consumers were saturated."""
    per_1000 = 1000 / max(run["throughput_tx_s"], 1e-9)
    cores = run["cpu_cores"]
    return {"consumers": run["consumers"], "tx_s_per_consumer_core": run["tx_per_consumer_core"],
            "consumer_cores_per_1000_tx_s": round(run["consumer_cores_total"] * per_1000, 3),
            "predictor_cores_per_1000_tx_s": round(cores["predictor"] * per_1000, 3),
            "broker_cores_per_1000_tx_s": round(cores["broker"] * per_1000, 3),
            **({"store_cores_per_1000_tx_s": round(cores["store"] * per_1000, 3)}
               if "store" in cores else {}),
            "consumer_rss_mib": max(run["consumer_rss_mib"].values()),
            "load_average_after": run["load_average_after"]}


def _measured(consumer: Consumer, warmup_prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Event times (epoch seconds) and latencies of the measured transactions (the warm-up
    ones excluded)."""
    engine = create_engine(consumer.db_url)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT event_time, scored_at FROM decisions WHERE transaction_id NOT LIKE :p"),
            {"p": f"{warmup_prefix}-%"}).all()
    engine.dispose()
    parse = datetime.fromisoformat
    pairs = np.array([(parse(str(e)).replace(tzinfo=UTC).timestamp(),
                       parse(str(s)).replace(tzinfo=UTC).timestamp()) for e, s in rows])
    return pairs[:, 0], pairs[:, 1] - pairs[:, 0]


def run(args: argparse.Namespace, flavour: Flavour) -> dict:
    results: dict = {}
    if not set(args.phases) - {"memory"}:  # no broker needed
        return results | {"broker": str(flavour),
                          "environment_after": {"load_average": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        bench = Bench(args, Path(tmp), flavour)
        try:
            if bench.broker_warmup is not None:
                results["broker_warmup"] = bench.broker_warmup
            if "sustained" in args.phases:
                results["sustained"] = bench.sustained()
                results["raw_consume_ceiling"] = raw_consume_ceiling(
                    bench.broker.bootstrap, bench.backlog_topic, len(bench.docs))
            if "messy" in args.phases:
                results["messy"] = bench.messy()
            if "naive" in args.phases:
                results["naive_one_call_per_tx"] = bench.naive()
            if "fixed" in args.phases:
                results["latency_fixed_rate"] = bench.latency(args.rate, "fixed")
                results["transport_floor_fixed_rate"] = bench.transport_floor(args.rate)
            if "saturation" in args.phases:
                saturation = args.saturation_rate or results.get("sustained", {}).get(
                    "throughput_tx_s") or 5000.0
                results["latency_saturation"] = bench.latency(saturation, "saturation")
            if "scaleout" in args.phases:
                results["scaleout"] = bench.scaleout_all()
        finally:
            bench.close()
    results["broker"] = str(flavour)
    results["environment_after"] = {"load_average": os.getloadavg()}
    if "sustained" in results and "naive_one_call_per_tx" in results:
        results["ratios"] = ratios(results)
    if "sustained" in results and "messy" in results:
        results["messy_vs_clean"] = round(results["messy"]["throughput_tx_s"]
                                          / max(results["sustained"]["throughput_tx_s"], 1e-9), 3)
    return results


def ratios(results: dict) -> dict:
    ours, raw = results["sustained"], results["raw_consume_ceiling"]
    naive = results["naive_one_call_per_tx"]
    return {
        "vs_raw_consume_ceiling": round(ours["throughput_tx_s"] / raw["msg_s"], 3),
        "vs_raw_consume_ceiling_per_cpu": round(
            ours["tx_per_consumer_cpu_second"] / raw["msg_per_cpu_second"], 3),
        "vs_naive": round(ours["throughput_tx_s"] / max(naive["throughput_tx_s"], 1e-9), 1)}


def environment(args: argparse.Namespace) -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(), "batch_size": args.batch_size,
            "partitions": args.partitions, "predictor_threads": args.predictor_threads,
            "store": "postgresql" if args.database_url else "sqlite",
            "consumers": args.consumers,
            "models": "given" if args.sequence_model_uri else "default architecture, untrained",
            "time": datetime.now(UTC).isoformat()}


def report(results: dict) -> None:
    print(f"== broker: {results['broker']}")
    if "broker_warmup" in results:
        w = results["broker_warmup"]
        print(f"broker warm-up           {w['seconds']} s at {w['rate_msg_s']:,.0f} msg/s: broker "
              f"cores by round {w['broker_cores_by_round']}, floor p99 ms by round "
              f"{w['floor_p99_ms_by_round']}")
    if "sustained" in results:
        s = results["sustained"]
        print(f"sustained throughput     {s['throughput_tx_s']:>10,.0f} tx/s "
              f"({s['decided']:,} tx in {s['elapsed_s']} s)  cpu {s['cpu_cores']}  "
              f"= {s['tx_per_consumer_cpu_second']:,.0f} tx per consumer CPU-second; "
              f"stages ms/batch {s['mean_stage_ms_per_batch']}")
        print(f"CPU us per transaction   stages {s['stage_cpu_us_per_tx']}; "
              f"processes {s['process_cpu_us_per_tx']}")
        raw = results["raw_consume_ceiling"]
        print(f"raw librdkafka ceiling {raw['msg_s']:>10,.0f} msg/s "
              f"({raw['msg_per_cpu_second']:,.0f} per CPU-second)")
    if "messy" in results:
        m = results["messy"]
        versus = (f"= {results['messy_vs_clean']:.2f} x the clean stream"
                  if "messy_vs_clean" in results else "")
        print(f"late {m['late_share']:.0%}, duplicates {m['duplicate_share']:.0%}: "
              f"{m['throughput_tx_s']:>8,.0f} tx/s ({m['throughput_msg_s']:,.0f} msg/s) {versus}; "
              f"consumer counted {m['consumer_counters']} for {m['mixed_in']} mixed in")
    if "ratios" in results:
        ratios = results["ratios"]
        print(f"ours / raw ceiling       {ratios['vs_raw_consume_ceiling']:.2f} x "
              f"(per CPU: {ratios['vs_raw_consume_ceiling_per_cpu']:.2f} x); "
              f"ours / naive {ratios['vs_naive']:.1f} x")
    if "naive_one_call_per_tx" in results:
        n = results["naive_one_call_per_tx"]
        print(f"naive (1 call per tx)    {n['throughput_tx_s']:>10,.0f} tx/s "
              f"({n['tx_per_consumer_cpu_second']:,.0f} tx per consumer CPU-second)")
    for key in ("latency_fixed_rate", "latency_saturation"):
        if key not in results:
            continue
        r = results[key]
        lat = r["latency"]
        print(f"{key:<24} offered {r['offered_tx_s']:,.0f} tx/s achieved "
              f"{r['achieved_tx_s']:,.0f}: p50 {lat['p50_ms']} ms p95 {lat['p95_ms']} ms "
              f"p99 {lat['p99_ms']} ms max {lat['max_ms']} ms (to durable, from the consumer's "
              f"histogram: {r['latency_to_durable_histogram']})  cpu {r['cpu_cores']}; "
              f"stages ms/batch {r['mean_stage_ms_per_batch']}")
        print(f"{'':<24} p50 by 5 s {lat['p50_ms_by_5s']}; p99 by 5 s {lat['p99_ms_by_5s']}")
        print(f"{'':<24} stage CPU ms/batch {r['stage_cpu_ms_per_batch']}")
        by_5s = r["mean_stage_ms_per_batch_by_5s"]
        slow = [stage for stage, ms in r["mean_stage_ms_per_batch"].items()
                if stage != "batch_size" and ms >= 1.0]
        print(f"{'':<24} ms/batch by 5 s: " + "; ".join(
            f"{stage} {[w.get(stage) for w in by_5s]}" for stage in [*slow, "batch_size"]))
        if key == "latency_fixed_rate" and "transport_floor_fixed_rate" in results:
            f = results["transport_floor_fixed_rate"]
            print(f"{'transport floor':<24} librdkafka + broker alone at the same rate: "
                  f"p50 {f['p50_ms']} ms p95 {f['p95_ms']} ms p99 {f['p99_ms']} ms; "
                  f"p50 by 5 s {f['p50_ms_by_5s']}; p99 by 5 s {f['p99_ms_by_5s']}")


def report_scaleout(results: dict) -> None:
    if "scaleout" in results:
        scale = results["scaleout"]
        raw = scale["raw_consume_ceiling"]
        for r in scale["runs"]:
            versus = (f", {r['vs_one_consumer']:.2f} x one consumer"
                      if "vs_one_consumer" in r else "")
            print(f"{r['consumers']} consumer(s), {r['partitions']} partitions: "
                  f"{r['throughput_tx_s']:>8,.0f} tx/s over {r['window_s']} s "
                  f"({r['vs_raw_consume_ceiling']:.3f} x the raw ceiling {raw['msg_s']:,.0f} "
                  f"msg/s{versus}); per consumer {r['per_consumer_tx_s']}; cores "
                  f"{r['cpu_cores']}; {r['tx_per_consumer_core']:,.0f} tx per consumer core; "
                  f"consumer RSS MiB {r['consumer_rss_mib']}; load {r['load_average_after']}")
        print(f"capacity                 {scale['capacity']}")
    if "account_state_memory" in results:
        m = results["account_state_memory"]
        kept = {"scoring": f"with a device each and {m['merchants']:,} merchants",
                "account_only": "stage mode: merchant and device values given"}
        for mode in ("scoring", "account_only"):
            print(f"feature state, {mode:<12} {m[mode]['bytes_per_account']:,} bytes per account "
                  f"= {m[mode]['mib_per_million_accounts']:,.0f} MiB per million accounts "
                  f"({m['accounts']:,} accounts x {m['transactions_per_account']} transactions, "
                  f"{kept[mode]}; tracemalloc + the native tables' own count)")


def side_by_side(runs: dict[str, dict]) -> list[tuple[str, ...]]:
    """The headline figures of each broker's run, one row per figure (missing: "-")."""
    def pick(result: dict, *path: str | int) -> str:
        for key in path:
            if isinstance(result, list) and isinstance(key, int) and key < len(result):
                result = result[key]
                continue
            if not isinstance(result, dict) or key not in result:
                return "-"
            result = result[key]
        return f"{result:,.1f}" if isinstance(result, float | int) else str(result)

    figures = [
        ("sustained tx/s", ("sustained", "throughput_tx_s")),
        ("raw librdkafka ceiling msg/s", ("raw_consume_ceiling", "msg_s")),
        ("late+duplicates tx/s", ("messy", "throughput_tx_s")),
        ("late+duplicates / clean", ("messy_vs_clean",)),
        ("naive tx/s", ("naive_one_call_per_tx", "throughput_tx_s")),
        ("fixed rate: p50 ms", ("latency_fixed_rate", "latency", "p50_ms")),
        ("fixed rate: p99 ms", ("latency_fixed_rate", "latency", "p99_ms")),
        ("transport floor: p50 ms", ("transport_floor_fixed_rate", "p50_ms")),
        ("transport floor: p99 ms", ("transport_floor_fixed_rate", "p99_ms")),
        ("saturation: achieved tx/s", ("latency_saturation", "achieved_tx_s")),
        ("saturation: p99 ms", ("latency_saturation", "latency", "p99_ms")),
        ("broker CPU cores (sustained)", ("sustained", "cpu_cores", "broker")),
        ("state bytes per account", ("account_state_memory", "scoring", "bytes_per_account")),
    ]
    counts = next((r["scaleout"]["runs"] for r in runs.values() if "scaleout" in r), [])
    for i, r in enumerate(counts):
        figures.append((f"{r['consumers']} consumer(s): tx/s", ("scaleout", "runs", i,
                                                                 "throughput_tx_s")))
    return [(name, *(pick(runs[b], *path) for b in runs)) for name, path in figures]


def print_side_by_side(runs: dict[str, dict]) -> None:
    rows = side_by_side(runs)
    print("== side by side")
    print(f"{'':<32}" + "".join(f"{b:>14}" for b in runs))
    for name, *values in rows:
        print(f"{name:<32}" + "".join(f"{v:>14}" for v in values))


SMOKE = {"transactions": 2000, "latency_seconds": 3.0, "naive_transactions": 300,
         "naive_seconds": 2.0, "rate": 200.0, "saturation_rate": 400.0, "timeout": 120.0,
         "sample_seconds": 0.2, "memory_accounts": 300, "memory_transactions_per_account": 4,
         "broker_warmup_seconds": 2.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed offered rate, tx/s")
    parser.add_argument("--saturation-rate", type=float, default=0.0,
                        help="offered rate for the saturation run (default: measured throughput)")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--naive-transactions", type=int, default=20_000)
    parser.add_argument("--naive-seconds", type=float, default=15.0)
    parser.add_argument("--late-share", type=float, default=0.10,
                        help="messy phase: share of transactions delivered late (out of order)")
    parser.add_argument("--duplicate-share", type=float, default=0.01,
                        help="messy phase: share of transactions delivered twice")
    parser.add_argument("--broker-warmup-seconds", type=float, default=90.0,
                        help="traffic at --rate through the fresh broker before any phase "
                             "(a JVM's first minutes of compiling are not its steady state); "
                             "0: none")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--predictor-threads", type=int, default=1)
    parser.add_argument("--database-url", default="",
                        help="a PostgreSQL server for the stores (a fresh database each), e.g. "
                             "postgresql+psycopg://postgres@127.0.0.1:5432/postgres; default: "
                             "a SQLite file per consumer")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequence-model-uri", default="")
    parser.add_argument("--autoencoder-model-uri", default="")
    parser.add_argument("--consumers", type=int, nargs="+", default=[1, 2],
                        help="scaleout phase: a run with each number of consumers (processes, "
                             "one group) on --partitions partitions")
    parser.add_argument("--sample-seconds", type=float, default=0.5,
                        help="scaleout phase: how often decisions, CPU and memory are sampled")
    parser.add_argument("--memory-accounts", type=int, default=5_000,
                        help="memory phase: distinct accounts in the traced feature state")
    parser.add_argument("--memory-transactions-per-account", type=int, default=16)
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="which measurements to run (default: all)")
    parser.add_argument("--kafka", choices=[*(f.value for f in Flavour), "both"],
                        default=Flavour.APACHE.value,
                        help="broker: Apache Kafka (default), tansu, or both one after the other")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes (seconds per phase): checks that the benchmark runs")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    if "scaleout" in args.phases and max(args.consumers) > args.partitions:
        parser.error(f"--consumers {max(args.consumers)} > --partitions {args.partitions}: "
                     "a consumer would have no partition")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    flavours = list(Flavour) if args.kafka == "both" else [Flavour(args.kafka)]
    memory = {}
    if "memory" in args.phases:  # in this process, before the services start; no broker in it
        memory["account_state_memory"] = account_state_memory(
            args.memory_accounts, args.memory_transactions_per_account, seed=args.seed) | {
            "load_average_after": os.getloadavg()}
    runs = {}
    for flavour in flavours:
        runs[str(flavour)] = {"environment": environment(args), **memory, **run(args, flavour)}
        report(runs[str(flavour)])
        report_scaleout(runs[str(flavour)])
    if len(runs) > 1:
        print_side_by_side(runs)
        results = {"brokers": runs}
    else:
        results = next(iter(runs.values()))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
