"""Cost of the consumer's state snapshots: a whole state against the changes since the last one.

Builds one partition's online feature state from generated transactions (about one account per
55 rows), then times, against a SQLite store in a temporary folder:

1. the first snapshot, which holds every entry (what every snapshot cost before they became
   incremental): pickling on the polling thread, and the database write (with SQLite's copy of
   its write-ahead log into the database, which otherwise lands on a later commit);
2. a later snapshot after `--recent` more events (10 s of traffic at 1,000 tx/s by default): only
   the accounts, merchants and devices those events touched;
3. a restore: loading the entries and rebuilding the state (a restart or a rebalance).

    python benchmarks/bench_state.py --rows 1000000 --recent 10000 --out state.json
    python benchmarks/bench_state.py --smoke       # tiny sizes: checks the script still runs
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

from consumers.state import PartitionState, checkpoint_for, restore_partition
from fraudops.data import tabular
from fraudops.features import OnlineFeatureState, build_spec
from fraudops.store import BatchWrite, Store

GROUP, TOPIC = "bench", "transactions"
#: What `--smoke` runs: tiny sizes, to check the script still works end to end (not a figure).
SMOKE = {"rows": 3_000, "recent": 300}


def timed_snapshot(partition: PartitionState, store: Store, offset: int) -> dict:
    """The consumer's snapshot of `partition` at `offset` (`checkpoint_for`), timed."""
    started = time.perf_counter()
    checkpoint = checkpoint_for(partition, group_id=GROUP, topic=TOPIC, next_offset=offset,
                                now=time.monotonic(), snapshot_interval_s=0.0)
    pickled = time.perf_counter() - started
    started = time.perf_counter()
    store.write_batch(BatchWrite(checkpoints=[checkpoint]))
    with store.engine.connect() as connection:  # SQLite copies the WAL into the database at
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # some later commit
    written = time.perf_counter() - started
    partition.stored_offset = offset
    return {"entries": len(checkpoint.state),
            "megabytes": round(sum(map(len, checkpoint.state.values())) / 1e6, 2),
            "pickle_ms": round(pickled * 1000, 1), "write_ms": round(written * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="events in the state")
    parser.add_argument("--recent", type=int, default=10_000,
                        help="events between the two snapshots")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check the script still runs "
                             "(overrides --rows, --recent)")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        print("smoke run: tiny sizes, the figures are not measurements", file=sys.stderr)

    from fraudops.data.generate import GeneratorConfig, generate

    frame = tabular.sort_by_time(generate(GeneratorConfig(rows=args.rows + args.recent,
                                                          seed=args.seed)))
    spec = build_spec(tabular.passthrough_names(frame))
    events = list(tabular.to_transactions(frame))
    state = OnlineFeatureState(spec)
    for event in events[:args.rows]:
        state.update(event)
    gc.collect()
    gc.freeze()  # as the consumer does (`consumers.app.HeapFreezer`)

    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        store = Store.from_url(f"sqlite:///{Path(tmp) / 'store.db'}")
        partition = PartitionState(0, state)
        whole = timed_snapshot(partition, store, args.rows)
        for event in events[args.rows:]:
            state.update(event)
        recent = timed_snapshot(partition, store, len(events))
        started = time.perf_counter()
        restored, _ = restore_partition(0, store.load_checkpoints(GROUP, TOPIC)[0],
                                        lambda: OnlineFeatureState(spec),
                                        lambda: store.load_state(GROUP, TOPIC, 0))
        restore_s = time.perf_counter() - started
        store.close()

    result = {
        "events": len(events), "accounts": len(state.accounts),
        "merchants": len(state.velocity["merchant"]), "devices": len(state.velocity["device"]),
        "whole_state_snapshot": whole,
        f"snapshot_after_{args.recent}_events": recent,
        "restore_ms": round(restore_s * 1000, 1),
        "restored_accounts": len(restored.features.accounts),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
