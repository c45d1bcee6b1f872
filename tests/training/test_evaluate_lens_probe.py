"""Grazzi et al.'s logit-lens probe (`evaluate.lens_probe`): the affine map per prompt and layer is exact where a
layer's decoded output is an affine function of the truth, and falls back to the context mean where it is constant."""

import torch
from torch import nn

from icllib.batch import Batch
from icllib.config import ModelConfig, TaskConfig
from icllib.models import build_model
from icllib.tasks import build_task
from icllib.training.evaluate import lens_probe


class AffineLens(nn.Module):
    """Layer 0 decodes to a constant, layer 1 to 3·y − 2, layer 2 to −0.5·y + 1 (y = the true target)."""

    def logit_lens(self, batch: Batch) -> torch.Tensor:
        y = batch.ys.unsqueeze(-1)  # [B, N, 1]
        return torch.stack([torch.full_like(y, 7.0), 3 * y - 2, -0.5 * y + 1])  # [3, B, N, 1]


def test_affine_layers_are_recovered_exactly_and_a_constant_layer_predicts_the_context_mean() -> None:
    task = build_task(TaskConfig("linear_regression", n_dims=8))
    out = lens_probe(AffineLens(), task, 96, torch.Generator().manual_seed(0), n_context=12, n_test=5, fit_from=4,
                     batch_size=40)
    assert out["layer"] == [0, 1, 2]
    assert out["error"][1] < 1e-10 and out["error"][2] < 1e-10  # float32 lens outputs: exact to ~1e-7
    assert abs(out["scale"][1] - 1 / 3) < 1e-6 and abs(out["shift"][1] - 2 / 3) < 1e-6
    assert abs(out["scale"][2] + 2) < 1e-6 and abs(out["shift"][2] - 2) < 1e-6
    # layer 0: scale 0, shift = mean of the 8 fitted context ys; its error is that of predicting that mean
    assert out["scale"][0] == 0.0
    assert 0.5 < out["error"][0] < 2.0  # y = wᵀx with w, x ~ N(0, I): E[y²]/d = 1, plus the mean's variance
    assert all(s >= 0 for s in out["sem"]) and out["sem"][0] > 0


def test_a_real_model_gives_one_finite_row_per_residual_stream() -> None:
    task = build_task(TaskConfig("linear_regression", n_dims=5))
    model = build_model(ModelConfig(layers=("attn", "mamba"), d_model=16, n_heads=2), task.io(), seed=0)
    out = lens_probe(model, task, 8, torch.Generator().manual_seed(1), n_context=10, n_test=4, fit_from=6)
    assert out["layer"] == [0, 1, 2]
    assert all(torch.isfinite(torch.tensor(out[k])).all() for k in ("error", "sem", "scale", "shift"))


def test_token_tasks_are_refused() -> None:
    task = build_task(TaskConfig("induction_heads", n_dims=16))
    model = build_model(ModelConfig(layers=("mamba",), d_model=16), task.io(), seed=0)
    try:
        lens_probe(model, task, 4, torch.Generator().manual_seed(0))
    except ValueError as e:
        assert "pairs" in str(e)
    else:
        raise AssertionError("lens_probe accepted a token task")
