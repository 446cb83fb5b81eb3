"""Ablation of the LSTM-CNN: which change closes the gap to the gradient-boosted reference.

    python benchmarks/bench_ablation.py --rows 100000 --variants baseline,wide,onecycle
    python benchmarks/bench_ablation.py --rows 100000 --no-history   # sequences of length one
    python benchmarks/bench_ablation.py --rows 100000 --variants wide --seeds 3  # seed average
    python benchmarks/bench_ablation.py --smoke    # tiny sizes: checks the script still runs

Generates data with the default generator, featurizes it once, trains the LightGBM reference
once and then the sequence model once per variant (each a set of `SequenceTrainConfig`
overrides on top of the defaults), all on the same time split, and compares them on the test
period: AUPRC, recall at 1% and 0.1% FPR, recall at 1% FPR per fraud scenario, training seconds.
``--seeds N`` also trains each variant with N seeds and scores the average of their
probabilities ("<variant>+avgN"). ``--no-history`` keeps only the scored transaction in every
sequence (what imported data without an account id gives the model). Prints a table, writes
JSON where --out says.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

#: The first LSTM-CNN's settings (issue 16's starting point): every variant but "default"
#: changes these, so the table reads as an ablation from there whatever today's defaults are.
V1 = {"wide_size": 0, "weight_average": 0.0, "negative_sampling": 0.35}
#: Named variants: overrides of `SequenceTrainConfig`; "default" is today's configuration.
VARIANTS: dict[str, dict] = {
    "default": {},
    "baseline": V1,
    "wide": {**V1, "wide_size": 64},
    "onecycle": {**V1, "schedule": "onecycle"},
    "cosine": {**V1, "schedule": "cosine"},
    "average": {**V1, "weight_average": 0.98},
    "unweighted": {**V1, "positive_weight": 1.0},
    "all_negatives": {**V1, "negative_sampling": 1.0},
    "longer": {**V1, "epochs": 16, "patience": 4},
    "wide_onecycle": {**V1, "wide_size": 64, "schedule": "onecycle"},
    "wide_average": {**V1, "wide_size": 64, "weight_average": 0.98},
    "wide128_average": {**V1, "wide_size": 128, "weight_average": 0.98},
    "wide_average_longer": {**V1, "wide_size": 64, "weight_average": 0.98, "epochs": 16,
                            "patience": 4},
    "wide_average_unweighted": {**V1, "wide_size": 64, "weight_average": 0.98,
                                "positive_weight": 1.0},
    "wide_average_all_negatives": {"wide_size": 64, "weight_average": 0.98,
                                   "negative_sampling": 1.0},
    "wide128_average_all_negatives": {"wide_size": 128, "weight_average": 0.98,
                                      "negative_sampling": 1.0},
    "wide128_average_half_negatives": {"wide_size": 128, "weight_average": 0.98,
                                       "negative_sampling": 0.6},
    "wide256_average": {"wide_size": 256, "weight_average": 0.98},
    "wide128_average_no_dropout": {"wide_size": 128, "weight_average": 0.98, "dropout": 0.0},
    "wide128_average_slower": {"wide_size": 128, "weight_average": 0.98,
                               "learning_rate": 1e-3, "epochs": 12, "patience": 3},
    "wide128_average_all_negatives_cosine": {"wide_size": 128, "weight_average": 0.98,
                                             "negative_sampling": 1.0, "schedule": "cosine",
                                             "patience": 8},
}
#: Autoencoder variants: overrides of `AutoencoderTrainConfig` (scored alone, same test rows);
#: "ae_baseline" is the first autoencoder (plain mean squared error), "ae_default" today's.
AUTOENCODER_VARIANTS: dict[str, dict] = {
    "ae_default": {},
    "ae_baseline": {"feature_scaled": False, "noise": 0.0},
    "ae_scaled": {"feature_scaled": True, "noise": 0.0},
    "ae_scaled_denoising": {"feature_scaled": True, "noise": 0.3},
    "ae_denoising": {"feature_scaled": False, "noise": 0.3},
    "ae_scaled_wide": {"feature_scaled": True, "noise": 0.0, "hidden_size": 64,
                       "bottleneck": 12},
}
SMOKE = {"rows": 3_000, "variants": "baseline,wide", "seeds": 1, "combiner": True,
         "autoencoders": "ae_baseline,ae_scaled_denoising"}
COLUMNS = ("auprc", "recall_at_1pct_fpr", "recall_at_0.1pct_fpr")


def load_data(rows: int, seed: int, no_history: bool):
    """The featurized generator data with its label stream (optionally cut to length-one
    sequences)."""
    from fraudops.data.generate import GeneratorConfig, generate
    from fraudops.data.labels import generate_labels
    from fraudops.training.config import TrainingConfig
    from fraudops.training.dataset import featurize

    config = GeneratorConfig(rows=rows, seed=seed)
    frame = generate(config)
    # The generated label stream, as a training run reads it: label-informed features count it.
    labels = generate_labels(frame, config.seed, config.labels)
    data = featurize(frame, TrainingConfig().seq_len, labels=labels)
    if no_history:
        # Only the last column (the scored transaction) stays: no account history at all.
        data.seq_index[:, :-1] = -1
    return data


def test_metrics(data, rows, probability) -> dict:
    from fraudops.training.metrics import score_metrics

    return score_metrics(data.labels[rows], probability, data.amounts[rows],
                         data.scenarios[rows])


def run_reference(data, split, config, test) -> dict:
    from fraudops.training.reference import train_reference

    model = train_reference(data, split, config)
    metrics = test_metrics(data, test, model.predict(data.features[test]))
    return {**metrics, "seconds": model.summary["train_seconds"],
            "epochs": model.summary["best_iteration"]}


def run_variant(data, split, base, overrides: dict, seed: int, test):
    """Train one variant with one seed; (test probabilities, training summary, module)."""
    import torch

    from fraudops.training.config import SequenceTrainConfig
    from fraudops.training.loops import predict_sequence, train_sequence_model

    sequence = SequenceTrainConfig(**{**base.sequence.model_dump(), **overrides})
    config = base.model_copy(update={"seed": seed, "sequence": sequence})
    result = train_sequence_model(data, split, config, torch.device("cpu"))
    probability = predict_sequence(result.module, data, test, torch.device("cpu"))
    return probability, {"seconds": result.seconds, "epochs": result.best_epoch}, result.module


def run_autoencoder(data, split, base, overrides: dict, test) -> dict:
    """Train one autoencoder variant; its anomaly score's metrics on the test rows."""
    import torch

    from fraudops.training.config import AutoencoderTrainConfig
    from fraudops.training.loops import predict_anomaly, train_autoencoder

    autoencoder = AutoencoderTrainConfig(**{**base.autoencoder.model_dump(), **overrides})
    config = base.model_copy(update={"autoencoder": autoencoder})
    result = train_autoencoder(data, split, config, torch.device("cpu"))
    score = predict_anomaly(result.module, data, test, torch.device("cpu"))
    return {**test_metrics(data, test, score), "seconds": result.seconds,
            "epochs": result.best_epoch}


