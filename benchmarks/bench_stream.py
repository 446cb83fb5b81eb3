"""Stream benchmark: the consumer + predictor on a real broker, against two baselines.

Starts a broker (``--kafka apache``: Apache Kafka, KRaft, from Maven Central; ``tansu``: the
embedded broker; ``both``: the whole run on each, then side by side), the `fraud-scorer` predictor (`fraudops serve predictor`, models of the
default architecture unless ``--sequence-model-uri``/``--autoencoder-model-uri`` name trained
ones: timing does not depend on weight values) and `fraudops consume` as subprocesses, then:

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
4. the transport floor at the fixed rate: kafka-python + the broker alone (no processing), same
   rate, duration and partitions, so that what the consumer adds shows;
5. baselines on the same broker: (a) the raw kafka-python consume ceiling (read + JSON decode
   only), (b) a naive design: one synchronous predictor call (and one commit) per transaction,
   i.e. the same consumer with batch size 1.

    python benchmarks/bench_stream.py --transactions 200000 --out stream.json
    python benchmarks/bench_stream.py --phases fixed --transactions 20000   # latency alone
    python benchmarks/bench_stream.py --kafka both --out stream.json        # both brokers
    python benchmarks/bench_stream.py --smoke                                # seconds: it runs

Consumer settings come from the environment as usual (e.g. FRAUDOPS_CONSUMER__PIPELINED=true).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
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
from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy import create_engine, text

from local.kafka import Flavour, LocalBroker, make_broker

FRAUDOPS = Path(sys.executable).parent / "fraudops"
PHASES = ("sustained", "messy", "naive", "fixed", "saturation")
SCORED = re.compile(r"^fraud_consumer_transactions_scored_total\{[^}]*\} (\S+)$", re.MULTILINE)
STAGE_SUM = re.compile(r'^fraud_consumer_stage_seconds_sum\{stage="(\w+)"\} (\S+)$', re.MULTILINE)
STAGE_CPU = re.compile(r'^fraud_consumer_stage_cpu_seconds_total\{stage="(\w+)"\} (\S+)$',
                       re.MULTILINE)
STAGE_COUNT = re.compile(r'^fraud_consumer_stage_seconds_count\{stage="(\w+)"\} (\S+)$', re.MULTILINE)
EVENT_BUCKET = re.compile(
    r'^fraud_consumer_event_to_decision_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.MULTILINE)
COUNTER = r"^{}(?:\{{[^}}]*\}})? (\S+)$"
EVENT_COUNT = re.compile(r"^fraud_consumer_event_to_decision_seconds_count (\S+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20,
                             acks=1)
    start = time.perf_counter()
    for doc in docs:
        producer.send(topic, key=doc["account_id"].encode(), value=json.dumps(doc).encode())
    producer.flush()
    elapsed = time.perf_counter() - start
    producer.close()
    return len(docs) / elapsed


def produce_at_rate(bootstrap: str, topic: str, templates: list[dict], rate: float,
                    seconds: float, prefix: str) -> int:
    """Produce `rate` tx/s for `seconds`, each stamped with the current time; returns the count."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks=1)
    start, sent, tick = time.monotonic(), 0, 0.005
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate)
        stamp = datetime.now(UTC).isoformat()
        while sent < due:
            doc = dict(templates[sent % len(templates)], transaction_id=f"{prefix}-{sent}",
                       timestamp=stamp)
            producer.send(topic, key=doc["account_id"].encode(), value=json.dumps(doc).encode())
            sent += 1
        time.sleep(tick)
    producer.flush()
    producer.close()
    return sent


