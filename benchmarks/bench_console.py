"""The analyst console's queue page with 100k alerts in PostgreSQL (target: < 300 ms).

Fills a fresh PostgreSQL database with `--alerts` alerts through the store (`write_batch`,
the consumer's own bulk path), starts the real gateway (`python -m serving.cli gateway`, one
uvicorn process), logs in through the console's form like a browser, then times the queue
page over HTTP, one request at a time, in five views: the first page, a filtered page
(decision, amount and time range), a narrow time window, the alerts on which a rule fired
(1 in 20), and a deep page (the link the queue gives 90% of the way down). The client shares
the machine with the gateway and the database.

    python benchmarks/bench_console.py --out console.json       # 100k alerts, PostgreSQL
    python benchmarks/bench_console.py --database-url postgresql+psycopg://u@host/db
    python benchmarks/bench_console.py --smoke                  # tiny, SQLite: still runs?

Without `--database-url` a database is created (and dropped afterwards) on the PostgreSQL
server named by FRAUDOPS_TEST_PG_HOST/PORT/USER (default 127.0.0.1:5432, postgres), the way
the tests do it (tools/install_postgres.sh sets one up).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from fraudops.store import BatchWrite, DecisionRecord, Store
from fraudops.store.queue import QueueCursor, QueueFilter, alert_queue
from fraudops.testing import free_port, wait_for_http

KEY = "bench-analyst-key-0123456789"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
TARGET_MS = 300.0
SMOKE = {"alerts": 2_000, "requests": 5}
#: The rules fired on the alerts, in turn: most alerts none, 1 in 20 `velocity_burst`.
RULES = ("",) * 15 + ("big_amount",) * 3 + ("velocity_burst,big_amount", "deny_accounts")


def fill(store: Store, alerts: int, seed: int = 1, batch: int = 5_000) -> float:
    """`alerts` alerts (80% review, 20% block) spread over 30 days; seconds it took."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for first in range(0, alerts, batch):
        records = []
        for i in range(first, min(alerts, first + batch)):
            moment = T0 + SPAN * float(rng.random())
            block = rng.random() < 0.2
            tx = {"transaction_id": f"tx-{i}", "account_id": f"acc-{i % 20_000}",
                  "timestamp": moment.isoformat(), "amount": round(float(rng.lognormal(5, 1.5)), 2),
                  "merchant_id": f"m-{i % 997}", "channel": "online"}
            records.append(DecisionRecord(
                tx["transaction_id"], tx["account_id"], moment, tx["amount"],
                float(rng.uniform(0.9, 1.0) if block else rng.uniform(0.5, 0.9)),
                float(rng.random()), "block" if block else "review", json.dumps(tx),
                reason_codes="amount_log,merchant_new", model_version="seq:1+ae:1",
                rules_fired=RULES[i % len(RULES)], rule_set_version="bench.1"))
        store.write_batch(BatchWrite(decisions=records))
    return time.perf_counter() - start


def deep_link(store: Store, alerts: int) -> str:
    """The queue's "next page" link of the page that ends 90% of the way down."""
    page = alert_queue(store, QueueFilter(), int(alerts * 0.9))  # one query, not 1,800 pages
    cursor: QueueCursor = page.next_cursor
    return f"after={cursor.fraud_probability!r}:{cursor.transaction_id}"


