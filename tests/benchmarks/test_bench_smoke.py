"""No benchmark rots: every script under benchmarks/ runs end to end in its `--smoke` mode.

Each test runs one script as a user would (`python benchmarks/X.py --smoke`, in the test's
temporary folder, its report written there) and checks what the report says: the sizes the
smoke mode asked for, and figures that measure something (positive, consistent). The figures
are not compared with targets: tiny sizes on a shared machine say nothing about speed. Most of
a smoke run is importing its libraries (Evidently, MLflow, torch, KServe); the runs that take
longer than ~30 s on a 2-core machine are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
#: Scripts tested elsewhere: bench_stream.py in test_bench_stream_smoke.py (two brokers).
NOT_HERE = {"bench_stream"}
#: A hung script must fail its test with its output, not wait for pytest's global timeout.
TIMEOUT_S = 300


def run_smoke(script: str, folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`python benchmarks/<script> --smoke *args` in `folder`; fails unless it exits 0."""
    env = {**os.environ, "FRAUDOPS_HOME": str(folder / "home")}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", *args],
                          cwd=folder, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, (f"{script} --smoke exited {done.returncode}\n"
                                  f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-5000:]}")
    assert "smoke run" in done.stderr  # says that its figures are not measurements
    return done


def read_report(folder: Path) -> dict | list:
    return json.loads((folder / "report.json").read_text())


def assert_positive(figures: dict, *names: str) -> None:
    for name in names:
        value = figures[name]
        assert isinstance(value, int | float) and value > 0, f"{name} = {value!r}"


def test_every_benchmark_has_a_smoke_test():
    scripts = {path.stem for path in BENCHMARKS.glob("bench_*.py")} - NOT_HERE
    tested = {name.removeprefix("test_").removesuffix("_smoke") for name in globals()
              if name.startswith("test_bench_")}
    assert scripts <= tested, f"no smoke test for {sorted(scripts - tested)}"


