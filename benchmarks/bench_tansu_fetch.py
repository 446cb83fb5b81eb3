"""tansu's cost per fetch grows with the batches a partition holds: what the demo's broker spends
on a steady stream, by how many records each stored batch holds.

For each batch size (records per produce batch) a fresh topic is filled with `--stored` records
in batches of that size, then a steady stream (`--rate` records/s, one-record batches, keyed
over the topic's partitions) is produced and tailed by one consumer group member that commits
after each poll, as the platform's consumer does. Reported per case: the broker's CPU (cores)
while the stream runs, the share of the stream the consumer received, and its produce-to-receive
latency. The fill itself is not consumed (the consumer starts at the end of the topic).

Measured on a 2-core machine (tansu 0.6.0, memory engine, 200 records/s, fetch wait 5 ms):
20,000 records stored in one-record batches (the demo's replay lingering 20 ms at 200 tx/s)
cost the broker 1.00 core while the stream ran (p99 122 ms); in batches of 7 (lingering 100 ms),
0.41 core (p99 12.5 ms). Earlier probes: 0.06 core with nothing stored, 0.75 at 20,000
one-record batches and a saturated broker at 40,000, when the consumer received almost nothing
(the demo's stall in CI). A topic the consumer does not read costs next to nothing.

    python benchmarks/bench_tansu_fetch.py --stored 20000 --batch-records 1 7 --out tansu.json
    python benchmarks/bench_tansu_fetch.py --smoke      # tiny sizes: checks the script still runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from confluent_kafka import Consumer, Producer

from local.kafka import Flavour, make_broker

PAYLOAD = b"x" * 600  # about a serialised transaction


def fill(bootstrap: str, topic: str, records: int, batch_records: int) -> None:
    """`records` records in produce batches of `batch_records` each."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                         "batch.num.messages": batch_records})
    for i in range(records):
        producer.produce(topic, PAYLOAD, str(i).encode())
        producer.poll(0)
    producer.flush(60)


def steady(bootstrap: str, topic: str, broker: psutil.Process, rate: float, seconds: float,
           fetch_wait_ms: int) -> dict:
    """Produce `rate` records/s for `seconds` while one member tails and commits."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "latest", "enable.auto.commit": False,
                         "fetch.wait.max.ms": fetch_wait_ms, "session.timeout.ms": 6000,
                         "heartbeat.interval.ms": 2000})
    consumer.subscribe([topic])
    while not consumer.assignment():  # joined, positioned at the end
        consumer.poll(0.1)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                         "batch.num.messages": 1})
    latencies: list[float] = []
    sent = received = 0
    before, start = broker.cpu_times(), time.monotonic()
    while time.monotonic() - start < seconds:
        while sent < (time.monotonic() - start) * rate:
            producer.produce(topic, PAYLOAD, b"stream-%d" % sent,
                             timestamp=int(time.time() * 1000))
            sent += 1
        producer.poll(0)
        messages = consumer.consume(500, 0.005)
        now_ms = time.time() * 1000
        # Only the stream's records: tansu answers ListOffsets(latest) with the start of the
        # last batch, so the member may begin with the fill's last batch.
        streamed = [m for m in messages
                    if m.error() is None and m.key().startswith(b"stream-")]
        latencies += [now_ms - m.timestamp()[1] for m in streamed]
        received += len(streamed)
        if messages:
            consumer.commit(asynchronous=False)
    after = broker.cpu_times()
    producer.flush(10)
    consumer.close()
    cores = (after.user + after.system - before.user - before.system) / seconds
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (float("nan"),) * 2
    return {"broker_cores": round(cores, 3), "sent": sent, "received": received,
            "received_share": round(received / max(sent, 1), 3),
            "latency_ms_p50": round(float(p50), 1), "latency_ms_p99": round(float(p99), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=20_000, help="records filled per case")
    parser.add_argument("--batch-records", type=int, nargs="+", default=[1, 7])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--fetch-wait-ms", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
        args.stored, args.seconds, args.batch_records = 500, 1.5, [1, 5]

    with tempfile.TemporaryDirectory() as work:
        broker = make_broker(Flavour.TANSU, Path(work)).start()
        try:
            process = psutil.Process(broker.process.pid)
            cases = []
            for batch_records in args.batch_records:
                topic = broker.unique_topic("fetch")
                fill(broker.bootstrap, topic, args.stored, batch_records)
                figures = steady(broker.bootstrap, topic, process, args.rate, args.seconds,
                                 args.fetch_wait_ms)
                cases.append({"batch_records": batch_records,
                              "stored_batches": args.stored // batch_records, **figures})
                print(f"{args.stored:,} stored in batches of {batch_records}: broker "
                      f"{figures['broker_cores']:.2f} cores at {args.rate:g}/s, received "
                      f"{figures['received_share']:.0%}, latency p50 "
                      f"{figures['latency_ms_p50']} ms p99 {figures['latency_ms_p99']} ms",
                      flush=True)
        finally:
            broker.stop()
    report = {"stored": args.stored, "rate": args.rate, "seconds": args.seconds,
              "fetch_wait_ms": args.fetch_wait_ms, "cases": cases,
              "machine": {"cpus": os.cpu_count(), "load_1m": os.getloadavg()[0],
                          "python": platform.python_version()}}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
