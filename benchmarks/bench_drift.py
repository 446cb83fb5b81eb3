"""Drift job on a large window: time of one `DriftJob.check()` and of its stages.

Builds a throw-away platform under --dir: generated data (spending_shift drift), a small
champion pair registered in MLflow (SQLite) whose run logs the training data's path, and a
SQLite decision store holding the stream scored by that champion, from a day more than the
feature lookback before the drift point on. Then checks the window of the latest --window-rows
scored transactions (plus the 7-day feature lookback) against the champion's reference. The
job skips a window without the lookback's history before it; the benchmark stops with an
error if it does, as there is nothing to time. Evidently sees at most --sample-rows rows per
side (uniform sample; the job's default is 20k) - say so when quoting the figure.

    python benchmarks/bench_drift.py --window-rows 100000 --out bench_drift.json
    python benchmarks/bench_drift.py --smoke       # tiny sizes: checks the script still runs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

SEQ_LEN = 16
DAYS, DRIFT_DAY = 40, 15
#: The job's default feature lookback. The store holds one day more than this before the drift
#: point, so a window reaching back to the drift point has its history (see `window_bounds`).
LOOKBACK = timedelta(days=7)
#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
SMOKE = {"window_rows": 2_000, "sample_rows": [500]}


def build(root: Path, window_rows: int) -> dict:
    """Data, champion, store; returns what the settings need."""
    import pandas as pd

    from fraudops.data import tabular
    from fraudops.data.generate import GeneratorConfig, generate

    per_day = window_rows / (DAYS - DRIFT_DAY - 5)
    config = GeneratorConfig(rows=int(per_day * DAYS), days=DAYS, seed=11, drift="spending_shift",
                             drift_start=DRIFT_DAY / DAYS)
    data = tabular.sort_by_time(generate(config))
    cut = pd.Timestamp(config.drift_start_datetime())
    train = data[data["timestamp"] < cut].reset_index(drop=True)
    train_path = tabular.write(train, root / "train.parquet")
    checkpoints = _champion(train, root / "models")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    _register(tracking_uri, checkpoints, root / "mlartifacts", str(train_path), cut.isoformat())
    stream = data[data["timestamp"] >= cut - LOOKBACK - timedelta(days=1)].reset_index(drop=True)
    _fill_store(f"sqlite:///{root / 'fraudops.db'}", stream, checkpoints)
    return {"tracking_uri": tracking_uri, "rows": len(data), "stream_rows": len(stream)}


def _champion(train, directory: Path):
    from fraudops.features import build_spec, compute_batch
    from fraudops.models import DecisionPolicy
    from fraudops.models.untrained import write_untrained_pair

    spec = build_spec()
    features = compute_batch(train, spec)
    spec_dict = {**spec.to_dict(), "names": list(spec.names)}
    return write_untrained_pair(
        directory, spec_dict, features, SEQ_LEN, policy=DecisionPolicy(0.9, 0.6),
        sequence_size={"conv_channels": 16, "hidden_size": 16, "head_size": 16},
        autoencoder_size={"hidden_size": 16, "bottleneck": 8})


def _register(tracking_uri: str, checkpoints, artifacts: Path, data_path: str, end: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    experiment = client.create_experiment("bench", artifact_location=artifacts.as_uri())
    run = client.create_run(experiment)
    client.set_tag(run.info.run_id, "fraudops.data_path", data_path)
    client.log_param(run.info.run_id, "data.window_end", end)
    for name, directory in zip(("fraud-lstm-cnn", "fraud-autoencoder"), checkpoints, strict=True):
        client.log_artifacts(run.info.run_id, str(directory), name)
        client.create_registered_model(name)
        version = client.create_model_version(name, f"{run.info.artifact_uri}/{name}",
                                              run.info.run_id)
        client.set_registered_model_alias(name, "champion", version.version)


def _fill_store(url: str, stream, checkpoints) -> None:
    from fraudops.data import tabular
    from fraudops.features import build_spec, compute_batch, gather_sequences, sequence_index
    from fraudops.models import load_scorer
    from fraudops.store import BatchWrite, DecisionRecord, Store

    scorer = load_scorer(str(checkpoints[0]), str(checkpoints[1]), device="cpu")
    x, mask = gather_sequences(compute_batch(stream, build_spec()), sequence_index(stream, SEQ_LEN))
    result = scorer.score(x, mask)
    store = Store.from_url(url)
    records = list(tabular.to_records(stream))
    times = stream["timestamp"].dt.to_pydatetime()
    for start in range(0, len(records), 20_000):
        store.write_batch(BatchWrite(decisions=[
            DecisionRecord(r["transaction_id"], r["account_id"], times[i], float(r["amount"]),
                           float(result.fraud_probability[i]), float(result.anomaly_score[i]),
                           str(result.decision[i]), json.dumps(r), model_version="fraud-lstm-cnn/1")
            for i, r in enumerate(records[start:start + 20_000], start)]))
    store.close()


def check(root: Path, built: dict, window_rows: int, sample_rows: int) -> dict:
    from mlflow import MlflowClient

    from fraudops.store import Store
    from monitoring.job import DriftJob
    from monitoring.settings import DriftSettings, MonitoringSettings

    # The window reaches back at most to the drift point (the generator puts about 1.25
    # --window-rows after it), then --window-rows trims it to the latest rows. A longer window
    # would start before the store's history plus the lookback, and the job would skip it.
    settings = MonitoringSettings(
        home=root, mlflow={"tracking_uri": built["tracking_uri"]},
        database={"url": f"sqlite:///{root / 'fraudops.db'}"},
        drift=DriftSettings(window=timedelta(days=DAYS - DRIFT_DAY), window_max_rows=window_rows,
                            lookback=LOOKBACK, sample_rows=sample_rows, trigger_retraining=False))
    store = Store.from_url(settings.database.resolved_url(root))
    registry = MlflowClient(built["tracking_uri"], registry_uri=built["tracking_uri"])
    job = DriftJob(settings, store, registry)
    started = time.perf_counter()
    outcome = job.check()
    total = time.perf_counter() - started
    store.close()
    if outcome.status != "checked" or outcome.report_location is None:
        raise SystemExit(f"bench_drift: the drift job did not check the window "
                         f"({outcome.status}: {outcome.detail}); nothing was measured")
    report = Path(outcome.report_location) / "report.json"
    rows = json.loads(report.read_text())["summary"]["current"]["rows"]
    return {"window_rows": rows, "sample_rows": sample_rows, "seconds": round(total, 2),
            "stages": outcome.timings, "drift_share": round(outcome.drift_share, 3),
            "drifted_features": outcome.drifted_features}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-rows", type=int, default=100_000)
    parser.add_argument("--sample-rows", type=int, nargs="+", default=[20_000])
    parser.add_argument("--dir", type=Path, help="work directory (default: a temp dir)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check the script still runs "
                             "(overrides --window-rows, --sample-rows)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    root = (args.dir or Path(tempfile.mkdtemp(prefix="bench-drift-"))).resolve()  # file URIs
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    built = build(root, args.window_rows)
    setup = round(time.perf_counter() - started, 1)
    runs = [check(root, built, args.window_rows, n) for n in args.sample_rows]
    result = {"benchmark": "drift_check", "setup_seconds": setup, **built, "runs": runs}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
