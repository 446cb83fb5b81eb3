"""Helpers of the serving tests: tiny real models on disk, starting and stopping services."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fraudops.features import build_spec
from fraudops.models import DecisionPolicy
from fraudops.models.untrained import TINY_AUTOENCODER, TINY_SEQUENCE, write_untrained_pair
from fraudops.testing import wait_for_http

SEQ_LEN = 8
REPO_ROOT = Path(__file__).resolve().parents[2]


#: The serving CLI (`fraudops serve ...` without the root CLI, which other units extend).
SERVE = [sys.executable, "-m", "serving.cli"]


@dataclass(frozen=True)
class ModelDirs:
    sequence: Path
    autoencoder: Path
    seq_len: int
    dim: int


def write_tiny_models(directory: Path, *, seed: int = 0, seq_len: int = SEQ_LEN,
                      passthrough: tuple[str, ...] = ()) -> ModelDirs:
    """Save an untrained-but-valid sequence model and autoencoder (real classes, real format)."""
    spec = build_spec(passthrough)
    rows = np.random.default_rng(seed).normal(1.0, 2.0, size=(512, spec.dim)).astype(np.float32)
    policy = DecisionPolicy(block_probability=0.6, review_probability=0.45, review_anomaly=2.0)
    seq_dir, ae_dir = write_untrained_pair(
        directory, spec, rows, seq_len, policy=policy, seed=seed, sequence_size=TINY_SEQUENCE,
        autoencoder_size=TINY_AUTOENCODER, calibrate_fpr=0.05)
    return ModelDirs(seq_dir, ae_dir, seq_len, spec.dim)


def random_batch(batch: int, seq_len: int, dim: int, seed: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, size=(batch, seq_len, dim)).astype(np.float32)
    mask = np.ones((batch, seq_len), dtype=bool)
    mask[: batch // 2, : seq_len // 2] = False
    return x, mask


@dataclass
class RunningService:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start_service(args: list[str], env: dict[str, str], ready_url: str, log_path: Path,
                  timeout: float = 60.0) -> subprocess.Popen:
    """Start `fraudops serve ...` as a subprocess and wait until `ready_url` answers 200."""
    full_env = {**os.environ, **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen([*SERVE, *args], env=full_env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        wait_for_http(ready_url, timeout, process=process, log=log_path)
    except RuntimeError as error:
        raise RuntimeError(f"{args}: {error}") from error
    except TimeoutError as error:
        stop_process(process)
        raise TimeoutError(f"{args} not ready after {timeout}s:\n{log_path.read_text()[-4000:]}"
                           ) from error
    return process


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