def run_combiner(data, split, base, module, name: str, test) -> dict[str, dict]:
    """Platt calibration of `module` fitted on validation without and with the (default)
    autoencoder's score as a second input; test metrics of each."""
    import torch

    from fraudops.training.calibration import fit_calibration
    from fraudops.training.config import CalibrationConfig
    from fraudops.training.loops import predict_anomaly, predict_sequence, train_autoencoder

    cpu = torch.device("cpu")
    autoencoder = train_autoencoder(data, split, base, cpu).module
    validation = data.labelled(split.validation)
    out = {}
    for label, use in (("platt", False), ("platt+anomaly", True)):
        calibration = fit_calibration(
            data.labels[validation], predict_sequence(module, data, validation, cpu),
            predict_anomaly(autoencoder, data, validation, cpu), CalibrationConfig(use_anomaly=use))
        probability = calibration.apply(predict_sequence(module, data, test, cpu),
                                        predict_anomaly(autoencoder, data, test, cpu))
        out[f"{name} {label}"] = {**test_metrics(data, test, probability), "seconds": 0.0,
                                  "epochs": "-"}
    return out


def run_ablation(data, names: list[str], seeds: int, base, smoke: bool,
                 autoencoders: list[str], combiner: bool = False) -> dict[str, dict]:
    """Reference first, then each variant (and its seed average), then the autoencoder
    variants; metrics by row name."""
    import numpy as np

    from fraudops.training.splits import split_for

    split = split_for(data, base)
    test = data.labelled(split.test)
    results = {"LightGBM reference": run_reference(data, split, base, test)}
    for name in names:
        overrides = {**VARIANTS[name], **({"epochs": 1} if smoke else {})}
        runs = [run_variant(data, split, base, overrides, base.seed + i, test)
                for i in range(seeds)]
        results[name] = {**test_metrics(data, test, runs[0][0]), **runs[0][1]}
        if seeds > 1:
            mean = np.mean([run[0] for run in runs], axis=0)
            # each seed's own AUPRC: the spread says how much one run's figure can be trusted
            each = [test_metrics(data, test, run[0])["auprc"] for run in runs]
            results[f"{name}+avg{seeds}"] = {
                **test_metrics(data, test, mean), "epochs": float("nan"),
                "seconds": sum(run[1]["seconds"] for run in runs), "seed_auprc": each}
            print(f"{name}: AUPRC per seed {[round(v, 4) for v in each]}", file=sys.stderr)
        if combiner:
            results.update(run_combiner(data, split, base, runs[0][2], name, test))
        print(f"{name}: AUPRC {results[name]['auprc']:.4f}", file=sys.stderr, flush=True)
    for name in autoencoders:
        overrides = {**AUTOENCODER_VARIANTS[name], **({"epochs": 1} if smoke else {})}
        results[name] = run_autoencoder(data, split, base, overrides, test)
        print(f"{name}: AUPRC {results[name]['auprc']:.4f}", file=sys.stderr, flush=True)
    return results


