"""Training on the GPU: both models learn on CUDA and their checkpoints serve on the CPU.

Needs an NVIDIA GPU, so it is skipped where CUDA is not available (CI has none). Run it on a GPU
machine with ``pytest -m cuda``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fraudops.models import Scorer
from fraudops.training.evaluation import evaluate
from fraudops.training.workflow import (
    assemble_scorer,
    fit_autoencoder,
    fit_sequence,
    holdout_rows,
    load_models,
    save_models,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
]


def test_models_trained_on_cuda_learn_and_load_on_cpu(small_features, tiny_config, tmp_path):
    config = tiny_config.model_copy(update={"device": "cuda"})
    sequence = fit_sequence(small_features, config)
    autoencoder = fit_autoencoder(small_features, config)
    gpu = assemble_scorer(sequence.bundle, autoencoder.bundle, small_features, config)
    assert gpu.device.type == "cuda"

    rows = holdout_rows(small_features, config)
    gpu_eval = evaluate(gpu, small_features, rows)
    base_rate = float(gpu_eval.labels.mean())
    # Better than ranking at random (AUPRC = fraud rate): the CUDA training loop learned.
    assert sequence.summary["best_validation_auprc"] > 2 * base_rate

    save_models(sequence.bundle, autoencoder.bundle, tmp_path)
    cpu = Scorer(*load_models(tmp_path), device="cpu")
    cpu_eval = evaluate(cpu, small_features, rows)
    np.testing.assert_allclose(cpu_eval.fraud_probability, gpu_eval.fraud_probability,
                               atol=2e-3)
    np.testing.assert_allclose(cpu_eval.anomaly_score, gpu_eval.anomaly_score, rtol=2e-3,
                               atol=1e-5)
    assert cpu.policy == gpu.policy  # the fitted policy travels in the checkpoint