def raw_consume_ceiling(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """kafka-python read + JSON decode only (tuned as in ENVIRONMENT.md): messages per second
    and per CPU-second of this (single-threaded reading) process."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=2000, max_partition_fetch_bytes=4 << 20)
    seen, start, cpu = 0, None, 0.0
    while seen < n:
        for records in consumer.poll(timeout_ms=1000).values():
            if start is None:
                start, cpu = time.perf_counter(), time.process_time()
            for record in records:
                json.loads(record.value)
            seen += len(records)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    consumer.close()
    return {"msg_s": round(seen / elapsed, 1), "msg_per_cpu_second": round(seen / cpu, 1)}


def transport_floor(bootstrap: str, topic: str, templates: list[dict], rate: float,
                    seconds: float) -> dict:
    """Event-to-receipt latency of kafka-python + the broker alone, no processing: the same
    offered rate, duration, partition count and fetch settings as the consumer's phase. What
    the consumer adds is its latency minus this floor."""
    from consumers.settings import ConsumerSettings

    settings = ConsumerSettings()  # the environment's, as the consumer subprocess reads them
    c, kafka = settings.consumer, settings.kafka
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"floor-{uuid.uuid4()}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             fetch_max_wait_ms=c.fetch_max_wait_ms,
                             max_poll_records=c.max_poll_records,
                             max_partition_fetch_bytes=c.max_partition_fetch_bytes,
                             session_timeout_ms=kafka.session_timeout_ms,
                             heartbeat_interval_ms=kafka.heartbeat_interval_ms)
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    stamps: list[tuple[float, float]] = []
    done = threading.Event()

    def receive() -> None:
        parse = datetime.fromisoformat
        while not done.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.time()
                stamps.extend((parse(json.loads(r.value)["timestamp"]).timestamp(), now)
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


def cpu_us_per_transaction(now: dict[str, float], before: dict[str, float],
                           transactions: float) -> dict[str, float]:
    """CPU microseconds per transaction of each stage between two `Consumer.stage_cpu`."""
    return {stage: round(1e6 * (total - before.get(stage, 0.0)) / max(transactions, 1), 1)
            for stage, total in now.items()}


class CpuMeter:
    """CPU seconds of processes (with their children, except for this one's: the services it
    started are measured on their own) between `start` and `stop`."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in processes.items()}

    def _sample(self) -> dict[str, float]:
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
        self._t0, self._cpu0 = time.monotonic(), self._sample()

    def stop(self) -> dict[str, float]:
        """Average cores used per process over the interval (1.0 = one core busy)."""
        elapsed, cpu = time.monotonic() - self._t0, self._sample()
        return {name: round((cpu[name] - self._cpu0[name]) / elapsed, 3) for name in cpu}


class Consumer:
    """`fraudops consume` in a subprocess with its own topics, store and metrics port."""

    def __init__(self, workdir: Path, bootstrap: str, topics: dict[str, str], predictor: str,
                 batch_size: int, name: str) -> None:
        self.metrics_port = free_port()
        self.db_url = f"sqlite:///{workdir / f'{name}.db'}"
        env = {**os.environ, **topics, "FRAUDOPS_HOME": str(workdir / name),
               "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
               "FRAUDOPS_DATABASE__URL": self.db_url,
               "FRAUDOPS_CONSUMER__GROUP_ID": f"bench-{name}-{uuid.uuid4().hex[:6]}",
               "FRAUDOPS_CONSUMER__PREDICTOR_URL": predictor,
               "FRAUDOPS_CONSUMER__BATCH_SIZE": str(batch_size),
               "FRAUDOPS_CONSUMER__METRICS_PORT": str(self.metrics_port)}
        self.log = (workdir / f"{name}.log").open("wb")
        self.process = subprocess.Popen([str(FRAUDOPS), "consume"], env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
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


class Bench:
    """The benchmark's shared services and the phases that use them."""

    def __init__(self, args: argparse.Namespace, workdir: Path, flavour: Flavour) -> None:
        self.args, self.workdir = args, workdir
        self.broker = make_broker(flavour, workdir / f"kafka-{flavour}").start()
        try:
            self.predictor_url, self.predictor = self._start_predictor()
        except BaseException:
            self.broker.stop()
            raise
        self.docs = transaction_docs(args.transactions, args.seed)

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
                        batch_size or self.args.batch_size, name)

    def meter(self, consumer: Consumer, producer: bool = False) -> CpuMeter:
        processes = {"consumer": consumer.process.pid, "predictor": self.predictor.pid,
                     "broker": self.broker.process.pid}
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
            start, first = time.monotonic(), consumer.scored()
            meter.start()
            stages_before, cpu_before = consumer.stage_totals(), consumer.stage_cpu()
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
        return {"transactions": decisions, "messages": len(docs), "decided": int(done),
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
                "load_average_after": os.getloadavg()}

    def transport_floor(self, rate: float) -> dict:
        """kafka-python + broker latency at `rate` on a fresh topic (see `transport_floor`)."""
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

    def close(self) -> None:
        self.predictor.terminate()
        self.predictor.wait(30)
        self.broker.stop()


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
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        bench = Bench(args, Path(tmp), flavour)
        try:
            results: dict = {}
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
            "models": "given" if args.sequence_model_uri else "default architecture, untrained",
            "time": datetime.now(UTC).isoformat()}


