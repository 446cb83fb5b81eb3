"""Gateway memory-exhaustion probe (issue 20): large bodies without an API key, all at once.

Starts `python -m serving.cli gateway` on loopback (its Kafka address leads nowhere: nothing
here reaches Kafka), then, as an attacker would, sends `--concurrency` JSON bodies of `--mb` MB
at the same time without an API key, over raw sockets, to `/v1/feedback`, `/v1/transactions`
and `/v1/score` in turn: once declaring `Content-Length` (what ``curl -d @file`` sends), once
chunked (no length: the gateway learns the size only by reading). Each sender streams its body
until the gateway answers or closes the connection. Reported per round: every answer's status,
size and latency (first byte sent to status line received), the gateway's RSS before, at its
peak (sampled every 5 ms) and after, and the latency of `/healthz` while the bodies stream.

Targets (issue 20): RSS growth under 20 MB; every answer 401 or 413 within 100 ms. Before the
fix one 21 MB body took the gateway from 426 to 676 MB and four to 1,041 MB.

    python benchmarks/bench_gateway_probe.py --out probe.json     # 4 x 21 MB
    python benchmarks/bench_gateway_probe.py --smoke               # tiny: checks the script runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import httpx
import psutil

from fraudops.store import Store
from fraudops.testing import free_port

API_KEY = "probe:ingest+analyst:probe-key-0123456789"
PATHS = ("/v1/feedback", "/v1/transactions", "/v1/score")
#: What `--smoke` runs: small sizes, to check the script still works end to end (not a figure).
SMOKE = {"concurrency": 2, "mb": 2.0}
#: Longest wait for one answer (the unprotected gateway took 10 s for a 21 MB body).
ANSWER_TIMEOUT_S = 60.0
CHUNK = 64 * 1024


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB."""
    return psutil.Process(pid).memory_info().rss / (1024 * 1024)


class RssSampler:
    """Samples a process's RSS every `interval_s` in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int, interval_s: float = 0.005) -> None:
        self.pid, self.interval_s, self.peak = pid, interval_s, rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(self.interval_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def start_gateway(work: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "FRAUDOPS_HOME": str(work / "home"),
           "FRAUDOPS_GATEWAY__API_KEYS": API_KEY, "FRAUDOPS_GATEWAY__PORT": str(port),
           "FRAUDOPS_DATABASE__URL": f"sqlite:///{work / 'store.db'}",
           "FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
           "FRAUDOPS_LOG_LEVEL": "WARNING"}
    Store.from_url(env["FRAUDOPS_DATABASE__URL"]).close()  # `fraudops db upgrade`
    log = work / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "serving.cli", "gateway"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise TimeoutError("gateway did not answer /healthz within 60 s")


def _block() -> bytes:
    return b"A" * CHUNK


async def _send_body(writer: asyncio.StreamWriter, size: int, chunked: bool,
                     sent: list[int]) -> None:
    """Stream a JSON body of `size` bytes (``{"note": "AAAA..."}``), counting in `sent[0]`
    the bytes the socket accepted."""
    head, tail = b'{"note": "', b'"}'
    block = _block()
    pieces = [head]
    remaining = size - len(head) - len(tail)
    try:
        while remaining > 0 or pieces:
            if not pieces:
                take = min(remaining, CHUNK)
                remaining -= take
                pieces = [block[:take]] + ([tail] if remaining == 0 else [])
            piece = b"".join(pieces)
            pieces = []
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
            sent[0] += len(piece)
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, OSError):  # the gateway answered and closed: stop, as curl does
        pass


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, float, int]:
    """(status, seconds to the status line, answer bytes) of one HTTP/1.1 answer."""
    start = time.perf_counter()
    status_line = await reader.readline()
    latency = time.perf_counter() - start
    if not status_line:
        return 0, latency, 0  # closed without an answer
    length, size = 0, len(status_line)
    while (line := await reader.readline()) not in (b"\r\n", b""):
        size += len(line)
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.read(length) if length else b""
    return int(status_line.split()[1]), latency, size + len(body)


async def probe_one(port: int, path: str, size: int, chunked: bool) -> dict:
    """One unauthenticated POST of `size` bytes; what the gateway answered and when."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"%s\r\n\r\n" % (path.encode(), framing))
    start, sent = time.perf_counter(), [0]
    sender = asyncio.create_task(_send_body(writer, size, chunked, sent))
    try:
        status, _, answer_bytes = await asyncio.wait_for(_read_answer(reader), ANSWER_TIMEOUT_S)
        latency = time.perf_counter() - start
    except (TimeoutError, ConnectionError):
        status, latency, answer_bytes = 0, time.perf_counter() - start, 0
    sender.cancel()  # the answer came: stop sending, as curl does
    await asyncio.gather(sender, return_exceptions=True)
    writer.close()
    return {"path": path, "status": status, "latency_ms": round(latency * 1000, 1),
            "answer_bytes": answer_bytes, "body_bytes_sent": sent[0]}


