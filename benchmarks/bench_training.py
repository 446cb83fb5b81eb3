"""Training pipeline benchmark: time, model quality, and the LightGBM reference beside them.

    python benchmarks/bench_training.py --rows 200000 --threads 1 --out bench_training.json
    python benchmarks/bench_training.py --kfp      # also time the kfp.local run of the pipeline
    python benchmarks/bench_training.py --smoke    # tiny sizes: checks the script still runs

Generates data with the default generator, runs the whole training flow (featurize, train both
models and the gradient-boosted reference on the same current-row features and split, fit the
policy, evaluate on the time-held-out test period, log + register in a throw-away MLflow store,
gate); the reference's figures come from that same run (`reference.*`).
Prints a table and writes JSON (a smoke run only where --out says). Targets: whole flow < 180 s
on 2 CPU cores; LSTM-CNN test AUPRC >= 0.90 and recall >= 0.80 at 1% FPR.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS, TARGET_AUPRC, TARGET_RECALL = 180.0, 0.90, 0.80
DEFAULT_OUT = Path("bench_training.json")
#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
SMOKE = {"rows": 3_000}
#: ... and one epoch per model (the default configuration otherwise).
SMOKE_TRAINING = {"sequence": {"epochs": 1}, "autoencoder": {"epochs": 1}}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_flow(data_path: Path, work: Path, threads: int, seed: int, overrides: dict):
    from fraudops.training.config import TrainingConfig
    from fraudops.training.retrain import TrainingJob, run_training
    from fraudops.training.settings import TrackingTarget

    target = TrackingTarget(f"sqlite:///{work / 'mlflow.db'}", (work / "mlruns").as_uri(),
                            "bench")
    config = TrainingConfig(threads=threads, seed=seed, **overrides)
    started = time.perf_counter()
    cpu = cpu_seconds()
    outcome = run_training(TrainingJob(data_path, work / "run", target, config=config))
    return outcome, time.perf_counter() - started, cpu_seconds() - cpu, config


def run_kfp(data_path: Path, work: Path, threads: int, overrides: dict) -> float:
    from pipelines.local import run_local

    os.environ["FRAUDOPS_HOME"] = str(work / "kfp-home")
    os.environ["FRAUDOPS_MLFLOW__TRACKING_URI"] = f"sqlite:///{work / 'kfp-mlflow.db'}"
    started = time.perf_counter()
    run_local({"data_path": str(data_path),
               "config_json": json.dumps({"threads": threads, **overrides})}, work / "kfp")
    return time.perf_counter() - started


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Training benchmark ({result['rows']:,} rows)")
    for column in ("metric", "LSTM-CNN", "autoencoder", "LightGBM (row features)"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    seq, ae, lgb = result["lstm_cnn"], result["autoencoder"], result["lightgbm"]
    for key in sorted(k for k in seq if k in lgb):
        table.add_row(key, *(f"{m.get(key, float('nan')):.4f}" for m in (seq, ae, lgb)))
    Console().print(table)
    print(json.dumps({"seconds": result["seconds"], "targets": result["targets"]}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see config)")
    parser.add_argument("--kfp", action="store_true", help="Also time the kfp.local run.")
    parser.add_argument("--out", type=Path, help=f"default: {DEFAULT_OUT} (none when --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and one epoch per model, to check the script still "
                             "runs (overrides --rows)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    out = args.out or (None if args.smoke else DEFAULT_OUT)
    overrides = SMOKE_TRAINING if args.smoke else {}

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    from fraudops.data.generate import GeneratorConfig, generate
    from fraudops.data.labels import generate_labels, labels_path, write_labels

    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        data_path = work / "transactions.parquet"
        config = GeneratorConfig(rows=args.rows, seed=args.seed)
        frame = generate(config)
        frame.to_parquet(data_path)
        # the label stream beside it: the label-informed features count it (point in time)
        write_labels(generate_labels(frame, config.seed, config.labels), labels_path(data_path))
        generate_s = time.perf_counter() - started
        outcome, flow_s, flow_cpu_s, _ = run_flow(data_path, work, args.threads, args.seed,
                                                  overrides)
        kfp_cpu = cpu_seconds()
        kfp_s = run_kfp(data_path, work, args.threads, overrides) if args.kfp else None
        kfp_cpu_s = cpu_seconds() - kfp_cpu if args.kfp else None

    metrics = outcome.metrics
    pick = lambda prefix: {k[len(prefix):]: v for k, v in metrics.items()
                           if k.startswith(prefix) and v is not None}
    seq = pick("sequence.")
    lgb = {**pick("reference."), "train_seconds": outcome.seconds.get("train_reference")}
    result = {
        "rows": args.rows, "threads": args.threads, "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        # Wall time depends on what else runs on the machine: CPU time (all threads) and the
        # load average say how much of the machine the run actually had.
        "seconds": {"generate": generate_s, "flow_total": flow_s, "flow_cpu": flow_cpu_s,
                    **outcome.seconds, "lightgbm": lgb["train_seconds"],  # = train_reference
                    "kfp_local_total": kfp_s, "kfp_local_cpu": kfp_cpu_s},
        "lstm_cnn": seq, "autoencoder": pick("autoencoder."), "policy": pick("policy."),
        "lightgbm": lgb, "test_rows": metrics.get("rows"), "test_fraud_rate": metrics.get("fraud_rate"),
        "gate": outcome.decision.to_dict() if outcome.decision else None,
        "targets": {
            "flow_under_180s": flow_s < TARGET_SECONDS,
            "lstm_cnn_auprc_ge_0.90": seq.get("auprc", 0) >= TARGET_AUPRC,
            "lstm_cnn_recall_at_1pct_fpr_ge_0.80": seq.get("recall_at_1pct_fpr", 0) >= TARGET_RECALL,
        },
    }
    print_table(result)
    if out is not None:
        out.write_text(json.dumps(result, indent=2, default=str))
        print(f"written to {out}")


if __name__ == "__main__":
    main()
