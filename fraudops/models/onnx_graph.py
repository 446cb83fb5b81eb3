"""ONNX graphs of the two models, for the predictor's optional ONNX Runtime backend.

Training exports each model's scoring graph beside its weights (``model.onnx`` in the checkpoint
directory, so MLflow logs it with the model): the sequence model's logit from (x [B, K, F],
mask [B, K]) and the autoencoder's anomaly score from the current transaction [B, F], with the
batch dimension dynamic. Every export is checked against the torch module in float32 on inputs
drawn from the model's own normalisation statistics (histories of every length); a graph that
differs by more than `TOLERANCE` is refused, not logged.

ONNX Runtime ran the served pair in 64-row passes twice as fast as torch in float32 on a 2-core
CPU (see the README's predictor section). It is CPU-only here: a GPU keeps the torch path.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fraudops.models.autoencoder import EPS, Autoencoder
from fraudops.models.exceptions import ModelError

if TYPE_CHECKING:
    from fraudops.models.checkpoint import ModelBundle

log = logging.getLogger(__name__)
#: The graph's outputs may differ from torch's (float32) by at most this, absolute and relative.
TOLERANCE = 1e-5
#: ONNX operator set: LSTM, Gather and Clip as ONNX Runtime 1.2x implements them.
OPSET = 17
#: Rows of the export's check.
CHECK_ROWS = 256


class OnnxExportError(ModelError):
    """A model could not be exported, or its graph disagrees with the torch module."""


class _AnomalyScore(nn.Module):
    """The autoencoder's scoring path (`Autoencoder.anomaly_score`) as the graph's forward.

    The mean over features is a matrix product with a column of 1/F: ONNX Runtime's ReduceMean
    gave a row a result that depended, in the last bit, on the row's place in the batch (15 of
    64 rows moved when a block was shuffled), which would break the scorer's batch invariance;
    its matrix products do not.
    """

    def __init__(self, autoencoder: Autoencoder):
        super().__init__()
        self.autoencoder = autoencoder
        dim = autoencoder.config.input_dim
        self.register_buffer("mean_column", torch.full((dim, 1), 1.0 / dim))

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        ae = self.autoencoder
        residual = ae.residuals(current)
        error = ((residual * residual) @ self.mean_column).squeeze(1)
        return (torch.log(error + EPS) - ae.score_loc) / ae.score_scale


def export_onnx(bundle: ModelBundle, seed: int = 0) -> bytes:
    """The scoring graph of `bundle`'s model (see the module docstring), checked against it."""
    graph, names, inputs = _scoring_graph(bundle, seed)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter (dynamo=False) handles the LSTM without onnxscript;
            # torch marks it deprecated in favour of torch.export, which it is not yet here.
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, tuple(torch.from_numpy(a) for a in inputs), buffer,
                              dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=["score"],
                              dynamic_axes={**{n: {0: "rows"} for n in names},
                                            "score": {0: "rows"}})
    except Exception as error:  # the exporter raises many types; all mean the same here
        raise OnnxExportError(f"cannot export the {bundle.kind} model to ONNX: {error}") from error
    model = buffer.getvalue()
    difference = check_graph(bundle, model, seed)
    log.info("exported the %s model to ONNX (%d kB; max difference from torch %.1e)",
             bundle.kind, len(model) // 1024, difference)
    return model


def check_graph(bundle: ModelBundle, model: bytes, seed: int = 0) -> float:
    """The largest difference between `model` (an ONNX graph) and `bundle`'s torch module on
    `CHECK_ROWS` realistic inputs; `OnnxExportError` beyond `TOLERANCE`."""
    graph, names, inputs = _scoring_graph(bundle, seed)
    with torch.inference_mode():
        expected = graph(*(torch.from_numpy(a) for a in inputs)).numpy()
    got = session(model).run(None, dict(zip(names, inputs, strict=True)))[0]
    if got.shape != expected.shape:
        raise OnnxExportError(f"the ONNX graph gives shape {got.shape}, the torch model "
                              f"{expected.shape}")
    difference = float(np.abs(got - expected).max())
    if not np.allclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE):
        raise OnnxExportError(f"the ONNX graph differs from the torch model by up to "
                              f"{difference:.2e} (tolerance {TOLERANCE:g})")
    return difference


def _scoring_graph(bundle: ModelBundle, seed: int
                   ) -> tuple[nn.Module, list[str], tuple[np.ndarray, ...]]:
    """The module to export (a float32 CPU copy), its input names and check inputs."""
    from fraudops.models.checkpoint import AUTOENCODER_KIND, SEQUENCE_KIND

    module = copy.deepcopy(bundle.module).to("cpu", torch.float32).eval()
    x, mask = check_inputs(module, bundle.seq_len, CHECK_ROWS, seed)
    if bundle.kind == SEQUENCE_KIND:
        return module, ["x", "mask"], (x, mask)
    if bundle.kind == AUTOENCODER_KIND:
        return _AnomalyScore(module).eval(), ["current"], (np.ascontiguousarray(x[:, -1, :]),)
    raise OnnxExportError(f"no ONNX graph for model kind {bundle.kind!r}")


def check_inputs(module: nn.Module, seq_len: int, rows: int, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Realistic raw inputs: features around the model's training statistics, front-padded
    histories of every length from 1 to `seq_len`."""
    rng = np.random.default_rng(seed)
    mean = module.normalize.mean.detach().cpu().numpy()
    std = module.normalize.std.detach().cpu().numpy()
    x = (mean + std * rng.normal(size=(rows, seq_len, len(mean)))).astype(np.float32)
    lengths = np.arange(rows) % seq_len + 1
    mask = np.arange(seq_len)[None, :] >= (seq_len - lengths)[:, None]
    x[~mask] = 0.0
    return x, mask


def session(model: bytes, threads: int = 1):
    """An ONNX Runtime CPU session over `model` (`threads` for its operators; 0: its default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: the LSTM export's shape notes are noise
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