def test_bench_features_smoke(tmp_path):
    run_smoke("bench_features.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert (result["rows"], result["online_rows"]) == (2_000, 500)
    assert_positive(result, "batch_seconds", "batch_rows_per_second", "online_rows_per_second",
                    "online_us_per_event")


def test_bench_generate_smoke(tmp_path):
    done = run_smoke("bench_generate.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert (result["rows"], result["repeat"], len(result["runs"])) == (2_000, 1, 1)
    assert_positive(result, "best_generate_s", "best_total_s", "rows_per_s_generate",
                    "rows_per_s_total")
    assert result["best_total_s"] >= result["best_generate_s"]
    assert "generate 2,000 rows" in done.stdout


def test_bench_decode_smoke(tmp_path):
    done = run_smoke("bench_decode.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert (result["batch"], result["repeat"]) == (50, 3)
    assert result["poison_share"] == 0.1  # every 10th message: bad JSON, schema, absurd
    figures = result["us_per_message"]
    assert set(figures) == {"one_by_one", "batch", "one_by_one_with_poison", "batch_with_poison",
                            "model_validate_json_each", "type_adapter_each",
                            "core_validator_each"}
    for figure in figures.values():
        assert_positive(figure, "best", "median")
        assert figure["best"] <= figure["median"]
    assert "decode 50 messages per poll" in done.stdout


def test_bench_tansu_fetch_smoke(tmp_path):
    done = run_smoke("bench_tansu_fetch.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert (result["stored"], [c["batch_records"] for c in result["cases"]]) == (500, [1, 5])
    for case in result["cases"]:
        assert case["stored_batches"] == 500 // case["batch_records"]
        assert case["sent"] > 0 and 0 < case["received"] <= case["sent"]
        assert case["broker_cores"] >= 0
    assert "500 stored in batches of 5" in done.stdout


def test_bench_state_smoke(tmp_path):
    run_smoke("bench_state.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    whole, recent = result["whole_state_snapshot"], result["snapshot_after_300_events"]
    assert result["events"] == 3_300
    for snapshot in (whole, recent):
        assert_positive(snapshot, "entries", "megabytes", "pickle_ms", "write_ms")
    assert recent["entries"] < whole["entries"]  # only what the recent events touched
    assert_positive(result, "accounts", "restore_ms")
    assert result["restored_accounts"] == result["accounts"]


def test_bench_import_smoke(tmp_path):
    done = run_smoke("bench_import.py", tmp_path, "--json", "report.json")
    (result,) = read_report(tmp_path)
    assert (result["rows"], result["chunk_size"]) == (2_000, 500)
    assert_positive(result, "csv_mb", "seconds", "rows_per_second", "mb_per_second",
                    "peak_rss_mb", "parquet_mb")
    assert json.loads(done.stdout.splitlines()[-1]) == result
    # Its CSV lived in a temporary folder, and no result landed at the default JSON path.
    assert not list(tmp_path.rglob("*.csv")) and not (tmp_path / "benchmarks").exists()


def test_bench_devices_smoke(tmp_path):
    done = run_smoke("bench_devices.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert result["rows"] == 3_000
    assert list(result["devices"]) == ["cpu"] and "CPU only" in done.stderr
    cpu = result["devices"]["cpu"]
    assert_positive(cpu["seconds"], "sequence", "autoencoder", "policy")
    assert cpu["epochs"] == {"sequence": 1, "autoencoder": 1}
    assert all(0 <= value <= 1 for value in cpu["test"].values())
    assert [scoring["batch"] for scoring in cpu["scoring"]] == [1, 64]
    for scoring in cpu["scoring"]:
        assert_positive(scoring, "p50_ms", "p99_ms", "sequences_per_s")
    assert "Models per device" in done.stdout


@pytest.mark.slow
def test_bench_training_smoke(tmp_path):
    done = run_smoke("bench_training.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert result["rows"] == 3_000
    assert_positive(result["seconds"], "generate", "flow_total", "flow_cpu", "train_sequence",
                    "train_autoencoder", "evaluate", "register", "gate", "lightgbm")
    assert result["seconds"]["kfp_local_total"] is None
    for model in ("lstm_cnn", "autoencoder", "lightgbm"):
        assert 0 <= result[model]["auprc"] <= 1
    assert result["gate"]["promote"] is True  # the first registered pair becomes the champion
    assert "Training benchmark (3,000 rows)" in done.stdout


def test_bench_ablation_smoke(tmp_path):
    done = run_smoke("bench_ablation.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert result["rows"] == 3_000
    names = set(result["results"])
    assert {"LightGBM reference", "baseline", "wide", "baseline platt+anomaly",
            "ae_scaled_denoising"} <= names
    for figures in result["results"].values():
        assert 0 <= figures["auprc"] <= 1
    assert "LSTM-CNN ablation, 3,000 rows" in done.stdout


@pytest.mark.slow
def test_bench_drift_smoke(tmp_path):
    run_smoke("bench_drift.py", tmp_path, "--dir", "work", "--out", "report.json")
    (check,) = read_report(tmp_path)["runs"]
    assert (check["window_rows"], check["sample_rows"]) == (2_000, 500)
    assert_positive(check, "seconds")
    assert_positive(check["stages"], "reference", "current_window", "compare", "report")
    assert 0 < check["drift_share"] <= 1
    assert "amount_log" in check["drifted_features"]  # the generated spending shift


@pytest.mark.integration
def test_bench_gateway_smoke(tmp_path):
    run_smoke("bench_gateway.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    for concurrency in (1, 4):
        figures = result[f"concurrency_{concurrency}"]
        assert figures["requests"] == 100
        assert_positive(figures, "requests_per_s", "p50_ms", "p99_ms", "max_ms",
                        "gateway_cpu_ms_per_request")
        assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]


def test_bench_gateway_probe_smoke(tmp_path):
    run_smoke("bench_gateway_probe.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert (result["config"]["concurrency"], result["config"]["body_bytes"]) == (2, 2 * 2**20)
    for name in ("content_length", "chunked"):
        figures = result[name]
        assert len(figures["answers"]) == 2 and all(a["status"] for a in figures["answers"])
        assert_positive(figures, "rss_before_mb", "rss_peak_mb", "max_latency_ms",
                        "max_answer_bytes")
        assert figures["rss_peak_mb"] >= figures["rss_before_mb"]
    assert set(result["targets"]) == {"rss_growth_below_20_mb", "answers_401_or_413",
                                      "answers_within_100_ms"}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_bench_predictor_smoke(tmp_path, backend):
    run_smoke("bench_predictor.py", tmp_path, "--out", "report.json", "--backend", backend,
              "--precision", "float32")
    result = read_report(tmp_path)
    assert (result["config"]["device"], result["config"]["backend"]) == ("cpu", backend)
    assert set(result["single"]) == {"binary", "json"}
    assert set(result["batch"]) == {"16_binary", "16_json"}
    assert set(result["grpc"]) == {"single", "16"}
    for summary in [*result["single"].values(), *result["batch"].values(),
                    *result["grpc"].values(), result["concurrent_single_binary"]]:
        assert_positive(summary, "requests", "p50_ms", "p99_ms", "sequences_per_s")
        assert summary["p50_ms"] <= summary["p99_ms"]
    assert result["concurrent_single_binary"]["mean_sequences_per_forward_pass"] >= 1
    assert (result["batch"]["16_json"]["request_bytes"]
            > result["batch"]["16_binary"]["request_bytes"])


def test_bench_ingest_fuzz_smoke(tmp_path):
    run_smoke("bench_ingest_fuzz.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert result["messages"] == 3_000 and result["restarts"] == 2
    assert result["crashes"] == 0 and result["decided_twice"] == 0
    assert result["ids_published_with_different_bytes"] == 0
    assert result["decisions_stored"] == result["decided_ids"] > 0
    assert sum(result["generated"].values()) == 3_000
    # The mix reached the consumer's own paths: poison dead-lettered, late events accepted,
    # redeliveries answered with the stored decision, conflicting ids refused.
    assert result["late_accepted"] > 0 and result["republished"] > 0
    assert {"too_late", "conflicting_duplicate"} <= set(result["dead_letters"])
    assert_positive(result, "processor_messages_per_second")


def test_bench_rules_smoke(tmp_path):
    run_smoke("bench_rules.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert (result["rules"], result["transactions"]) == (20, 2_000)
    assert_positive(result, "us_per_transaction")
    assert sum(result["rule_hits"].values()) > 0


@pytest.mark.integration
def test_bench_console_smoke(tmp_path):
    run_smoke("bench_console.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    assert (result["config"]["alerts"], result["config"]["database"]) == (2_000, "sqlite")
    assert set(result["views"]) == {"first_page", "filtered", "narrow_window", "by_rule",
                                    "deep_page"}
    for figures in result["views"].values():
        assert figures["requests"] == 5 and figures["rows"] > 0
        assert_positive(figures, "p50_ms", "p95_ms", "max_ms")
        assert figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
    assert result["views"]["first_page"]["rows"] == 50


def test_bench_import_quality_smoke(tmp_path):
    done = run_smoke("bench_import_quality.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    # Every generated row came through the real import, its V columns as passthrough features.
    assert result["rows"] == result["rows_imported"] == 3_000
    assert result["extra_features"] == [f"V{i}" for i in range(1, 29)]
    assert result["fraud_rows"] > 0
    names = set(result["results"])
    assert names == {"LightGBM reference, 20 rounds", "LightGBM reference, 40 rounds",
                     "default", "wide256"}
    best = max(result["results"][n]["auprc"] for n in names if n.startswith("LightGBM"))
    for figures in result["results"].values():
        assert 0 <= figures["auprc"] <= 1 and 0 <= figures["recall_at_1pct_fpr"] <= 1
        assert abs(figures["gap_auprc"] - (figures["auprc"] - best)) < 1e-12
    assert "Imported Kaggle-layout data, 3,000 rows" in done.stdout


@pytest.mark.integration
def test_bench_stages_smoke(tmp_path):
    """The three entity stages as processes on a real Apache Kafka broker, tiny sizes."""
    run_smoke("bench_stages.py", tmp_path, "--out", "report.json")
    result = read_report(tmp_path)
    in_process = result["in_process"]
    for stage in ("router", "merchant", "device"):
        assert_positive(in_process[stage], "cpu_us_per_tx")
    latency = result["latency"]
    assert latency["transactions"] == 600  # 200 tx/s for 3 s
    assert latency["delivered"] >= latency["transactions"]  # every one reached `enriched`
    for hop in ("router", "merchant", "device", "end_to_end"):
        figures = latency[hop]
        assert 0 <= figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"], (hop, figures)
    assert latency["end_to_end"]["p50_ms"] >= latency["router"]["p50_ms"]


def test_bench_processor_smoke(tmp_path):
    done = run_smoke("bench_processor.py", tmp_path, "--stub-features", "--engines", "native",
                     "python", "--out", "report.json")
    result = read_report(tmp_path)
    assert result["transactions"] == 600
    runs = result["runs"]
    assert [(r["batch_size"], r["features"], r.get("engine")) for r in runs] == [
        (size, features, engine) for size in (10, 100) for features, engine in (
            ("computed", "native"), ("computed", "python"), ("stubbed", None))]
    for r in runs:
        assert r["decided"] == 600  # every transaction decided and stored, stubbed or not
        assert r["batches"] == -(-600 // r["batch_size"])
        assert_positive(r, "total_cpu_us_per_tx")
        assert r["total_cpu_us_per_tx"] >= max(r["cpu_us_per_tx"].values())
    assert "batches of    10, features stubbed" in done.stdout
    assert "features computed (native)" in done.stdout
