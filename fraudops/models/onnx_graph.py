"""ONNX graphs of the two models, for the predictor's optional ONNX Runtime backend.

Training exports each model's scoring graph beside its weights (``model.onnx`` in the checkpoint
directory, so MLflow logs it with the model): the sequence model's logit from (x [B, K, F],
mask [B, K]) and the autoencoder's scaled residuals from the current transaction [B, F] (the
anomaly score is their mean, taken by `anomaly_scores`), with the batch dimension dynamic.
Every export is checked against the torch module in float32 on inputs drawn from the model's
own normalisation statistics (histories of every length); a graph that differs by more than
`TOLERANCE` is refused, not logged.

Unlike torch's float32 kernels, these graphs give a row the same bits whatever batch it is in,
so the scorer runs them without padding batches to a fixed shape when a check at load agrees
(see `Scorer`): a single transaction costs a one-row pass. It is CPU-only here: a GPU keeps the
torch path.
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
#: Each graph's output: the sequence model's logit [B]; the autoencoder's residuals [B, F].
#: The name changes with the export, so an older one is exported again on load (`graph_output`):
#: the sequence graph's was "score" until its steps were moved by row copies, not gathered
#: element by element (2026-12-08; the same outputs, bit for bit, in 20% less time).
SEQUENCE_OUTPUT = "logit"
AUTOENCODER_OUTPUT = "residual"


class OnnxExportError(ModelError):
    """A model could not be exported, or its graph disagrees with the torch module."""


class _Residuals(nn.Module):
    """The autoencoder's scaled residuals per feature (`Autoencoder.residuals`) as the graph's
    forward; `anomaly_scores` turns them into the anomaly score outside the graph.

    The mean over features is not in the graph: ONNX Runtime's ReduceMean gave a row a result
    that depended, in the last bit, on the row's place in a batch (15 of 64 rows moved when a
    block was shuffled), and a matrix product with a column of 1/F one that depended on the
    batch's size (17 of 219 sizes and offsets), either of which breaks the scorer's batch
    invariance. The residuals come from row-wise products and elementwise operations, which
    gave every row the same bits in every batch tried (the scorer checks it again at load).
    """

    def __init__(self, autoencoder: Autoencoder):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.residuals(current)


def anomaly_scores(residual: np.ndarray, loc: float, scale: float) -> np.ndarray:
    """`Autoencoder.anomaly_score` from the autoencoder graph's residuals [B, F], in float32.
    numpy reduces each row of a C-ordered array on its own, so a row's score never depends on
    the rows beside it."""
    residual = np.ascontiguousarray(residual, dtype=np.float32)
    error = np.mean(residual * residual, axis=1, dtype=np.float32)
    log_error = np.log(error + np.float32(EPS))
    return ((log_error - np.float32(loc)) / np.float32(scale)).astype(np.float32)


def export_onnx(bundle: ModelBundle, seed: int = 0) -> bytes:
    """The scoring graph of `bundle`'s model (see the module docstring), checked against it."""
    graph, names, inputs = _scoring_graph(bundle, seed)
    output = graph_output(bundle.kind)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter (dynamo=False) handles the LSTM without onnxscript;
            # torch marks it deprecated in favour of torch.export, which it is not yet here.
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, tuple(torch.from_numpy(a) for a in inputs), buffer,
                              dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=[output],
                              dynamic_axes={**{n: {0: "rows"} for n in names},
                                            output: {0: "rows"}})
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
        return _Residuals(module).eval(), ["current"], (np.ascontiguousarray(x[:, -1, :]),)
    raise OnnxExportError(f"no ONNX graph for model kind {bundle.kind!r}")


def graph_output(kind: str) -> str:
    """The output name of the current export of a `kind` model's graph (an older export, whose
    output has another name, is exported again on load)."""
    from fraudops.models.checkpoint import AUTOENCODER_KIND

    return AUTOENCODER_OUTPUT if kind == AUTOENCODER_KIND else SEQUENCE_OUTPUT


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
