"""The decisions log: one JSON line per drift check (trigger or not, and why).

Kept next to the reports (``<reports_dir>/decisions.jsonl``; a local path or an fsspec URL) so
the policy reads its own history back across CronJob runs, and people can read it too.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from monitoring.exceptions import ReportStorageError
from monitoring.policy import PastDecision

LOG_NAME = "decisions.jsonl"


class DecisionLog:
    """Append-only JSON lines at `location` (directory path or fsspec URL)."""

    def __init__(self, location: str) -> None:
        self.url = f"{location.rstrip('/')}/{LOG_NAME}"

    def append(self, entry: dict) -> None:
        line = json.dumps(entry, default=str) + "\n"
        if "://" not in self.url:
            path = Path(self.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)
            return
        self._rewrite(self._read_text() + line)  # object stores cannot append

    def entries(self) -> list[dict]:
        """Every logged entry, oldest first (unreadable lines are skipped, not fatal)."""
        out = []
        for line in self._read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def history(self) -> list[PastDecision]:
        """The entries the policy needs (checks that reached a decision)."""
        return [PastDecision(datetime.fromisoformat(e["decided_at"]), e["window_end"],
                             bool(e["drifted"]), bool(e["triggered"]),
                             bool(e.get("quality_degraded")))
                for e in self.entries() if e.get("decision") in ("trigger", "hold")]

    def _read_text(self) -> str:
        if "://" not in self.url:
            path = Path(self.url)
            return path.read_text(encoding="utf-8") if path.exists() else ""
        fs, path = _fs(self.url)
        return fs.cat_file(path).decode() if fs.exists(path) else ""

    def _rewrite(self, text: str) -> None:
        fs, path = _fs(self.url)
        with fs.open(path, "w") as handle:
            handle.write(text)


def _fs(url: str):
    try:
        import fsspec

        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:
        raise ReportStorageError(f"cannot open {url}: {error}") from error