def report(results: dict) -> None:
    print(f"== broker: {results['broker']}")
    if "sustained" in results:
        s = results["sustained"]
        print(f"sustained throughput     {s['throughput_tx_s']:>10,.0f} tx/s "
              f"({s['decided']:,} tx in {s['elapsed_s']} s)  cpu {s['cpu_cores']}  "
              f"= {s['tx_per_consumer_cpu_second']:,.0f} tx per consumer CPU-second; "
              f"stages ms/batch {s['mean_stage_ms_per_batch']}")
        print(f"CPU us per transaction   stages {s['stage_cpu_us_per_tx']}; "
              f"processes {s['process_cpu_us_per_tx']}")
        raw = results["raw_consume_ceiling"]
        print(f"raw kafka-python ceiling {raw['msg_s']:>10,.0f} msg/s "
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
        by_5s = r["mean_stage_ms_per_batch_by_5s"]
        slow = [stage for stage, ms in r["mean_stage_ms_per_batch"].items()
                if stage != "batch_size" and ms >= 1.0]
        print(f"{'':<24} ms/batch by 5 s: " + "; ".join(
            f"{stage} {[w.get(stage) for w in by_5s]}" for stage in [*slow, "batch_size"]))
        if key == "latency_fixed_rate" and "transport_floor_fixed_rate" in results:
            f = results["transport_floor_fixed_rate"]
            print(f"{'transport floor':<24} kafka-python + broker alone at the same rate: "
                  f"p50 {f['p50_ms']} ms p95 {f['p95_ms']} ms p99 {f['p99_ms']} ms; "
                  f"p50 by 5 s {f['p50_ms_by_5s']}; p99 by 5 s {f['p99_ms_by_5s']}")


def side_by_side(runs: dict[str, dict]) -> list[tuple[str, ...]]:
    """The headline figures of each broker's run, one row per figure (missing: "-")."""
    def pick(result: dict, *path: str) -> str:
        for key in path:
            if not isinstance(result, dict) or key not in result:
                return "-"
            result = result[key]
        return f"{result:,.1f}" if isinstance(result, float | int) else str(result)

    figures = [
        ("sustained tx/s", ("sustained", "throughput_tx_s")),
        ("raw kafka-python ceiling msg/s", ("raw_consume_ceiling", "msg_s")),
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
    ]
    return [(name, *(pick(runs[b], *path) for b in runs)) for name, path in figures]


def print_side_by_side(runs: dict[str, dict]) -> None:
    rows = side_by_side(runs)
    print("== side by side")
    print(f"{'':<32}" + "".join(f"{b:>14}" for b in runs))
    for name, *values in rows:
        print(f"{name:<32}" + "".join(f"{v:>14}" for v in values))


SMOKE = {"transactions": 2000, "latency_seconds": 3.0, "naive_transactions": 300,
         "naive_seconds": 2.0, "rate": 200.0, "saturation_rate": 400.0, "timeout": 120.0}


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
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--predictor-threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequence-model-uri", default="")
    parser.add_argument("--autoencoder-model-uri", default="")
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
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    flavours = list(Flavour) if args.kafka == "both" else [Flavour(args.kafka)]
    runs = {}
    for flavour in flavours:
        runs[str(flavour)] = {"environment": environment(args), **run(args, flavour)}
        report(runs[str(flavour)])
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