async def _healthz_while(port: int, busy: asyncio.Task) -> list[float]:
    """/healthz latencies (seconds), one request after another, until `busy` is done."""
    timings = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        while not busy.done():
            start = time.perf_counter()
            await client.get("/healthz")
            timings.append(time.perf_counter() - start)
            await asyncio.sleep(0.01)
    return timings


async def _round(port: int, concurrency: int, size: int, chunked: bool) -> tuple[list, list]:
    senders = asyncio.ensure_future(asyncio.gather(*(
        probe_one(port, PATHS[i % len(PATHS)], size, chunked) for i in range(concurrency))))
    health = await _healthz_while(port, senders)
    return await senders, health


def probe_round(pid: int, port: int, concurrency: int, size: int, chunked: bool) -> dict:
    """One round of `concurrency` bodies at once; answers, RSS and /healthz latency."""
    before = rss_mb(pid)
    with RssSampler(pid) as sampler:
        answers, health = asyncio.run(_round(port, concurrency, size, chunked))
    time.sleep(0.2)  # let the gateway settle before the "after" figure
    after = rss_mb(pid)
    peak = max(sampler.peak, after)
    return {"answers": answers, "statuses": sorted({a["status"] for a in answers}),
            "max_latency_ms": max(a["latency_ms"] for a in answers),
            "max_answer_bytes": max(a["answer_bytes"] for a in answers),
            "rss_before_mb": round(before, 1), "rss_peak_mb": round(peak, 1),
            "rss_after_mb": round(after, 1), "rss_growth_mb": round(peak - before, 1),
            "healthz_requests": len(health),
            "healthz_max_ms": round(max(health, default=0.0) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=4, help="bodies sent at once")
    parser.add_argument("--mb", type=float, default=21.0, help="size of each body in MB")
    parser.add_argument("--out", type=Path, help="write the report (JSON) here")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes, to check the script still runs "
                             "(overrides --concurrency, --mb)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: small sizes, the figures are not measurements", file=sys.stderr)
    size = int(args.mb * 1024 * 1024)
    report: dict = {"config": {"concurrency": args.concurrency, "body_bytes": size,
                               "paths": list(PATHS), "cpus": os.cpu_count(),
                               "load_avg": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-probe-") as tmp:
        gateway, port = start_gateway(Path(tmp))
        try:
            probe_round(gateway.pid, port, args.concurrency, 1024 * 1024, False)  # warm-up
            for name, chunked in (("content_length", False), ("chunked", True)):
                report[name] = probe_round(gateway.pid, port, args.concurrency, size, chunked)
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
    rounds = [report["content_length"], report["chunked"]]
    report["targets"] = {
        "rss_growth_below_20_mb": all(r["rss_growth_mb"] < 20 for r in rounds),
        "answers_401_or_413": all(set(r["statuses"]) <= {401, 413} for r in rounds),
        "answers_within_100_ms": all(r["max_latency_ms"] < 100 for r in rounds)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
