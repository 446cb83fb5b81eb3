"""Predictor latency and throughput over loopback HTTP (the real `fraud-scorer` model server).

Starts `python -m serving.cli predictor` on a free port with models of the default
architecture (untrained weights: timing does not depend on their values; pass
``--sequence-model-uri``/``--autoencoder-model-uri`` to time registered models), then measures

* single transaction per V2 request (binary and JSON), sequential keep-alive requests with a
  minimal stdlib client (http.client) so the client adds as little as possible: p50/p90/p99;
* many concurrent single-transaction clients: throughput and how many sequences the
  micro-batcher merged into each forward pass;
* batch throughput (sequences/s) at the given batch sizes, JSON vs binary tensor encoding;
* the same single transaction and batches over the Open Inference Protocol's gRPC service
  (KServe's, `ENABLE_GRPC=true`), raw tensor contents, one channel, sequential calls.

    python benchmarks/bench_predictor.py --out predictor.json
    python benchmarks/bench_predictor.py --smoke     # tiny sizes, CPU: checks the script runs
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fraudops import protocol
from fraudops.features import DEFAULT_SEQ_LEN, build_spec
from fraudops.testing import free_port

#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
#: The CPU, so that it runs (and is tested) the same on a machine without a GPU.
SMOKE = {"single_requests": 20, "batch_requests": 2, "batch_sizes": [16], "clients": 2,
         "device": "cpu"}


def write_default_models(directory: Path, seq_len: int) -> tuple[Path, Path]:
    """Default-architecture models with fitted normalisation (weights untrained)."""
    from fraudops.models.untrained import write_untrained_pair

    spec = build_spec()
    rows = np.random.default_rng(0).normal(size=(1024, spec.dim)).astype(np.float32)
    return write_untrained_pair(directory, spec, rows, seq_len, calibrate_fpr=0.01)


def start_predictor(sequence: str, autoencoder: str, port: int, threads: int,
                    log: Path, device: str = "auto", precision: str = "float32",
                    backend: str = "auto", grpc_port: int | None = None) -> subprocess.Popen:
    grpc = ({"FRAUDOPS_PREDICTOR__ENABLE_GRPC": "true",
             "FRAUDOPS_PREDICTOR__GRPC_PORT": str(grpc_port)} if grpc_port else {})
    env = {**os.environ, **grpc, "FRAUDOPS_HOME": str(log.parent / "home"),
           "FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI": sequence,
           "FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI": autoencoder,
           "FRAUDOPS_PREDICTOR__HTTP_PORT": str(port),
           "FRAUDOPS_PREDICTOR__POLL_INTERVAL_S": "0",
           "FRAUDOPS_PREDICTOR__TORCH_THREADS": str(threads),
           "FRAUDOPS_PREDICTOR__DEVICE": device, "FRAUDOPS_PREDICTOR__PRECISION": precision,
           "FRAUDOPS_PREDICTOR__BACKEND": backend}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "serving.cli", "predictor"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"predictor exited:\n{log.read_text()[-3000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", f"/v2/models/{protocol.MODEL_NAME}/ready")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise TimeoutError("predictor not ready")


def _batch(batch: int, seq_len: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(batch)
    return (rng.normal(size=(batch, seq_len, dim)).astype(np.float32),
            np.ones((batch, seq_len), dtype=bool))


def time_requests(port: int, body: bytes, headers: dict[str, str], count: int,
                  warmup: int) -> np.ndarray:
    """Seconds per request (sequential, one keep-alive connection); checks every answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    path = protocol.infer_path()
    timings = []
    for i in range(warmup + count):
        start = time.perf_counter()
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        protocol.decode_response(payload, dict(response.getheaders()))
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        if i >= warmup:
            timings.append(elapsed)
    connection.close()
    return np.asarray(timings)


def grpc_request(x: np.ndarray, mask: np.ndarray):
    """A V2 gRPC ModelInferRequest carrying `x` and `mask` as raw contents."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    tensor = pb.ModelInferRequest.InferInputTensor
    return pb.ModelInferRequest(
        model_name=protocol.MODEL_NAME,
        inputs=[tensor(name=protocol.INPUT_SEQUENCES, datatype="FP32", shape=list(x.shape)),
                tensor(name=protocol.INPUT_MASK, datatype="BOOL", shape=list(mask.shape))],
        raw_input_contents=[x.tobytes(), mask.tobytes()])


def time_grpc(grpc_port: int, request, count: int, warmup: int) -> np.ndarray:
    """Seconds per gRPC ModelInfer call (sequential, one channel); checks every answer."""
    import grpc
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    rows = request.inputs[0].shape[0]
    timings = []
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        for i in range(warmup + count):
            start = time.perf_counter()
            answer = stub.ModelInfer(request, timeout=120)
            elapsed = time.perf_counter() - start
            if len(answer.raw_output_contents[0]) != 4 * rows:
                raise RuntimeError(f"gRPC answer for {rows} rows: {answer.outputs!r:.300}")
            if i >= warmup:
                timings.append(elapsed)
    return np.asarray(timings)


def measure_grpc(pid: int, grpc_port: int, request, count: int, warmup: int, batch: int
                 ) -> dict[str, float]:
    time_grpc(grpc_port, request, warmup, 0)
    before = cpu_seconds(pid)
    timings = time_grpc(grpc_port, request, count, 0)
    cpu_ms = 1000 * (cpu_seconds(pid) - before) / count
    return _summary(timings, batch) | {"server_cpu_ms_per_request": round(cpu_ms, 3)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(timings: np.ndarray, batch: int) -> dict[str, float]:
    ms = timings * 1000
    return {"requests": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3),
            "sequences_per_s": round(batch * len(ms) / float(timings.sum()), 1)}


def measure(pid: int, port: int, body: bytes, headers: dict[str, str], count: int,
            warmup: int, batch: int) -> dict[str, float]:
    """Timings plus the server's CPU time per request (independent of machine load)."""
    time_requests(port, body, headers, warmup, warmup=0)
    before = cpu_seconds(pid)
    timings = time_requests(port, body, headers, count, warmup=0)
    cpu_ms = 1000 * (cpu_seconds(pid) - before) / count
    return _summary(timings, batch) | {"server_cpu_ms_per_request": round(cpu_ms, 3)}


