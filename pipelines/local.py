"""Run the whole pipeline offline with kfp.local (each component a subprocess, this venv)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from fraudops.settings import PIPELINE_IMAGE
from fraudops.training.retrain import TrainingOutcome, outcome_from_dict
from pipelines.pipeline import build_pipeline

log = logging.getLogger(__name__)


def run_local(params: dict[str, object], pipeline_root: Path, image: str = PIPELINE_IMAGE
              ) -> TrainingOutcome:
    """Run the pipeline with `params` under kfp.local; returns the gate's outcome.

    SubprocessRunner(use_venv=False): components run with this interpreter and its packages
    (kfp's venv mode would pip-install, which needs the network). The components inherit this
    process's environment, so FRAUDOPS_* settings (MLflow store, home) apply to them.
    """
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)
    started = time.perf_counter()
    task = build_pipeline(image)(**params)
    outcome = outcome_from_dict(json.loads(Path(task.output.path).read_text()))
    outcome.seconds = {"pipeline": round(time.perf_counter() - started, 3)}
    log.info("pipeline finished in %.1f s: %s", outcome.seconds["pipeline"],
             "promoted" if outcome.promoted else "not promoted")
    return outcome
