"""Read-only views of the running platform for the live display and the summary.

`StoreProbe` aggregates the decision store (what the consumer decided, with which model) and
`latest_versions` asks the predictor which model versions it serves. Both are cheap enough to
call about once a second while the stream runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from fraudops import protocol
from fraudops.store import Decision, Store


@dataclass(frozen=True)
class StoreSnapshot:
    """Decision counts by outcome and by model version."""

    decided: int = 0
    by_decision: dict[str, int] = field(default_factory=dict)
    by_model: dict[str, int] = field(default_factory=dict)

    def since(self, baseline: StoreSnapshot) -> StoreSnapshot:
        """What was decided after `baseline` (e.g. the stream, without the warm-up replay)."""
        def minus(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
            return {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0)}

        return StoreSnapshot(self.decided - baseline.decided,
                             minus(self.by_decision, baseline.by_decision),
                             minus(self.by_model, baseline.by_model))


class StoreProbe:
    """Aggregate queries over the decision store (SQLite in WAL mode reads beside the writer)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._store: Store | None = None

    def snapshot(self) -> StoreSnapshot:
        """Current counts; an empty snapshot while the consumer has not created the tables."""
        try:
            store = self._open()
            with store.engine.connect() as connection:
                by_decision = dict(connection.execute(
                    select(Decision.decision, func.count()).group_by(Decision.decision)).all())
                by_model = dict(connection.execute(
                    select(Decision.model_version, func.count())
                    .group_by(Decision.model_version)).all())
        except SQLAlchemyError:
            return StoreSnapshot()
        return StoreSnapshot(sum(by_decision.values()), by_decision, by_model)

    def decisions(self) -> pd.DataFrame:
        """Every stored decision: id, decision, scores, model version, time stored."""
        columns = ["transaction_id", "decision", "fraud_probability", "anomaly_score",
                   "model_version", "scored_at"]
        try:
            with self._open().engine.connect() as connection:
                rows = connection.execute(select(
                    Decision.transaction_id, Decision.decision, Decision.fraud_probability,
                    Decision.anomaly_score, Decision.model_version, Decision.scored_at)).all()
        except SQLAlchemyError:
            rows = []
        frame = pd.DataFrame(rows, columns=columns)
        frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
        return frame

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _open(self) -> Store:
        if self._store is None:
            # The consumer owns the schema; the probe never creates tables.
            self._store = Store.from_url(self._url, create=False)
        return self._store


def served_versions(predictor_url: str, timeout_s: float = 2.0) -> str | None:
    """``"<sequence>/<autoencoder>"`` model versions the predictor serves; None if unreachable."""
    try:
        response = httpx.get(predictor_url + protocol.metadata_path(), timeout=timeout_s)
        response.raise_for_status()
        info = protocol.ModelInfo.from_metadata(response.json())
    except (httpx.HTTPError, ValueError):
        return None
    return info.model_versions
