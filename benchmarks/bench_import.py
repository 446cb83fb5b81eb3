"""Import throughput and peak memory of `fraudops data import` on a large Kaggle-like CSV.

    .venv/bin/python benchmarks/bench_import.py --size-mb 200 --csv /tmp/fraudops-bench.csv
    .venv/bin/python benchmarks/bench_import.py --smoke    # tiny sizes: checks the script runs

Generates the CSV (Time, V1..V28, Amount, Class) once if it is missing, in bounded-memory
pieces, then imports it in a fresh child process that reports its own peak RSS, so the figure
is the importer's alone. Prints the figures and writes them as JSON (``--json``). A smoke run
writes its own tiny CSV in a temporary folder (never reusing or leaving one at ``--csv``) and
writes JSON only where ``--json`` says.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

MAPPING = (
    Path(__file__).resolve().parent.parent / "examples" / "mappings" / "kaggle_creditcard.yaml"
)
PIECE_ROWS = 50_000
DEFAULT_JSON = Path("benchmarks/results/import.json")
#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
#: Two pieces of 1,000 rows, imported in chunks of 500.
SMOKE = {"size_mb": 0.4, "chunk_size": [500]}
SMOKE_PIECE_ROWS = 1_000


def write_csv(path: Path, size_mb: float, seed: int = 0, piece_rows: int = PIECE_ROWS) -> int:
    """Append Kaggle-like pieces until the file reaches `size_mb`; returns the row count."""
    rng, rows, start = np.random.default_rng(seed), 0, 0.0
    with path.open("w", encoding="utf-8") as handle:
        while handle.tell() < size_mb * 1e6:
            piece = pd.DataFrame({"Time": start + np.sort(rng.integers(0, 3600, piece_rows))})
            for i in range(1, 29):
                piece[f"V{i}"] = rng.normal(size=piece_rows)
            piece["Amount"] = rng.exponential(90, piece_rows).round(2)
            piece["Class"] = (rng.random(piece_rows) < 0.0017).astype(int)
            piece.to_csv(handle, index=False, header=rows == 0, float_format="%.6f")
            rows, start = rows + piece_rows, start + 3600
    return rows


def measure(csv: Path, chunk_size: int) -> dict[str, object]:
    """Run in the child: import and report throughput and this process's peak RSS."""
    from fraudops.data.importer import import_dataset

    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = import_dataset(csv, MAPPING, Path(tmp) / "out.parquet", chunk_size=chunk_size)
        out_mb = (Path(tmp) / "out.parquet").stat().st_size / 1e6
    return {
        "csv_mb": round(csv.stat().st_size / 1e6, 1),
        "rows": report.rows_read,
        "chunk_size": chunk_size,
        "seconds": round(report.seconds, 2),
        "rows_per_second": round(report.rows_per_second),
        "mb_per_second": round(csv.stat().st_size / 1e6 / report.seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_after_imports_mb": round(before / 1024),
        "parquet_mb": round(out_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--csv", type=Path, default=Path(tempfile.gettempdir()) / "fraudops-bench.csv"
    )
    parser.add_argument("--size-mb", type=float, default=200)
    parser.add_argument("--chunk-size", type=int, nargs="+", default=[50_000])
    parser.add_argument("--json", type=Path, help=f"default: {DEFAULT_JSON} (none when --smoke)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check the script still runs "
                             "(overrides --size-mb, --chunk-size, --csv)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.csv, args.chunk_size[0])))
        return
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
            csv = Path(tmp) / "smoke.csv"
            rows = write_csv(csv, args.size_mb, piece_rows=SMOKE_PIECE_ROWS)
            print(f"wrote {csv} ({rows:,} rows)")
            run_imports(csv, args.chunk_size, args.json)
        return
    if not args.csv.exists():
        print(f"writing {args.csv} ({write_csv(args.csv, args.size_mb):,} rows)")
    run_imports(args.csv, args.chunk_size, args.json or DEFAULT_JSON)


def run_imports(csv: Path, chunk_sizes: list[int], out: Path | None) -> None:
    """Import `csv` once per chunk size (each in a child), print the figures, write the JSON."""
    results = [_run_child(csv, size) for size in chunk_sizes]
    for result in results:
        print(json.dumps(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def _run_child(csv: Path, chunk_size: int) -> dict[str, object]:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--csv",
        str(csv),
        "--chunk-size",
        str(chunk_size),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
