#!/usr/bin/env python3
"""Copy the monitoring files the Helm chart embeds into helm/fraudops/files/.

Helm's .Files.Get reads only inside the chart directory, so the chart carries copies of the
Grafana dashboard and the Prometheus rules whose sources live under monitoring/. Run after
editing a source; tests/k8s fails while a copy differs from its source.

    python tools/sync_chart_files.py          # copy
    python tools/sync_chart_files.py --check  # exit 1 if a copy is stale
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_FILES = REPO_ROOT / "helm" / "fraudops" / "files"
# source (repository-relative) -> copy inside the chart
SYNCED = {
    "monitoring/grafana/fraudops-dashboard.json": CHART_FILES / "fraudops-dashboard.json",
    "monitoring/prometheus/rules/fraudops.rules.yaml": CHART_FILES / "fraudops.rules.yaml",
}


def stale() -> list[str]:
    """Sources whose chart copy differs (missing sources are not stale: nothing to copy)."""
    return [source for source, copy in SYNCED.items()
            if (REPO_ROOT / source).exists()
            and (not copy.exists() or copy.read_bytes() != (REPO_ROOT / source).read_bytes())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a copy is out of date")
    args = parser.parse_args(argv)
    outdated = stale()
    if args.check:
        for source in outdated:
            print(f"{SYNCED[source].relative_to(REPO_ROOT)} differs from {source}")
        return 1 if outdated else 0
    for source in outdated:
        shutil.copyfile(REPO_ROOT / source, SYNCED[source])
        print(f"copied {source} -> {SYNCED[source].relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
