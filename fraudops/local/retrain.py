"""The retraining command the local drift job launches: the pipeline, minus trigger metadata.

    python -m fraudops.local.retrain PIPELINE_ARGV... --param key=value ...

The drift job's command launcher appends every parameter of its retraining request, including
descriptive ones (why it triggered, which report, which champion) that the training pipeline
does not declare; kfp refuses undeclared pipeline parameters. This adapter logs those and runs
the pipeline command with the rest (it replaces itself with the pipeline process, so the pid
the drift job reports stays the pipeline's).
"""

from __future__ import annotations

import os
import sys

#: Parameters of a drift job's retraining request that describe the trigger (not inputs).
TRIGGER_METADATA = frozenset({"trigger_reason", "drift_report_id", "champion_version"})


def split_params(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv without trigger-metadata ``--param`` pairs, the metadata that was dropped)."""
    kept: list[str] = []
    dropped: dict[str, str] = {}
    items = iter(argv)
    for item in items:
        if item != "--param":
            kept.append(item)
            continue
        value = next(items, "")
        name, _, rest = value.partition("=")
        if name in TRIGGER_METADATA:
            dropped[name] = rest
        else:
            kept += ["--param", value]
    return kept, dropped


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m fraudops.local.retrain PIPELINE_ARGV...", file=sys.stderr)
        raise SystemExit(2)
    command, dropped = split_params(args)
    if dropped:
        print(f"retraining triggered: {dropped}", file=sys.stderr, flush=True)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
