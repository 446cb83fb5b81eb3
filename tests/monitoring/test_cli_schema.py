"""The drift job refuses a decision store not at this release's schema, as the consumer and the
gateway do: a clear error naming `fraudops db upgrade`, and the database left as it was (the job
never migrates it itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from fraudops.store import Store
from monitoring.cli import app


def _env(tmp_path: Path, db: Path) -> dict[str, str]:
    return {"FRAUDOPS_HOME": str(tmp_path / "home"),
            "FRAUDOPS_DATABASE__URL": f"sqlite:///{db}",
            "FRAUDOPS_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "FRAUDOPS_DRIFT__LOG_TO_MLFLOW": "false", "FRAUDOPS_RETRAIN__LAUNCHER": "none"}


@pytest.mark.parametrize("command", [["check"], ["watch", "--max-checks", "1",
                                                  "--metrics-port", "0"]])
def test_the_drift_job_refuses_an_unmigrated_store(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "store.db"
    create_engine(f"sqlite:///{db}").connect().close()  # an empty database: no schema version
    result = CliRunner().invoke(app, command, env=_env(tmp_path, db))
    assert result.exit_code == 2, result.output
    assert "has no schema version" in result.output
    assert "run `fraudops db upgrade`" in result.output
    assert inspect(create_engine(f"sqlite:///{db}")).get_table_names() == []  # left as it was
    assert not (tmp_path / "mlflow.db").exists()  # refused before anything else was opened


@pytest.mark.integration  # an MLflow registry (SQLite): ~30 s on a loaded 2-core machine
def test_a_migrated_store_is_accepted(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    Store.from_url(f"sqlite:///{db}").close()  # what `fraudops db upgrade` does
    result = CliRunner().invoke(app, ["check", "--json"], env=_env(tmp_path, db))
    # Past the store: the job asks the (empty) registry for the champion it compares against.
    assert result.exit_code == 2, result.output
    assert "drift check: no model version fraud-lstm-cnn@champion" in result.output
    assert "fraudops db upgrade" not in result.output