def concurrent_singles(port: int, body: bytes, headers: dict[str, str], clients: int,
                       per_client: int) -> dict[str, float]:
    """Many clients sending one transaction each, back to back: shows the micro-batcher."""
    before = _forward_passes(port)
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        parts = list(pool.map(lambda _: time_requests(port, body, headers, per_client, 5),
                              range(clients)))
        wall = time.perf_counter() - started
    timings = np.concatenate(parts)
    passes, rows = (a - b for a, b in zip(_forward_passes(port), before, strict=True))
    return _summary(timings, 1) | {"clients": clients,
                                   "sequences_per_s": round(len(timings) / wall, 1),
                                   "mean_sequences_per_forward_pass": round(rows / passes, 2)}


def _forward_passes(port: int) -> tuple[float, float]:
    """(count, sum) of the predictor's forward-batch-size histogram."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    values = {}
    for line in text.splitlines():
        for suffix in ("count", "sum"):
            if line.startswith(f"fraud_predictor_forward_batch_size_{suffix} "):
                values[suffix] = float(line.split()[-1])
    return values["count"], values["sum"]


def run(args: argparse.Namespace, pid: int, port: int, grpc_port: int) -> dict:
    dim = build_spec().dim
    results: dict = {"single": {}, "batch": {}, "grpc": {}}
    for binary in (True, False):
        body, headers = protocol.encode_request(*_batch(1, args.seq_len, dim), binary=binary)
        results["single"]["binary" if binary else "json"] = measure(
            pid, port, body, headers, args.single_requests, 200, 1)
    body, headers = protocol.encode_request(*_batch(1, args.seq_len, dim), binary=True)
    results["concurrent_single_binary"] = concurrent_singles(
        port, body, headers, args.clients, max(50, args.single_requests // args.clients))
    for size in args.batch_sizes:
        for binary in (True, False):
            body, headers = protocol.encode_request(*_batch(size, args.seq_len, dim),
                                                    binary=binary)
            summary = measure(pid, port, body, headers, args.batch_requests, 3, size)
            results["batch"][f"{size}_{'binary' if binary else 'json'}"] = summary | {
                "request_bytes": len(body)}
    for size, count, warmup in ((1, args.single_requests, 200),
                                *((size, args.batch_requests, 3) for size in args.batch_sizes)):
        request = grpc_request(*_batch(size, args.seq_len, dim))
        results["grpc"]["single" if size == 1 else str(size)] = measure_grpc(
            pid, grpc_port, request, count, warmup, size)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN)
    parser.add_argument("--single-requests", type=int, default=2000)
    parser.add_argument("--batch-requests", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--clients", type=int, default=16,
                        help="concurrent single-transaction clients (micro-batching figure)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="the predictor's torch threads (its default: 1; 0 = torch default)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--precision", default="float32", choices=["float64", "float32"],
                        help="the predictor's forward-pass precision")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime"],
                        help="what runs the forward passes (onnxruntime: float32, CPU)")
    parser.add_argument("--sequence-model-uri")
    parser.add_argument("--autoencoder-model-uri")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on the CPU, to check the script still runs (overrides "
                             "--single-requests, --batch-requests, --batch-sizes, --clients, "
                             "--device)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes on the CPU, the figures are not measurements",
              file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-predictor-") as tmp:
        work = Path(tmp)
        if args.sequence_model_uri and args.autoencoder_model_uri:
            sequence, autoencoder = args.sequence_model_uri, args.autoencoder_model_uri
        else:
            sequence, autoencoder = map(str, write_default_models(work, args.seq_len))
        port, grpc_port = free_port(), free_port()
        process = start_predictor(sequence, autoencoder, port, args.torch_threads,
                                  work / "predictor.log", args.device, args.precision,
                                  args.backend, grpc_port)
        try:
            results = run(args, process.pid, port, grpc_port)
        finally:
            process.terminate()
            process.wait(timeout=30)
    results["config"] = {"seq_len": args.seq_len, "features": build_spec().dim,
                         "torch_threads": args.torch_threads, "device": args.device,
                         "precision": args.precision, "backend": args.backend,
                         "cpus": os.cpu_count(),
                         "load_avg": os.getloadavg(), "machine": platform.processor() or
                         platform.machine(),
                         "client": "http.client keep-alive, sequential; gRPC: one channel"}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
