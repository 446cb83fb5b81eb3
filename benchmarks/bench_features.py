"""Feature computation rates: batch (training) and online (streaming), on generated data with
its label stream (the label-informed features count it; online, labels are applied as they
become known, interleaved with the transactions).

    python benchmarks/bench_features.py --rows 1000000 --online-rows 100000 --out bench.json
    python benchmarks/bench_features.py --smoke       # tiny sizes: checks the script still runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fraudops.data import tabular
from fraudops.features import OnlineFeatureState, build_spec, compute_batch

#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
SMOKE = {"rows": 2_000, "online_rows": 500}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--online-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check the script still runs "
                             "(overrides --rows, --online-rows)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)

    from fraudops.data.generate import GeneratorConfig, generate
    from fraudops.data.labels import generate_labels, to_labels

    config = GeneratorConfig(rows=args.rows, seed=args.seed)
    frame = tabular.sort_by_time(generate(config))
    labels = generate_labels(frame, config.seed, config.labels)
    spec = build_spec(tabular.passthrough_names(frame))

    started = time.perf_counter()
    compute_batch(frame, spec)
    no_labels_seconds = time.perf_counter() - started
    started = time.perf_counter()
    compute_batch(frame, spec, labels=labels)
    batch_seconds = time.perf_counter() - started

    head = frame.head(args.online_rows)
    events = list(tabular.to_transactions(head))
    known = labels[labels["labelled_at"] < head["timestamp"].iloc[-1]]
    verdicts = list(to_labels(known))
    state = OnlineFeatureState(spec)
    started = time.perf_counter()
    next_label = 0
    for event in events:
        while (next_label < len(verdicts)
               and verdicts[next_label].labelled_at < event.timestamp):
            state.apply_label(verdicts[next_label])
            next_label += 1
        state.update(event)
    online_seconds = time.perf_counter() - started

    result = {
        "rows": len(frame),
        "batch_seconds": round(batch_seconds, 3),
        "batch_rows_per_second": round(len(frame) / batch_seconds),
        "batch_seconds_without_labels": round(no_labels_seconds, 3),
        "labels": len(labels),
        "online_rows": len(events),
        "online_labels_applied": next_label,
        "online_rows_per_second": round(len(events) / online_seconds),
        "online_us_per_event": round(online_seconds / len(events) * 1e6, 2),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
