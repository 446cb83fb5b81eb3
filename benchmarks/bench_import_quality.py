"""Model quality on imported data: anonymous numeric columns, no account id (issue 16's target).

    python benchmarks/bench_import_quality.py --rows 100000
    python benchmarks/bench_import_quality.py --rows 100000 --variants default,wide256 \
        --model-seeds 3 --reference-rounds 400,2000
    python benchmarks/bench_import_quality.py --smoke    # tiny sizes: checks the script runs

Makes a data set in the layout of the public Kaggle / ULB credit-card set (``Time``,
``V1..V28``, ``Amount``, ``Class``; no account, merchant or device id) from the generator:
the V columns are the first 28 principal components of the generator's standardised
behavioural features (account history, velocity, novelty, channel, category; computed from
the generator's own ids, which the file then leaves out), plus Gaussian noise of
``--noise`` times each component's spread, so no single column gives the fraud away. The CSV
goes through the platform's real import (`import_dataset` with
``examples/mappings/kaggle_creditcard.yaml``: V1..V28 become ``extra_V*`` features, each row
its own account), then the normal training code: featurize, the time split, the LightGBM
reference and the LSTM-CNN (once per variant: `SequenceTrainConfig` overrides), all scored on
the same test period. Prints AUPRC and recall at 1% FPR of each and the gap to the reference;
writes JSON where --out says.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

MAPPING = (Path(__file__).resolve().parent.parent / "examples" / "mappings"
           / "kaggle_creditcard.yaml")
COMPONENTS = 28
#: Generator features not folded into the V columns: the file carries them itself (Amount,
#: Time). Label-informed features are computed without a label stream (a public set's PCA
#: never saw one), so they are constant and dropped with the other constants.
NOT_IN_V = ("amount_log", "hour_sin", "hour_cos", "dow_sin", "dow_cos")
#: LSTM-CNN variants: overrides of `SequenceTrainConfig`; "default" is today's configuration.
VARIANTS: dict[str, dict] = {
    "default": {},
    "wide256": {"wide_size": 256},
    "longer": {"epochs": 16, "patience": 4},
    "wide256_longer": {"wide_size": 256, "epochs": 16, "patience": 4},
    "unweighted": {"positive_weight": 1.0},
    "all_negatives": {"negative_sampling": 1.0},
}
SMOKE = {"rows": 3_000, "variants": "default,wide256", "reference_rounds": "20,40",
         "model_seeds": 1}
COLUMNS = ("auprc", "recall_at_1pct_fpr", "recall_at_0.1pct_fpr")


def kaggle_layout(rows: int, seed: int, noise: float):
    """A generated data set in the public layout: Time, V1..V28, Amount, Class."""
    import numpy as np
    import pandas as pd
    from sklearn.decomposition import PCA

    from fraudops.data import tabular
    from fraudops.data.generate import GeneratorConfig, generate
    from fraudops.features import build_spec, compute_batch

    ordered = tabular.sort_by_time(tabular.normalize(generate(GeneratorConfig(rows=rows,
                                                                            seed=seed))))
    spec = build_spec()
    features = compute_batch(ordered, spec).astype(np.float64)
    keep = [i for i, name in enumerate(spec.names)
            if name not in NOT_IN_V and features[:, i].std() > 1e-9]
    signals = features[:, keep]
    signals = (signals - signals.mean(axis=0)) / signals.std(axis=0)
    components = PCA(COMPONENTS, random_state=seed).fit_transform(signals)
    rng = np.random.default_rng(seed)
    components += noise * components.std(axis=0) * rng.standard_normal(components.shape)
    seconds = ordered["timestamp"].astype("int64") // 10**9  # datetime64[ns] -> s
    out = pd.DataFrame({"Time": (seconds - seconds.iloc[0]).to_numpy()})
    for i in range(COMPONENTS):
        out[f"V{i + 1}"] = components[:, i]
    out["Amount"] = ordered["amount"].round(2).to_numpy()
    out["Class"] = ordered["label"].to_numpy()
    return out


def import_layout(source, folder: Path):
    """Write `source` as CSV, import it through the Kaggle mapping, read it back."""
    from fraudops.data.importer import import_dataset
    from fraudops.training.dataset import load_frame

    csv, parquet = folder / "creditcard.csv", folder / "transactions.parquet"
    source.to_csv(csv, index=False, float_format="%.6f")
    report = import_dataset(csv, MAPPING, parquet)
    return load_frame(parquet), report


def train_and_score(data, base, names: list[str], smoke: bool, rounds: list[int],
                    seeds: int) -> dict[str, dict]:
    """The reference once per round cap, the LSTM-CNN once per variant and seed; test-period
    metrics by row name (a variant's row is its first seed's; `seed_auprc` lists them all)."""
    import torch

    from fraudops.training.config import SequenceTrainConfig
    from fraudops.training.loops import predict_sequence, train_sequence_model
    from fraudops.training.metrics import score_metrics
    from fraudops.training.reference import train_reference
    from fraudops.training.splits import split_for

    split = split_for(data, base)
    test = data.labelled(split.test)
    cpu = torch.device("cpu")

    def metrics(probability) -> dict:
        return score_metrics(data.labels[test], probability, data.amounts[test])

    results = {}
    for cap in rounds:
        reference_config = base.reference.model_copy(update={"rounds": cap})
        reference = train_reference(data, split, base.model_copy(
            update={"reference": reference_config}))
        results[f"LightGBM reference, {cap} rounds"] = {
            **metrics(reference.predict(data.features[test])),
            "seconds": reference.summary["train_seconds"], "epochs": reference.best_iteration}
    # The gap is taken to the best reference: a round cap must not flatter the deep model.
    best_reference = max(m["auprc"] for m in results.values())
    for name in names:
        overrides = {**VARIANTS[name], **({"epochs": 1} if smoke else {})}
        sequence = SequenceTrainConfig(**{**base.sequence.model_dump(), **overrides})
        runs = []
        for seed in range(base.seed, base.seed + seeds):
            config = base.model_copy(update={"sequence": sequence, "seed": seed})
            trained = train_sequence_model(data, split, config, cpu)
            runs.append({**metrics(predict_sequence(trained.module, data, test, cpu)),
                         "seconds": trained.seconds, "epochs": trained.best_epoch})
        results[name] = {**runs[0], "seed_auprc": [run["auprc"] for run in runs]}
        print(f"{name}: AUPRC per seed {[round(r['auprc'], 4) for r in runs]}",
              file=sys.stderr, flush=True)
    for figures in results.values():
        figures["gap_auprc"] = figures["auprc"] - best_reference
    return results


def print_table(results: dict[str, dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("model", *COLUMNS, "AUPRC - best reference", "seconds", "best ep."):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, m in results.items():
        table.add_row(name, *(f"{m[c]:.4f}" for c in COLUMNS), f"{m['gap_auprc']:+.4f}",
                      f"{m['seconds']:.1f}", str(m["epochs"]))
    Console(width=200).print(table)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0, help="data and model seed")
    parser.add_argument("--noise", type=float, default=0.3,
                        help="noise added to each V column, times its standard deviation")
    parser.add_argument("--threads", type=int, default=1, help="torch and LightGBM threads")
    parser.add_argument("--variants", default="default",
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--reference-rounds", default="400",
                        help="comma-separated LightGBM round caps, one reference each (400: "
                             "the platform's default); the gap is to the best of them")
    parser.add_argument("--model-seeds", type=int, default=1,
                        help="seeds per LSTM-CNN variant (the data stays the same)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one epoch: checks the script runs (not a figure)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    args.rounds = [int(n) for n in args.reference_rounds.split(",") if n.strip()]
    args.names = [n.strip() for n in args.variants.split(",") if n.strip()]
    if unknown := sorted(set(args.names) - set(VARIANTS)):
        parser.error(f"unknown variant(s) {unknown}")
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    from fraudops.training.config import TrainingConfig
    from fraudops.training.dataset import featurize

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    base = TrainingConfig(seed=args.seed, threads=args.threads)
    with tempfile.TemporaryDirectory() as folder:
        frame, report = import_layout(kaggle_layout(args.rows, args.seed, args.noise),
                                      Path(folder))
        data = featurize(frame, base.seq_len)
    assert (data.seq_index[:, :-1] == -1).all(), "imported rows must have no history"
    results = train_and_score(data, base, args.names, args.smoke, args.rounds,
                              args.model_seeds)
    print_table(results, f"Imported Kaggle-layout data, {args.rows:,} rows, noise {args.noise} "
                         f"(test period; {data.spec.dim} features, "
                         f"{len(report.extra_features)} passthrough)")
    record = {"rows": args.rows, "rows_imported": report.rows_written, "seed": args.seed,
              "noise": args.noise, "model_seeds": args.model_seeds, "threads": args.threads, "fraud_rows": report.fraud_rows,
              "extra_features": report.extra_features, "feature_dim": data.spec.dim,
              "load_average": os.getloadavg(), "seconds_total": time.perf_counter() - started,
              "results": results}
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=2, default=float))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
