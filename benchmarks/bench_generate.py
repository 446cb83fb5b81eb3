"""Benchmark the synthetic generator: rows/s for generating (and writing) N transactions.

Usage: python benchmarks/bench_generate.py [--rows 1000000] [--repeat 3] [--out bench.json]
       python benchmarks/bench_generate.py --smoke       # tiny sizes: checks the script still runs
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from fraudops.data import tabular
from fraudops.data.generate import GeneratorConfig, generate

#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
SMOKE = {"rows": 2_000, "repeat": 1}


def measure(rows: int, seed: int, drift: str) -> dict[str, float]:
    """Seconds to generate the frame and to write it as Parquet, for one run."""
    config = GeneratorConfig(rows=rows, seed=seed, drift=drift)
    began = time.perf_counter()
    frame = generate(config)
    generated = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tabular.write(frame, Path(tmp) / "bench.parquet")
    written = time.perf_counter()
    return {"generate_s": generated - began, "write_s": written - generated,
            "total_s": written - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--drift", default="none")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check the script still runs "
                             "(overrides --rows, --repeat)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)
    runs = [measure(args.rows, seed, args.drift) for seed in range(args.repeat)]
    best = min(runs, key=lambda r: r["total_s"])
    result = {
        "benchmark": "generate", "rows": args.rows, "drift": args.drift, "repeat": args.repeat,
        "best_generate_s": round(best["generate_s"], 3), "best_total_s": round(best["total_s"], 3),
        "rows_per_s_generate": round(args.rows / best["generate_s"]),
        "rows_per_s_total": round(args.rows / best["total_s"]),
        "runs": runs, "python": platform.python_version(), "machine": platform.machine(),
    }
    print(f"generate {args.rows:,} rows: {best['generate_s']:.2f} s "
          f"({result['rows_per_s_generate']:,} rows/s); with Parquet write {best['total_s']:.2f} s "
          f"({result['rows_per_s_total']:,} rows/s), best of {args.repeat}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
