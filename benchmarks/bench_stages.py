"""Entity-stage benchmark: what Kafka-native repartitioning costs (`consumers.stages`).

1. CPU per transaction per stage, without a broker: `StageProcessor.process` (parse, state,
   re-key, attach the features) for the router, the merchant and the device stage over the same
   stream, and the scoring state's step with the entity parts local (one consumer) or given
   (stage mode, features decoded from the headers);
2. state memory per tracked entity: a merchant stage's and a device stage's per-partition state
   after the stream (tracemalloc), divided by the entities tracked, and the transaction-id memory
   of the repeat filter per remembered id;
3. latency added per hop at a fixed rate (default 1,000 tx/s) on a real broker: the router,
   merchant and device stages as `fraudops consume --stage ...` processes, transactions timestamped
   at produce time; per hop, the broker timestamp (CreateTime) of a transaction's record on the
   stage's output minus that on its input, p50/p95/p99; and end to end (transactions -> enriched).

    python benchmarks/bench_stages.py --out stages.json
    python benchmarks/bench_stages.py --smoke

Figures depend on the machine's load: run it on an idle machine and report `uptime` with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psutil
from confluent_kafka import Consumer, TopicPartition

from consumers.messages import Incoming, given_features
from consumers.stages import StageConfig, StageProcessor
from fraudops.features import EventTimePolicy, OnlineFeatureState, build_spec
from fraudops.kafka import make_producer
from fraudops.schema import Transaction
from fraudops.settings import KafkaSettings, TopicSettings
from fraudops.store import Store
from fraudops.testing import read_records
from local.kafka import Flavour, make_broker

FRAUDOPS = Path(sys.executable).parent / "fraudops"
SPEC = build_spec()
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def stream(n: int, accounts: int, merchants: int, devices: int, seed: int = 5) -> list[dict]:
    rng = np.random.default_rng(seed)
    seconds = np.cumsum(rng.exponential(0.5, n))
    return [{"transaction_id": f"tx-{i}", "account_id": f"acc-{rng.integers(accounts)}",
             "timestamp": (T0 + timedelta(seconds=float(s))).isoformat(),
             "amount": float(np.round(rng.lognormal(3, 1.2), 2)),
             "merchant_id": f"m-{rng.integers(merchants)}", "device_id": f"d-{rng.integers(devices)}",
             "channel": "online", "merchant_category": "retail", "country": "US"}
            for i, s in enumerate(seconds)]


def cpu_and_memory(docs: list[dict]) -> dict:
    """Per stage: CPU microseconds per transaction and state bytes per tracked entity."""
    topics = TopicSettings()
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_url(f"sqlite:///{Path(tmp) / 'store.db'}")
        records = [Incoming(topics.transactions, 0, i, d["account_id"].encode(),
                            json.dumps(d).encode()) for i, d in enumerate(docs)]
        for stage in ("router", "merchant", "device"):
            processor = StageProcessor(StageConfig(stage, f"bench-{stage}", topics,
                                                   snapshot_interval_s=1e9,
                                                   event_time=EventTimePolicy(float("inf"))),
                                       store=store)
            topic = processor.config.inputs[0]
            processor.assign(topic, [0])
            records = [Incoming(topic, 0, i, r.key, r.value, -1, r.headers)
                       for i, r in enumerate(records)]
            start = time.process_time()
            produced = []
            for i in range(0, len(records), 500):
                produced += processor.process(records[i:i + 500]).outgoing
            cpu = time.process_time() - start
            out[stage] = {"cpu_us_per_tx": round(cpu / len(records) * 1e6, 1)}
            records = [Incoming(topic, 0, i, m.key, m.value, -1, m.headers)
                       for i, m in enumerate(produced)]
        store.close()
    out["ids_bytes_each"] = _ids_bytes(docs)
    txs = [Transaction.model_validate(d) for d in docs]
    for stage in ("merchant", "device"):
        out[stage] |= _state_memory(txs, stage, out["ids_bytes_each"])
    out["scoring"] = _scoring_cpu(docs, records)
    return out


def _state_memory(txs: list[Transaction], entity: str, id_bytes: float) -> dict:
    """An entity stage's state after `txs` (the transactions already in memory): bytes per
    tracked entity, the repeat filter's ids left out (`_ids_bytes`)."""
    state = OnlineFeatureState(SPEC, 1, (entity,))
    tracemalloc.start()
    for tx in txs:
        state.entity_update(tx, entity)
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    tracked, ids = len(state.velocity[entity]), len(state.seen.ids)
    return {"tracked": tracked, "state_bytes": used, "remembered_ids": ids,
            "bytes_per_entity": round((used - ids * id_bytes) / tracked)}


