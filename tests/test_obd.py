"""OBD's Hessian diagonals against the exact Hessian of a 2-layer MLP on a few samples."""

import pytest
import torch
from torch import nn

from deepcompress.prune import apply_mask, hessian_diagonal, obd_saliency


def _mlp(act: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), act, nn.Linear(7, 3)).double()


def _exact_hessian(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Full Hessian of the mean loss in (W1, W2), flattened, by torch.autograd.functional.hessian."""
    w1, w2 = model[0].weight, model[2].weight

    def f(flat: torch.Tensor) -> torch.Tensor:
        a = flat[:w1.numel()].view_as(w1)
        b = flat[w1.numel():].view_as(w2)
        out = model[1](x @ a.T + model[0].bias) @ b.T + model[2].bias
        if loss == "mse":
            return 0.5 * (out - nn.functional.one_hot(y, 3).double()).pow(2).sum(1).mean()
        return nn.functional.cross_entropy(out, y)

    return torch.autograd.functional.hessian(f, torch.cat([w1.detach().flatten(), w2.detach().flatten()]))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g)


def _flat(h: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([h["0"].flatten(), h["2"].flatten()])


@pytest.mark.parametrize("loss", ["mse", "cross-entropy"])
def test_gauss_newton_is_exact_for_relu_mlp_with_linear_output(loss):
    # LeCun's assumptions: linear output, squared error; ReLU (f'' = 0) makes the LM term vanish too
    model, (x, y) = _mlp(nn.ReLU()), _data()
    exact = _exact_hessian(model, x, y, loss).diagonal()
    # two batches of three: the estimate is the mean over all samples
    gn = hessian_diagonal(model, [(x[:3], y[:3]), (x[3:], y[3:])], "gauss-newton", batches=2, loss=loss)
    torch.testing.assert_close(_flat(gn), exact, rtol=1e-10, atol=1e-12)


def test_gauss_newton_drops_only_the_second_derivative_of_the_hidden_nonlinearity():
    model, (x, y) = _mlp(nn.Tanh()), _data()
    exact = _exact_hessian(model, x, y, "mse").diagonal()
    gn = hessian_diagonal(model, [(x, y)], "gauss-newton", loss="mse")
    torch.testing.assert_close(gn["2"].flatten(), exact[35:], rtol=1e-10, atol=1e-12)  # output layer: exact
    assert not torch.allclose(gn["0"].flatten(), exact[:35])  # f''(a) ≠ 0 for tanh: an approximation


@pytest.mark.parametrize("loss", ["mse", "cross-entropy"])
def test_hutchinson_converges_to_the_exact_diagonal(loss):
    model, (x, y) = _mlp(nn.Tanh()), _data()
    hess = _exact_hessian(model, x, y, loss)
    exact = hess.diagonal()
    probes = 400
    hu = _flat(hessian_diagonal(model, [(x, y)], "hutchinson", loss=loss, probes=probes, seed=3))
    # Var[v_q (Hv)_q] = Σ_{j≠q} H_qj² for Rademacher v: allow 5 standard errors
    sigma = ((hess.pow(2).sum(1) - exact.pow(2)) / probes).sqrt()
    assert torch.all((hu - exact).abs() <= 5 * sigma + 1e-12)
    few = _flat(hessian_diagonal(model, [(x, y)], "hutchinson", loss=loss, probes=8, seed=3))
    assert (hu - exact).norm() < (few - exact).norm()


@pytest.mark.parametrize("estimator", ["gauss-newton", "hutchinson"])
def test_masked_weights_get_zero_saliency_and_hessian(estimator):
    model, (x, y) = _mlp(nn.ReLU()), _data()
    mask = (torch.arange(35) % 3 != 0).double().view(7, 5)
    apply_mask(model[0], mask)
    h = hessian_diagonal(model, [(x, y)], estimator, probes=4)
    s = obd_saliency(model, [(x, y)], estimator, probes=4)
    assert torch.all(h["0"][mask == 0] == 0) and torch.all(s["0"][mask == 0] == 0)
    assert torch.all(h["0"][mask == 1] != 0) or estimator == "hutchinson"
    torch.testing.assert_close(s["2"], 0.5 * h["2"] * model[2].weight.detach() ** 2)


def test_bad_settings_are_refused():
    model, data = _mlp(nn.ReLU()), [_data()]
    with pytest.raises(ValueError, match="estimator must be one of"):
        hessian_diagonal(model, data, "fisher")
    with pytest.raises(ValueError, match="batches and probes must be >= 1"):
        hessian_diagonal(model, data, batches=0)
    with pytest.raises(ValueError, match="loss must be one of"):
        hessian_diagonal(model, data, loss="hinge")
