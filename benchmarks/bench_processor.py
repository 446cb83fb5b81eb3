"""The consumer's steps in process, no broker and no predictor: CPU per transaction and per batch.

Drives `consumers.processor.StreamProcessor` (ingest, take, decide, persist to a SQLite store)
over the stream benchmark's transactions on three partitions, in batches of each
``--batch-sizes``, and reports each step's thread CPU per transaction and per batch. The
predictor is a numpy function (the HTTP call is what `bench_stream.py` and
`bench_predictor.py` measure), so the figures are the consumer's own Python. With
``--stub-features`` a second pass replaces the feature state's update with constant arrays: what
the consumer would cost if computing the features were free (what no feature engine can beat;
the decisions it makes are meaningless). ``--engines native python`` runs the feature state on
each engine of `fraudops.features.engine` in turn (default: the one installed).

    python benchmarks/bench_processor.py --transactions 50000 --batch-sizes 10 500 --stub-features
    python benchmarks/bench_processor.py --batch-sizes 500 --engines native python native python
    python benchmarks/bench_processor.py --smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from consumers.messages import Incoming
from consumers.processor import ProcessorConfig, StreamProcessor
from fraudops.features import OnlineFeatureState, build_spec
from fraudops.features.engine import ENGINES, PYTHON, table_classes
from fraudops.protocol import ScoreBatch
from fraudops.store import Store

SMOKE = {"transactions": 600, "batch_sizes": [10, 100]}
STEPS = ("ingest", "take", "decide", "persist")
PARTITIONS = 3


def score(x: np.ndarray, mask: np.ndarray) -> ScoreBatch:
    """A predictor's answer from the scored row's first feature (cheap, deterministic)."""
    p = 1.0 / (1.0 + np.exp(-x[:, -1, 0].astype(np.float64) + 7.0))
    return ScoreBatch(fraud_probability=p.astype(np.float32),
                      anomaly_score=np.zeros(len(p), dtype=np.float32),
                      decision=["review" if v > 0.5 else "approve" for v in p],
                      reason_codes=[()] * len(p), model_version="bench/1")


def records(docs: list[dict]) -> list[Incoming]:
    """The documents as consumed records, each account on one of three partitions."""
    offsets = [0] * PARTITIONS
    out = []
    for doc in docs:
        key = doc["account_id"].encode()
        partition = zlib.crc32(key) % PARTITIONS
        out.append(Incoming("transactions", partition, offsets[partition], key,
                            json.dumps(doc).encode()))
        offsets[partition] += 1
    return out


@contextmanager
def features_stubbed(dim: int, seq_len: int):
    """`OnlineFeatureState.update` returning constant arrays for as long as the block runs."""
    features = np.zeros(dim, dtype=np.float32)
    sequence, mask = np.zeros((seq_len, dim), dtype=np.float32), np.ones(seq_len, dtype=bool)
    original = OnlineFeatureState.update
    OnlineFeatureState.update = lambda self, tx, given=None: (features, sequence.copy(),
                                                             mask.copy())
    try:
        yield
    finally:
        OnlineFeatureState.update = original


def run(stream: list[Incoming], batch_size: int, workdir: Path, engine: str | None = None
        ) -> dict:
    """Every step's thread CPU over the stream in batches of `batch_size`, the feature state
    on `engine` (None: the default)."""
    spec = build_spec()
    store = Store.from_url(f"sqlite:///{workdir / f'store-{batch_size}-{time.time_ns()}.db'}")
    processor = StreamProcessor(ProcessorConfig(group_id="bench", snapshot_interval_s=1e9),
                                store=store, score=score,
                                new_state=lambda: OnlineFeatureState(spec, engine=engine))
    processor.assign(range(PARTITIONS))
    cpu = dict.fromkeys(STEPS, 0.0)
    batches = 0
    try:
        for start in range(0, len(stream), batch_size):
            clock = time.thread_time()
            processor.ingest(stream[start:start + batch_size])
            cpu["ingest"] += time.thread_time() - clock
            clock = time.thread_time()
            batch = processor.take()
            cpu["take"] += time.thread_time() - clock
            clock = time.thread_time()
            outcome = processor.decide(batch)
            cpu["decide"] += time.thread_time() - clock
            clock = time.thread_time()
            processor.persist(outcome)
            cpu["persist"] += time.thread_time() - clock
            batches += 1
        decided = len(store.decided([json.loads(r.value)["transaction_id"] for r in stream]))
    finally:
        store.close()
    return {"batch_size": batch_size, "batches": batches, "decided": decided,
            "cpu_us_per_tx": {s: round(1e6 * cpu[s] / len(stream), 1) for s in STEPS},
            "cpu_ms_per_batch": {s: round(1e3 * cpu[s] / batches, 3) for s in STEPS},
            "total_cpu_us_per_tx": round(1e6 * sum(cpu.values()) / len(stream), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 500])
    parser.add_argument("--stub-features", action="store_true",
                        help="also run with the feature update replaced by constant arrays")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=["auto"],
                        help="the feature engine of each run, in this order (repeat one to "
                             "alternate: the machine's speed drifts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_stream import transaction_docs  # the stream benchmark's transactions

    stream = records(transaction_docs(args.transactions, args.seed))
    spec = build_spec()
    result: dict = {"transactions": len(stream), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-processor-") as tmp:
        for size in args.batch_sizes:
            for engine in args.engines:
                used = "python" if table_classes(engine) == PYTHON else "native"
                result["runs"].append({"features": "computed", "engine": used,
                                       **run(stream, size, Path(tmp), engine)})
            if args.stub_features:
                with features_stubbed(spec.dim, OnlineFeatureState(spec).seq_len):
                    result["runs"].append({"features": "stubbed",
                                           **run(stream, size, Path(tmp))})
    for r in result["runs"]:
        engine = r.get("engine", "-")
        print(f"batches of {r['batch_size']:>5}, features {r['features']:<8} ({engine}): "
              f"{r['total_cpu_us_per_tx']:>6} us/tx; per tx {r['cpu_us_per_tx']}; "
              f"ms per batch {r['cpu_ms_per_batch']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