def _ids_bytes(docs: list[dict]) -> float:
    """Memory of the repeat filter per remembered transaction id (the id string itself, shared
    with the transaction, left out)."""
    state = OnlineFeatureState(SPEC, 1, ())
    tracemalloc.start()
    for d in docs:
        state.seen.add(d["transaction_id"], 0)
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return round(used / len(docs), 1)


def _scoring_cpu(docs: list[dict], enriched: list[Incoming]) -> dict:
    """The scoring state's step per transaction: all local vs account-only with given values."""
    txs = [Transaction.model_validate(d) for d in docs]
    local = OnlineFeatureState(SPEC)
    start = time.process_time()
    for tx in txs:
        local.update(tx)
    local_us = (time.process_time() - start) / len(txs) * 1e6
    staged = OnlineFeatureState(SPEC, owned=("account",))
    by_id = {json.loads(r.value)["transaction_id"]: r for r in enriched}
    pairs = [(tx, by_id[tx.transaction_id]) for tx in txs]
    start = time.process_time()
    for tx, record in pairs:
        staged.update(tx, given_features(record))
    staged_us = (time.process_time() - start) / len(txs) * 1e6
    return {"local_us_per_tx": round(local_us, 1), "given_us_per_tx": round(staged_us, 1)}


def hop_latency(rate: float, seconds: float, partitions: int, flavour: str) -> dict:
    """Per-hop latency (broker CreateTime differences) with the stages as processes."""
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        work = Path(os.environ.get("BENCH_STAGES_WORKDIR", tmp))
        work.mkdir(parents=True, exist_ok=True)
        broker = make_broker(Flavour(flavour), work / "kafka").start()
        try:
            return _run_stages(broker, work, rate, seconds, partitions)
        finally:
            broker.stop()


