"""The models' ONNX graphs: exported checked, saved with the checkpoint, served by ONNX Runtime
with the guarantees of the torch path (same scores within 1e-5, batch-invariant blocks)."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest

from fraudops.models import load_checkpoint, load_scorer, save_checkpoint
from fraudops.models.checkpoint import ONNX_FILE
from fraudops.models.onnx_graph import (
    OnnxExportError,
    anomaly_scores,
    check_graph,
    check_inputs,
    export_onnx,
    session,
)
from fraudops.models.untrained import write_untrained_pair

K, F = 16, 23
SPEC = {"version": "test-1", "fingerprint": "abc", "names": [f"f{i}" for i in range(F)]}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """An untrained pair (realistic sizes) saved without graphs, and the rows it was fitted on."""
    tmp = tmp_path_factory.mktemp("onnx")
    rows = np.random.default_rng(0).lognormal(size=(3000, F)).astype(np.float32)
    seq_dir, ae_dir = write_untrained_pair(tmp, SPEC, rows, K)
    return load_checkpoint(seq_dir), load_checkpoint(ae_dir), tmp


def test_checkpoints_without_a_graph_load_as_before(pair):
    sequence, autoencoder, _ = pair
    assert sequence.onnx is None and autoencoder.onnx is None


@pytest.mark.parametrize("role", [0, 1])
def test_export_matches_torch_on_new_inputs(pair, role):
    import torch

    bundle = pair[role]
    graph = export_onnx(bundle)
    x, mask = check_inputs(bundle.module, K, 300, seed=11)  # not the export's own check rows
    with torch.inference_mode():
        if bundle.kind == "lstm_cnn":
            expected = bundle.module(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
            got = session(graph).run(None, {"x": x, "mask": mask})[0]
        else:
            current = np.ascontiguousarray(x[:, -1, :])
            expected = bundle.module.anomaly_score(torch.from_numpy(current)).numpy()
            residual = session(graph).run(None, {"current": current})[0]
            assert residual.shape == (300, F)
            got = anomaly_scores(residual, float(bundle.module.score_loc),
                                 float(bundle.module.score_scale))
    assert got.shape == expected.shape == (300,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_graph_that_disagrees_with_its_model_is_refused(pair):
    """The check is real: another model's graph (other weights) fails it."""
    sequence, _, tmp = pair
    rows = np.random.default_rng(5).lognormal(size=(3000, F)).astype(np.float32)
    other_dir, _ = write_untrained_pair(tmp / "other", SPEC, rows, K, seed=9)
    other_graph = export_onnx(load_checkpoint(other_dir))
    with pytest.raises(OnnxExportError, match="differs from the torch model"):
        check_graph(sequence, other_graph)


def test_the_graph_is_saved_and_loaded_with_the_checkpoint(pair, tmp_path):
    sequence, _, _ = pair
    sequence.onnx = export_onnx(sequence)
    try:
        directory = save_checkpoint(sequence, tmp_path / "seq")
        assert (directory / ONNX_FILE).read_bytes() == sequence.onnx
        assert load_checkpoint(directory).onnx == sequence.onnx
    finally:
        sequence.onnx = None


def _scorers(tmp, block_rows=64):
    seq, ae = str(tmp / "sequence"), str(tmp / "autoencoder")
    options = {"device": "cpu", "expected_spec_version": "test-1", "exact": False,
               "block_rows": block_rows}
    return (load_scorer(seq, ae, **options),
            load_scorer(seq, ae, **options, backend="onnxruntime"))


def test_onnxruntime_scores_as_torch_does(pair, caplog):
    _, _, tmp = pair
    with caplog.at_level(logging.WARNING, logger="fraudops.models.scorer"):
        torch_scorer, onnx_scorer = _scorers(tmp)
    # These checkpoints predate their graphs: exported on load, and said so.
    assert caplog.text.count("no ONNX graph") == 2
    x, mask = check_inputs(torch_scorer.sequence_model, K, 500, seed=3)
    a, b = torch_scorer.score(x, mask), onnx_scorer.score(x, mask)
    np.testing.assert_allclose(b.fraud_probability, a.fraud_probability, atol=1e-5)
    np.testing.assert_allclose(b.anomaly_score, a.anomaly_score, rtol=1e-5, atol=1e-5)
    assert (a.decision == b.decision).mean() > 0.99


@pytest.mark.parametrize("block_rows", [64, 32])
def test_onnxruntime_blocks_are_batch_invariant(pair, block_rows):
    """As for torch (tests/models/test_scorer.py): a row scores bit for bit the same in
    shuffled batches of any size, so a redone batch publishes the same decisions."""
    _, _, tmp = pair
    _, scorer = _scorers(tmp, block_rows)
    x, mask = check_inputs(scorer.sequence_model, K, 600, seed=4)
    whole = scorer.score(x, mask)
    order = np.random.default_rng(2).permutation(len(x))
    differing = 0
    for size in (1, 7, 17, 64, 65, 333):
        for start in range(0, len(x), size):
            rows = order[start:start + size]
            part = scorer.score(x[rows], mask[rows])
            differing += int((part.fraud_probability != whole.fraud_probability[rows]).sum())
            differing += int((part.anomaly_score != whole.anomaly_score[rows]).sum())
    assert differing == 0


