import numpy as np
import pytest
import torch

from fraudops.models import LSTMCNN, LSTMCNNConfig, seed_everything
from fraudops.models.lstm_cnn import left_align


def _model(dim=5, seed=0):
    seed_everything(seed)
    return LSTMCNN(LSTMCNNConfig(input_dim=dim)).eval()


def _batch(b=4, k=6, f=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, k, f, generator=g)
    mask = torch.ones(b, k, dtype=torch.bool)
    mask[0, :3] = False
    mask[1, :5] = False  # only the scored transaction itself
    return x, mask


def test_output_is_one_logit_per_row():
    x, mask = _batch()
    assert _model()(x, mask).shape == (4,)


def test_padding_content_does_not_change_output():
    model = _model()
    x, mask = _batch()
    garbage = x.clone()
    garbage[~mask] = 1e3
    assert torch.allclose(model(x, mask), model(garbage, mask), atol=1e-6)


def test_extra_front_padding_does_not_change_output():
    model = _model()
    x, mask = _batch(k=4)
    padded = torch.cat([torch.zeros(4, 5, 5), x], dim=1)
    padded_mask = torch.cat([torch.zeros(4, 5, dtype=torch.bool), mask], dim=1)
    assert torch.allclose(model(x, mask), model(padded, padded_mask), atol=1e-6)


def test_history_changes_output():
    model = _model()
    x, mask = _batch()
    other = x.clone()
    other[3, 0] += 5.0  # row 3 has full history: an older transaction matters
    out, out_other = model(x, mask), model(other, mask)
    assert not torch.isclose(out[3], out_other[3])
    assert torch.allclose(out[:3], out_other[:3])


def test_same_seed_same_weights_and_output():
    x, mask = _batch()
    assert torch.equal(_model(seed=7)(x, mask), _model(seed=7)(x, mask))
    assert not torch.equal(_model(seed=7)(x, mask), _model(seed=8)(x, mask))


def test_left_align_moves_real_steps_to_front():
    steps = torch.arange(1, 9, dtype=torch.float32).view(2, 4, 1).transpose(0, 1)  # [K, B, 1]
    mask = torch.tensor([[False, False, True, True], [False, True, True, True]])
    aligned, lengths = left_align(steps, mask)
    assert aligned.squeeze(-1).T.tolist() == [[3.0, 4.0, 0.0, 0.0], [6.0, 7.0, 8.0, 0.0]]
    assert lengths.tolist() == [2, 3]


def _aligned_reference(model: LSTMCNN, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first formulation of the forward pass, written out: every row's real steps moved
    to the front before the convolutions, which then see each sequence unpadded."""
    z = model.normalize(x) * mask.unsqueeze(-1).to(x.dtype)
    lengths = mask.sum(dim=1)
    rows = []
    for i in range(len(x)):
        steps = int(lengths[i])
        seq = z[i, -steps:].T.unsqueeze(0)  # [1, F, L]: the real steps alone
        for layer in model.convs:
            seq = torch.relu(layer(seq))
        states, _ = model.lstm(seq.permute(2, 0, 1))  # [L, 1, H]
        rows.append(torch.cat([states[-1, 0], seq[0, :, -1], z[i, -1]]))
    logit = model.head(torch.stack(rows)).squeeze(-1)
    if model.wide is not None:
        logit = logit + model.wide(z[:, -1]).squeeze(-1)
    return logit


@pytest.mark.parametrize("wide", [0, 16])
def test_forward_scores_each_row_as_its_unpadded_sequence(wide):
    """The batched pass (convolutions over the front-padded rows, the LSTM over left-aligned
    steps) gives what each row's real steps alone give, for histories of every length."""
    seed_everything(3)
    model = LSTMCNN(LSTMCNNConfig(input_dim=5, wide_size=wide)).eval()
    k = 6
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2 * k, k, 5, generator=g)
    lengths = torch.arange(2 * k) % k + 1
    mask = torch.arange(k).unsqueeze(0) >= (k - lengths).unsqueeze(1)
    x[~mask] = 0.0
    with torch.no_grad():
        assert torch.allclose(model(x, mask), _aligned_reference(model, x, mask), atol=1e-6)
        model.double()
        assert torch.allclose(model(x.double(), mask), _aligned_reference(model, x.double(), mask),
                              atol=1e-12)


def test_standardizer_uses_training_statistics():
    model = _model(dim=2)
    rows = np.array([[0.0, 10.0], [2.0, 10.0]])
    model.normalize.fit(rows)
    out = model.normalize(torch.tensor([[2.0, 10.0]]))
    assert out[0].tolist() == pytest.approx([1.0, 0.0])  # constant feature: scale 1, not inf


def _wide_model(dim=5, seed=0):
    seed_everything(seed)
    return LSTMCNN(LSTMCNNConfig(input_dim=dim, wide_size=8)).eval()


def test_wide_branch_scores_the_current_transaction_without_history():
    model = _wide_model()
    x, mask = _batch()
    alone = torch.zeros_like(mask)
    alone[:, -1] = True  # length-one sequences: imported data without an account id
    changed = x.clone()
    changed[:, -1, 0] += 3.0
    assert model(x, alone).shape == (4,)
    assert not torch.allclose(model(x, alone), model(changed, alone))
    history_changed = x.clone()
    history_changed[:, 0] += 5.0  # history is invisible to a length-one sequence
    assert torch.allclose(model(x, alone), model(history_changed, alone), atol=1e-6)


def test_wide_branch_adds_its_logit_to_the_sequence_head():
    model = _wide_model()
    x, mask = _batch()
    with torch.no_grad():
        full = model(x, mask)
        model.wide[-1].bias += 1.5
        assert torch.allclose(model(x, mask), full + 1.5, atol=1e-5)


def test_config_without_wide_field_builds_the_first_architecture():
    stored = LSTMCNNConfig(input_dim=5).to_dict()
    stored.pop("wide_size")  # a checkpoint written before the wide branch existed
    model = LSTMCNN(LSTMCNNConfig(**stored))
    assert model.wide is None
    assert not any(key.startswith("wide.") for key in model.state_dict())


def test_a_first_format_checkpoint_still_loads(tmp_path):
    import json

    from fraudops.models import ModelBundle, load_checkpoint, save_checkpoint
    from fraudops.models.checkpoint import META_FILE

    model = _model()
    save_checkpoint(ModelBundle(model, "lstm_cnn", {"version": "x"}, 6), tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["format"] = "fraudops-model/1"
    meta["config"].pop("wide_size")  # as written before the wide branch existed
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    x, mask = _batch()
    assert torch.equal(load_checkpoint(tmp_path).module(x, mask), model(x, mask))