def _run_stages(broker, work: Path, rate: float, seconds: float, partitions: int) -> dict:
    suffix = uuid.uuid4().hex[:6]
    names = {f: broker.create_topic(f"{f}-{suffix}", partitions) for f in (
        "transactions", "labels", "dead_letter", "by_merchant", "by_device", "enriched")}
    db = f"sqlite:///{work / 'store.db'}"
    Store.from_url(db).close()
    env = {**os.environ, "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
           "FRAUDOPS_DATABASE__URL": db, "FRAUDOPS_HOME": str(work / "home"),
           "FRAUDOPS_CONSUMER__METRICS_PORT": "0", "FRAUDOPS_CONSUMER__GROUP_ID": "bench",
           "FRAUDOPS_CONSUMER__ENTITY_STAGES": "true"}
    env |= {f"FRAUDOPS_KAFKA__TOPICS__{f.upper()}": n for f, n in names.items()}
    stages = [subprocess.Popen([str(FRAUDOPS), "consume", "--stage", s], env=env,
                               stdout=(work / f"{s}.log").open("wb"), stderr=subprocess.STDOUT)
              for s in ("router", "merchant", "device")]
    try:
        warm = stream(50, accounts=50, merchants=5, devices=5, seed=9)
        producer = make_producer(KafkaSettings(bootstrap_servers=broker.bootstrap),
                                 **{"linger.ms": 1})
        for doc in warm:  # every stage has joined its group once these came through
            doc["transaction_id"] = "warm-" + doc["transaction_id"]
            producer.produce(names["transactions"], json.dumps(doc).encode(),
                             doc["account_id"].encode())
        producer.flush(30)
        deadline = time.monotonic() + 120
        while _count(broker, names["enriched"], partitions) < len(warm):
            if time.monotonic() > deadline:
                raise RuntimeError("the stages did not start (see the logs in the work dir)")
            time.sleep(0.5)
        n = int(rate * seconds)
        docs = stream(n, accounts=5000, merchants=500, devices=3000)
        cpu_before = [_cpu_s(p) for p in stages]
        start = time.monotonic()
        for i, doc in enumerate(docs):
            doc["timestamp"] = datetime.now(UTC).isoformat()
            producer.produce(names["transactions"], json.dumps(doc).encode(),
                             doc["account_id"].encode())
            producer.poll(0)  # serve the delivery reports (they hold queue space until then)
            delay = start + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if producer.flush(30):
            raise RuntimeError("the load generator's records were not acknowledged in 30 s")
        deadline = time.monotonic() + 60
        while (_count(broker, names["enriched"], partitions) < n + len(warm)
               and time.monotonic() < deadline):
            time.sleep(0.5)
        cpu = [_cpu_s(p) - before for p, before in zip(stages, cpu_before, strict=True)]
        times = {f: _times(broker, names[f], partitions)
                 for f in ("transactions", "by_merchant", "by_device", "enriched")}
    finally:
        for process in stages:
            process.terminate()
        for process in stages:
            process.wait(30)
    hops = {"router": ("transactions", "by_merchant"), "merchant": ("by_merchant", "by_device"),
            "device": ("by_device", "enriched"), "end_to_end": ("transactions", "enriched")}
    out = {"rate": rate, "transactions": n, "delivered": len(times["enriched"]),
           # the processes' CPU while the stream passed (Kafka clients included), per transaction
           "process_cpu_us_per_tx": {s: round(c / n * 1e6, 1) for s, c in zip(
               ("router", "merchant", "device"), cpu, strict=True)}}
    for hop, (a, b) in hops.items():
        delta = np.array([times[b][i] - times[a][i] for i in times[b]
                          if i in times[a] and not i.startswith("warm-")])
        out[hop] = {f"p{q}_ms": float(np.percentile(delta, q)) for q in (50, 95, 99)}
    return out


def _cpu_s(process: subprocess.Popen) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def _ends(broker, topic: str, partitions: int) -> list[tuple[int, int]]:
    """(low, high) watermark of each partition of `topic`."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "bench-probe"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in range(partitions)]
    finally:
        consumer.close()


def _count(broker, topic: str, partitions: int) -> int:
    return sum(high for _, high in _ends(broker, topic, partitions))


def _times(broker, topic: str, partitions: int) -> dict[str, int]:
    """Transaction id -> CreateTime (ms) of its first record on `topic`."""
    total = sum(high - low for low, high in _ends(broker, topic, partitions))
    out: dict[str, int] = {}
    for r in read_records(broker.bootstrap, topic, until=lambda got: len(got) >= total,
                          timeout=120):
        out.setdefault(json.loads(r.value)["transaction_id"], r.timestamp)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--kafka", choices=("apache", "tansu"), default="apache")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.transactions, args.seconds, args.rate = 2000, 3.0, 200.0
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    docs = stream(args.transactions, accounts=5000, merchants=500, devices=3000)
    result = {"load_before": os.getloadavg(), "cpu_count": os.cpu_count(),
              "in_process": cpu_and_memory(docs)}
    print(json.dumps(result, indent=2), flush=True)
    result["latency"] = hop_latency(args.rate, args.seconds, args.partitions, args.kafka)
    result["load_after"] = os.getloadavg()
    print(json.dumps(result["latency"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