def login(client: httpx.Client) -> None:
    form = client.get("/console/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = client.post("/console/login", data={"api_key": KEY, "csrf_token": token})
    if answer.status_code != 303:
        raise RuntimeError(f"login failed: {answer.status_code} {answer.text[:300]}")


def time_view(client: httpx.Client, query: str, requests: int) -> dict:
    """Latency of `requests` sequential loads of one queue view (after 3 warm-up loads)."""
    rows = 0
    for _ in range(3):
        client.get(f"/console/queue?{query}")
    latencies = []
    for _ in range(requests):
        start = time.perf_counter()
        answer = client.get(f"/console/queue?{query}")
        latencies.append((time.perf_counter() - start) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{query}: {answer.status_code} {answer.text[:300]}")
        rows = answer.text.count("<tr data-transaction=")
    p50, p95 = np.percentile(latencies, [50, 95])
    return {"query": query, "requests": requests, "rows": rows, "p50_ms": round(float(p50), 1),
            "p95_ms": round(float(p95), 1), "max_ms": round(max(latencies), 1)}


def start_gateway(work: Path, database_url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FRAUDOPS_HOME": str(work / "home"),
           "FRAUDOPS_GATEWAY__API_KEYS": f"bench:analyst:{KEY}",
           "FRAUDOPS_GATEWAY__PORT": str(port), "FRAUDOPS_DATABASE__URL": database_url,
           # The load client is httpx over plain HTTP on loopback: it would not send a
           # Secure cookie back (browsers do, to localhost).
           "FRAUDOPS_GATEWAY__CONSOLE_COOKIE_SECURE": "false"}
    log = work / "gateway.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "serving.cli", "gateway"], env=env,
                                   stdout=handle, stderr=subprocess.STDOUT)
    wait_for_http(f"http://127.0.0.1:{port}/healthz", 60, process=process, log=log)
    return process, f"http://127.0.0.1:{port}"


def views(store: Store, alerts: int) -> dict[str, str]:
    middle = T0 + SPAN / 2
    return {"first_page": "",
            "filtered": (f"decision=block&min_amount=100&max_amount=5000"
                         f"&since={T0 + SPAN / 3:%Y-%m-%dT%H:%M}"
                         f"&until={T0 + 2 * SPAN / 3:%Y-%m-%dT%H:%M}"),
            "narrow_window": (f"since={middle:%Y-%m-%dT%H:%M}"
                              f"&until={middle + timedelta(hours=6):%Y-%m-%dT%H:%M}"),
            "by_rule": "rule=velocity_burst",
            "deep_page": deep_link(store, alerts)}


def run(database_url: str, alerts: int, requests: int, work: Path) -> dict:
    store = Store.from_url(database_url)
    try:
        fill_s = fill(store, alerts)
        queries = views(store, alerts)
        process, url = start_gateway(work, database_url)
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                login(client)
                results = {name: time_view(client, query, requests)
                           for name, query in queries.items()}
        finally:
            process.terminate()
            process.wait(15)
    finally:
        store.close()
    worst = max(r["p95_ms"] for r in results.values())
    return {"config": {"alerts": alerts, "requests_per_view": requests,
                       "database": database_url.split(":", 1)[0], "page_size": 50,
                       "load_average_at_end": os.getloadavg(), "cpus": os.cpu_count()},
            "fill_seconds": round(fill_s, 1), "views": results,
            "target": {"p95_below_ms": TARGET_MS, "worst_p95_ms": worst,
                       "met": worst < TARGET_MS}}


def _psql(host: str, port: str, user: str, sql: str) -> None:
    subprocess.run(["psql", "-h", host, "-p", port, "-U", user, "-d", "postgres", "-qc", sql],
                   check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50, help="timed loads per view")
    parser.add_argument("--database-url", help="an empty database (default: a fresh one on "
                                               "the local PostgreSQL server)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on SQLite: checks "
                                                             "the script runs (no figure)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
        args.alerts, args.requests = SMOKE["alerts"], SMOKE["requests"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url, dropped = args.database_url, None
        if url is None and args.smoke:
            url = f"sqlite:///{work / 'store.db'}"
        elif url is None:
            pg = (os.environ.get("FRAUDOPS_TEST_PG_HOST", "127.0.0.1"),
                  os.environ.get("FRAUDOPS_TEST_PG_PORT", "5432"),
                  os.environ.get("FRAUDOPS_TEST_PG_USER", "postgres"))
            dropped = f"fraudops_bench_{uuid.uuid4().hex[:8]}"
            _psql(*pg, f"CREATE DATABASE {dropped}")
            url = f"postgresql+psycopg://{pg[2]}@{pg[0]}:{pg[1]}/{dropped}"
        try:
            result = run(url, args.alerts, args.requests, work)
        finally:
            if dropped:
                _psql(*pg, f"DROP DATABASE IF EXISTS {dropped}")
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