def print_table(results: dict[str, dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    scenarios = sorted({k for m in results.values() for k in m
                        if k.startswith("recall_at_1pct_fpr.")})
    table = Table(title=title)
    table.add_column("variant")
    for column in (*COLUMNS, *(s.split(".", 1)[1] for s in scenarios), "seconds", "best ep."):
        table.add_column(column, justify="right")
    for name, m in results.items():
        values = [m.get(c, float("nan")) for c in (*COLUMNS, *scenarios)]
        table.add_row(name, *(f"{v:.4f}" for v in values), f"{m['seconds']:.1f}",
                      f"{m['epochs']}")
    Console(width=240).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and LightGBM threads")
    parser.add_argument("--variants", default="baseline,wide,average,default",
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--autoencoders", default="",
                        help=f"comma-separated, from: {', '.join(AUTOENCODER_VARIANTS)}")
    parser.add_argument("--combiner", action="store_true",
                        help="also score each variant Platt-calibrated without and with the "
                             "autoencoder's anomaly score as an input")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per variant (>1: average)")
    parser.add_argument("--no-history", action="store_true",
                        help="sequences of length one (data without an account id)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one epoch: checks the script runs (not a figure)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    autoencoders = [n.strip() for n in args.autoencoders.split(",") if n.strip()]
    unknown = sorted(set(names) - set(VARIANTS)) + sorted(set(autoencoders)
                                                          - set(AUTOENCODER_VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}")
    logging.basicConfig(level=logging.WARNING)
    import torch

    from fraudops.training.config import TrainingConfig

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = load_data(args.rows, args.seed, args.no_history)
    base = TrainingConfig(seed=args.seed, threads=args.threads)
    results = run_ablation(data, names, args.seeds, base, args.smoke, autoencoders,
                           args.combiner)
    title = (f"LSTM-CNN ablation, {args.rows:,} rows{', no history' if args.no_history else ''}"
             f" (test period; spec {data.spec.version}, {data.spec.dim} features)")
    print_table(results, title)
    record = {"rows": args.rows, "seed": args.seed, "threads": args.threads,
              "no_history": args.no_history, "feature_spec": data.spec.version,
              "feature_dim": data.spec.dim, "load_average": os.getloadavg(),
              "seconds_total": time.perf_counter() - started, "results": results}
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=2, default=float))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
