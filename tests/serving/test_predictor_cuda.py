"""The GPU inference path: on CUDA, the scorer and the real predictor give the CPU's answers.

Needs an NVIDIA GPU, so these tests are skipped where CUDA is not available (CI has none). Run
them on a GPU machine with ``pytest -m cuda``.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from serving_helpers import random_batch

from fraudops import protocol
from fraudops.features import build_spec
from fraudops.models import Scorer, load_scorer
from fraudops.models.untrained import write_untrained_pair
from serving.predictor import ServedModel

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
]
# cuDNN may use TF32 for the convolution and other kernels than the CPU: close, not equal.
PROBABILITY_ATOL = 2e-3
ANOMALY_RTOL = 2e-3


@pytest.fixture(scope="module")
def default_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, int]:
    """Models of the default (served) architecture, weights untrained, normalisation fitted."""
    spec = build_spec()
    rows = np.random.default_rng(0).normal(1.0, 2.0, size=(2048, spec.dim)).astype(np.float32)
    seq_dir, ae_dir = write_untrained_pair(tmp_path_factory.mktemp("models"), spec, rows, 8,
                                           calibrate_fpr=0.05)
    return str(seq_dir), str(ae_dir), spec.dim


def _stable(cpu_probability: np.ndarray, cpu_anomaly: np.ndarray, scorer: Scorer) -> np.ndarray:
    """Rows whose decision cannot flip within the tolerances (not next to a threshold)."""
    policy = scorer.policy
    near = np.zeros(len(cpu_probability), dtype=bool)
    for threshold in (policy.block_probability, policy.review_probability):
        near |= np.abs(cpu_probability - threshold) <= PROBABILITY_ATOL
    if np.isfinite(policy.review_anomaly):
        tolerance = ANOMALY_RTOL * abs(policy.review_anomaly)
        near |= np.abs(cpu_anomaly - policy.review_anomaly) <= tolerance
    return ~near


def test_scorer_on_cuda_matches_cpu(default_models: tuple[str, str, int]) -> None:
    sequence, autoencoder, dim = default_models
    cpu = load_scorer(sequence, autoencoder, device="cpu")
    gpu = load_scorer(sequence, autoencoder, device="cuda")
    assert gpu.device.type == "cuda"
    assert all(p.is_cuda for p in gpu.sequence_model.parameters())
    # More rows than one forward chunk, so the chunking runs on the device too.
    x, mask = random_batch(10_000, 8, dim)
    expected, got = cpu.score(x, mask, reasons=3), gpu.score(x, mask, reasons=3)
    np.testing.assert_allclose(got.fraud_probability, expected.fraud_probability,
                               atol=PROBABILITY_ATOL)
    np.testing.assert_allclose(got.anomaly_score, expected.anomaly_score, rtol=ANOMALY_RTOL,
                               atol=1e-5)
    stable = _stable(expected.fraud_probability, expected.anomaly_score, cpu)
    assert stable.mean() > 0.9
    assert (got.decision[stable] == expected.decision[stable]).all()
    same_reasons = np.mean([a == b for a, b in zip(got.reason_codes, expected.reason_codes,
                                                   strict=True)])
    assert same_reasons > 0.95


def test_predictor_serves_on_cuda(default_models: tuple[str, str, int], predictor_factory
                                  ) -> None:
    sequence, autoencoder, dim = default_models
    service = predictor_factory(sequence, autoencoder, FRAUDOPS_PREDICTOR__DEVICE="cuda",
                                FRAUDOPS_PREDICTOR__TORCH_THREADS="0")
    doc = httpx.get(service.url + protocol.metadata_path()).json()
    assert doc["parameters"][protocol.PARAM_DEVICE].startswith("cuda"), doc["parameters"]
    x, mask = random_batch(512, 8, dim, seed=5)
    body, headers = protocol.encode_request(x, mask, binary=True, request_id="gpu-1")
    response = httpx.post(service.url + protocol.infer_path(), content=body, headers=headers)
    assert response.status_code == 200, response.text
    served = protocol.decode_response(response.content, response.headers)
    # The CPU reference goes through the same serving code, reason codes included (their
    # feature weights come from a gradient probe that runs on the model's device).
    expected = ServedModel.build(load_scorer(sequence, autoencoder, device="cpu")).score(x, mask)
    np.testing.assert_allclose(served.fraud_probability, expected.fraud_probability,
                               atol=PROBABILITY_ATOL)
    np.testing.assert_allclose(served.anomaly_score, expected.anomaly_score,
                               rtol=ANOMALY_RTOL, atol=1e-5)
    same_reasons = np.mean([tuple(a) == tuple(b.split(",")) if b else not a
                            for a, b in zip(served.reason_codes, expected.reason_codes,
                                            strict=True)])
    assert same_reasons > 0.95
