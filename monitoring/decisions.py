"""The decisions log: one JSON line per drift check (trigger or not, and why).

Kept next to the reports (``<reports_dir>/decisions.jsonl``; a local path or an fsspec URL) so
the policy reads its own history back across CronJob runs, and people can read it too. Each line
is a `DecisionEntry`: the drift job writes it, and the policy, ``fraudops drift decisions`` and
the local platform's drift watch (`local.drift_watch`) parse it, so writer and readers share one
definition of the keys.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from monitoring.exceptions import ReportStorageError
from monitoring.policy import HOLD, TRIGGER, PastDecision
from monitoring.trigger import Launch

LOG_NAME = "decisions.jsonl"
SKIPPED = "skipped"

log = logging.getLogger(__name__)


class DecisionEntry(BaseModel):
    """One drift check as logged: the window, what drifted, the policy's decision, the launch.

    A skipped check (too few scored rows) carries only `decided_at`, `decision`, `reason` and
    `detail`. Unknown keys are ignored, so a reader of an older release parses newer lines.
    """

    model_config = ConfigDict(extra="ignore")

    decided_at: datetime
    decision: Literal["trigger", "hold", "skipped"]
    #: Low-cardinality reason code (the metric's label), e.g. ``drift``, ``awaiting_data``.
    reason: str
    #: The policy's sentence (or why the check was skipped).
    detail: str = ""
    report_id: str | None = None
    report_location: str | None = None
    window_start: str | None = None
    window_end: str | None = None
    rows: int | None = None
    drift_share: float | None = None
    drifted_features: list[str] = []
    score_drift: dict[str, bool] = {}
    quality: dict[str, Any] = {}
    champion: dict[str, Any] = {}
    drifted: bool = False
    quality_degraded: bool = False
    consecutive: int = 0
    #: Retraining was started (`launch` says how; its `pid` is the process a command launcher
    #: started, which the local platform follows).
    triggered: bool = False
    launch: Launch | None = None
    launch_error: str | None = None
    #: The job's own remark (e.g. retraining disabled by the settings).
    note: str = ""

    def past(self) -> PastDecision | None:
        """The entry as the policy reads it back (None for a skipped check)."""
        if self.decision not in (TRIGGER, HOLD) or self.window_end is None:
            return None
        return PastDecision(self.decided_at, self.window_end, self.drifted, self.triggered,
                            self.quality_degraded)


def parse_entry(line: str | bytes) -> DecisionEntry:
    """One log line as a `DecisionEntry`; `ValueError` (pydantic's `ValidationError`) if it is
    not one."""
    return DecisionEntry.model_validate_json(line)


class DecisionLog:
    """Append-only JSON lines at `location` (directory path or fsspec URL)."""

    def __init__(self, location: str) -> None:
        self.url = f"{location.rstrip('/')}/{LOG_NAME}"

    def append(self, entry: DecisionEntry) -> None:
        """Add one line (object stores rewrite the file: they cannot append)."""
        line = entry.model_dump_json() + "\n"
        if "://" not in self.url:
            path = Path(self.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)
            return
        self._rewrite(self._read_text() + line)

    def entries(self) -> list[DecisionEntry]:
        """Every logged entry, oldest first (an unreadable line is logged and skipped: one bad
        line must not stop the policy from reading the rest)."""
        out = []
        for number, line in enumerate(self._read_text().splitlines(), 1):
            try:
                out.append(parse_entry(line))
            except ValidationError as error:
                log.warning("%s line %d skipped: %s", self.url, number,
                            error.errors()[0]["msg"] if error.errors() else error)
        return out

    def history(self) -> list[PastDecision]:
        """The entries the policy needs (checks that reached a decision)."""
        return [past for past in (e.past() for e in self.entries()) if past is not None]

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
