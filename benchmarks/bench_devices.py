"""Model fitting and scoring per device: the CPU against CUDA where a GPU is present.

    python benchmarks/bench_devices.py --rows 200000 --out devices.json
    python benchmarks/bench_devices.py --devices cpu --threads 2     # a machine without a GPU
    python benchmarks/bench_devices.py --smoke     # tiny sizes, CPU only: checks the script runs

Generates data with the default generator and featurises it once, then per device: trains both
models with the default configuration (what `fraudops train` runs), fits the policy, evaluates on
the time-held-out test period, and times in-process scoring (`Scorer.score`) at several batch
sizes. No MLflow here: `bench_training.py` times the whole tracked flow. Prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
#: The CPU only, so that it runs (and is tested) the same on a machine without a GPU.
SMOKE = {"rows": 3_000, "devices": ["cpu"], "batch_sizes": [1, 64], "repeats": 3}
#: ... and one epoch per model (the default configuration otherwise).
SMOKE_TRAINING = {"sequence": {"epochs": 1}, "autoencoder": {"epochs": 1}}


def fit_on(device: str, data, threads: int, overrides: dict) -> dict:
    from fraudops.training.config import TrainingConfig
    from fraudops.training.evaluation import evaluate
    from fraudops.training.workflow import (
        assemble_scorer,
        fit_autoencoder,
        fit_sequence,
        holdout_rows,
    )

    config = TrainingConfig(device=device, threads=threads, **overrides)
    seconds = {}
    started = time.perf_counter()
    sequence = fit_sequence(data, config)
    seconds["sequence"] = time.perf_counter() - started
    started = time.perf_counter()
    autoencoder = fit_autoencoder(data, config)
    seconds["autoencoder"] = time.perf_counter() - started
    started = time.perf_counter()
    scorer = assemble_scorer(sequence.bundle, autoencoder.bundle, data, config)
    seconds["policy"] = time.perf_counter() - started
    metrics = evaluate(scorer, data, holdout_rows(data, config)).metrics
    return {"seconds": seconds, "epochs": {"sequence": sequence.summary["epochs_run"],
                                           "autoencoder": autoencoder.summary["epochs_run"]},
            "test": {key: metrics[key] for key in ("sequence.auprc",
                                                   "sequence.recall_at_1pct_fpr",
                                                   "autoencoder.auprc")},
            "scorer": scorer}


def scoring_rate(scorer, data, batch: int, repeats: int) -> dict:
    """Sequences per second and per-call latency of `Scorer.score` at one batch size."""
    x, mask = data.sequences(np.arange(min(batch, len(data))))
    for _ in range(3):  # warm-up: kernels, allocator, cuDNN plans
        scorer.score(x, mask)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scorer.score(x, mask)  # returns numpy: includes the copies to and from the device
        times.append(time.perf_counter() - started)
    times_ms = np.array(times) * 1000
    return {"batch": len(x), "p50_ms": float(np.median(times_ms)),
            "p99_ms": float(np.percentile(times_ms, 99)),
            "sequences_per_s": len(x) / float(np.median(times))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--devices", nargs="+", default=None,
                        help="default: cpu, plus cuda when available")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = all)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 512, 4096])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one epoch per model, the CPU only: checks the script "
                             "still runs (overrides --rows, --devices, --batch-sizes, --repeats)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes on the CPU only (no CUDA), the figures are not measurements",
              file=sys.stderr)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    from fraudops.data.generate import GeneratorConfig, generate
    from fraudops.features import DEFAULT_SEQ_LEN
    from fraudops.training.dataset import featurize

    started = time.perf_counter()
    data = featurize(generate(GeneratorConfig(rows=args.rows, seed=args.seed)), DEFAULT_SEQ_LEN)
    result: dict = {"rows": args.rows, "featurize_s": time.perf_counter() - started,
                    "threads": args.threads, "cpus": os.cpu_count(),
                    "machine": platform.processor() or platform.machine(),
                    "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "devices": {}}
    for device in devices:
        fitted = fit_on(device, data, args.threads, SMOKE_TRAINING if args.smoke else {})
        scorer = fitted.pop("scorer")
        fitted["scoring"] = [scoring_rate(scorer, data, size, args.repeats)
                             for size in args.batch_sizes]
        result["devices"][device] = fitted
        print(json.dumps({device: fitted}, indent=2), flush=True)
    print_table(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Models per device ({result['rows']:,} rows, {result['gpu'] or 'no GPU'})")
    table.add_column("figure")
    for device in result["devices"]:
        table.add_column(device, justify="right")
    runs = list(result["devices"].values())
    rows = [(f"fit {part} (s)", lambda r, p=part: f"{r['seconds'][p]:.1f}")
            for part in ("sequence", "autoencoder", "policy")]
    rows += [(f"test {key}", lambda r, k=key: f"{r['test'][k]:.4f}")
             for key in runs[0]["test"]]
    for i, scoring in enumerate(runs[0]["scoring"]):
        rows.append((f"score batch {scoring['batch']} p50 ms / seq/s",
                     lambda r, i=i: f"{r['scoring'][i]['p50_ms']:.2f} / "
                                    f"{r['scoring'][i]['sequences_per_s']:,.0f}"))
    for label, cell in rows:
        table.add_row(label, *(cell(run) for run in runs))
    Console().print(table)


if __name__ == "__main__":
    main()