def test_onnxruntime_scores_a_batch_in_one_unpadded_pass(pair, monkeypatch):
    """The graphs are batch-invariant here (checked at load), so a single transaction is a
    one-row pass and a batch of 70 one pass of 70, not passes padded to `block_rows`."""
    _, _, tmp = pair
    _, scorer = _scorers(tmp, block_rows=64)
    assert scorer.batch_invariant
    sequence = scorer._sessions[0]
    seen = []

    class Counting:
        def run(self, outputs, feeds):
            seen.append(len(feeds["x"]))
            return sequence.run(outputs, feeds)

    monkeypatch.setattr(scorer, "_sessions", (Counting(), scorer._sessions[1]))
    x, mask = check_inputs(scorer.sequence_model, K, 70, seed=6)
    scorer.score(x[:1], mask[:1])
    scorer.score(x, mask)
    assert seen == [1, 70]


def test_a_graph_whose_rows_depend_on_the_batch_is_run_in_padded_blocks(pair, monkeypatch,
                                                                         caplog):
    """Where the check at load fails (here a graph made to add its batch size to every
    logit), the scorer falls back to fixed-shape passes, and rows are invariant again."""
    _, _, tmp = pair
    real = {}

    class BatchDependent:
        def __init__(self, inner):
            self.inner = inner

        def run(self, outputs, feeds):
            logit = self.inner.run(outputs, feeds)[0]
            return [logit + np.float32(1e-3) * len(logit)]

        def get_outputs(self):
            return self.inner.get_outputs()

    import fraudops.models.scorer as scorer_module

    def session_then_wrap(bundle, threads):
        made = real.setdefault(bundle.kind, original(bundle, threads))
        return BatchDependent(made) if bundle.kind == "lstm_cnn" else made

    original = scorer_module._onnx_session
    monkeypatch.setattr(scorer_module, "_onnx_session", session_then_wrap)
    with caplog.at_level(logging.WARNING, logger="fraudops.models.scorer"):
        _, scorer = _scorers(tmp, block_rows=32)
    assert not scorer.batch_invariant
    assert "padded passes of 32 rows" in caplog.text
    x, mask = check_inputs(scorer.sequence_model, K, 100, seed=7)
    whole = scorer.score(x, mask)
    single = scorer.score(x[40:41], mask[40:41])
    assert single.fraud_probability[0] == whole.fraud_probability[40]


def test_an_older_export_is_exported_again_on_load(pair, tmp_path, caplog):
    """Graphs logged before the autoencoder's graph gave residuals (its output was the score)
    are exported again, said so, and score as torch does."""
    import copy

    import torch

    from fraudops.models.onnx_graph import OPSET

    _, autoencoder, tmp = pair

    class OldScore(torch.nn.Module):
        def __init__(self, ae):
            super().__init__()
            self.ae = ae

        def forward(self, current):
            return self.ae.anomaly_score(current)

    module = copy.deepcopy(autoencoder.module).float().eval()
    buffer = io.BytesIO()
    torch.onnx.export(OldScore(module), (torch.zeros(2, F),), buffer, dynamo=False,
                      opset_version=OPSET, input_names=["current"], output_names=["score"],
                      dynamic_axes={"current": {0: "rows"}, "score": {0: "rows"}})
    old = copy.copy(autoencoder)
    old.onnx = buffer.getvalue()
    directory = save_checkpoint(old, tmp_path / "autoencoder")
    with caplog.at_level(logging.WARNING, logger="fraudops.models.scorer"):
        scorer = load_scorer(str(tmp / "sequence"), str(directory), device="cpu",
                             expected_spec_version="test-1", exact=False, block_rows=64,
                             backend="onnxruntime")
    assert "older export (output 'score', not 'residual')" in caplog.text
    torch_scorer = load_scorer(str(tmp / "sequence"), str(directory), device="cpu",
                               expected_spec_version="test-1", exact=False, block_rows=64)
    x, mask = check_inputs(scorer.sequence_model, K, 50, seed=8)
    np.testing.assert_allclose(scorer.score(x, mask).anomaly_score,
                               torch_scorer.score(x, mask).anomaly_score, rtol=1e-5, atol=1e-5)


def test_onnxruntime_needs_float32_on_the_cpu(pair):
    _, _, tmp = pair
    with pytest.raises(ValueError, match="float32"):
        load_scorer(str(tmp / "sequence"), str(tmp / "autoencoder"), device="cpu",
                    expected_spec_version="test-1", exact=True, backend="onnxruntime")
