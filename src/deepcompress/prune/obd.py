"""Optimal Brain Damage (LeCun, Denker & Solla 1990): saliency s_q = ½ · h_qq · w_q².

h_qq is the diagonal of the Hessian of the mean training loss with respect to the prunable weights
(every Linear/Conv weight), estimated over a few batches, on CPU or CUDA, in eval mode (no dropout):

- ``gauss-newton``: the diagonal of the generalised Gauss-Newton matrix ``Σ_n J_nᵀ H_n J_n``, where
  ``J_n`` is the Jacobian of the network outputs for sample n and ``H_n`` the Hessian of the loss in
  those outputs (softmax cross-entropy: ``diag(p) − ppᵀ``; squared error ``½‖f − t‖²``: the identity).
  This is LeCun's Levenberg-Marquardt approximation (the ``f''`` terms of the back-propagated second
  derivatives dropped) without his further dropping of cross terms between units of a layer: it is
  computed exactly, as per-sample vector-Jacobian products with the columns of a square root of
  ``H_n``. For one hidden layer it is exactly what LeCun back-propagates; for piecewise-linear
  networks (ReLU, max-pooling, linear output) it equals the exact Hessian diagonal, since the network
  output is linear in each single weight.
- ``hutchinson``: E[v ⊙ Hv] over Rademacher vectors v, with Hessian-vector products by double
  back-propagation; unbiased for the exact Hessian diagonal of any twice-differentiable model.

Pruned layers (``torch.nn.utils.prune`` masks) are differentiated through ``weight_orig``: pruned
positions get h = 0 and saliency 0, and masks built from saliencies keep them pruned.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from .magnitude import current_weight, prunable_layers

ESTIMATORS = ("gauss-newton", "hutchinson")
LOSSES = ("cross-entropy", "mse")


def _weight_params(model: nn.Module) -> dict[str, tuple[str, nn.Parameter]]:
    """Layer name → (qualified parameter name, parameter) of its (unmasked) weight."""
    out = {}
    for name, module in prunable_layers(model).items():
        attr = "weight_orig" if hasattr(module, "weight_orig") else "weight"
        out[name] = (f"{name}.{attr}" if name else attr, getattr(module, attr))
    return out


def _targets(y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Squared-error targets: float targets as given, class labels one-hot."""
    if y.dtype.is_floating_point:
        return y.to(out.dtype).view_as(out)
    return F.one_hot(y, out.shape[-1]).to(out.dtype)


def _loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "cross-entropy":
        return F.cross_entropy(out, y)
    return 0.5 * (out - _targets(y, out)).pow(2).sum(1).mean()


def _output_hessian_sqrt(out: torch.Tensor, loss: str) -> torch.Tensor:
    """Per sample, S with S Sᵀ = Hessian of the loss in the outputs: [N, C, C]."""
    n, c = out.shape
    if loss == "mse":
        return torch.eye(c, dtype=out.dtype, device=out.device).expand(n, c, c)
    p = out.softmax(1)
    sq = p.sqrt()
    return torch.diag_embed(sq) - p.unsqueeze(2) * sq.unsqueeze(1)  # diag(√p) − p √pᵀ


def _check(estimator: str, loss: str, batches: int, probes: int) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"OBD estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if loss not in LOSSES:
        raise ValueError(f"OBD loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if batches < 1 or probes < 1:
        raise ValueError(f"OBD batches and probes must be >= 1, got {batches} and {probes}")


def hessian_diagonal(model: nn.Module, data: Iterable, estimator: str = "gauss-newton", batches: int = 1,
                     loss: str = "cross-entropy", probes: int = 1, seed: int = 0,
                     max_chunk_bytes: int = 1 << 27) -> dict[str, torch.Tensor]:
    """Diagonal of the Hessian of the mean loss w.r.t. each prunable layer's weight, by layer name.

    Uses the first ``batches`` batches of ``data`` (``(x, y)`` pairs; ``y`` class labels, or float
    targets for ``loss="mse"``) on the device of the model's parameters. ``probes`` Rademacher vectors
    per batch for Hutchinson; the Gauss-Newton diagonal is exact and deterministic.
    """
    _check(estimator, loss, batches, probes)
    params = _weight_params(model)
    device = next(model.parameters()).device
    sums = {name: torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))
            for name, (_, p) in params.items()}
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    total = 0
    try:
        for i, (x, y) in enumerate(data):
            if i >= batches:
                break
            x, y = x.to(device), y.to(device)
            if estimator == "gauss-newton":
                _gauss_newton_batch(model, params, x, y, loss, sums, max_chunk_bytes)
            else:
                try:
                    _hutchinson_batch(model, params, x, y, loss, probes, gen, sums)
                except RuntimeError as e:
                    if "derivative for" not in str(e):
                        raise
                    raise ValueError(f"the Hutchinson estimator needs second derivatives, which PyTorch lacks for "
                                     f"an operation of this model ({e}); use the gauss-newton estimator") from e
            total += len(x)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("OBD: the data gave no batches")
    return {name: s / total for name, s in sums.items()}


def _gauss_newton_batch(model: nn.Module, params: dict[str, tuple[str, nn.Parameter]], x: torch.Tensor,
                        y: torch.Tensor, loss: str, sums: dict[str, torch.Tensor], max_chunk_bytes: int) -> None:
    """Add Σ_n diag(J_nᵀ H_n J_n) of this batch to ``sums`` (per-sample Jacobians, in chunks)."""
    frozen = {q: p.detach() for q, p in params.values()}

    def forward_one(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    with torch.no_grad():
        out = model(x)
    if out.dim() != 2:
        raise ValueError(f"OBD needs [batch, outputs] model outputs, got shape {tuple(out.shape)}")
    sqrt_h = _output_hessian_sqrt(out.to(torch.promote_types(out.dtype, torch.float32)), loss)
    n_params = sum(p.numel() for p in frozen.values())
    chunk = max(1, min(len(x), max_chunk_bytes // (4 * out.shape[1] * n_params)))
    jac = vmap(jacrev(forward_one), in_dims=(None, 0))
    for start in range(0, len(x), chunk):
        j = jac(frozen, x[start:start + chunk])  # qualified name → [n, C, *weight shape]
        s = sqrt_h[start:start + chunk]
        for name, (q, _) in params.items():
            jq = j[q].detach().flatten(2).to(s.dtype)  # [n, C, P]
            sums[name] += torch.einsum("ncp,nck->nkp", jq, s).pow(2).sum((0, 1)).view_as(sums[name])


def _hutchinson_batch(model: nn.Module, params: dict[str, tuple[str, nn.Parameter]], x: torch.Tensor,
                      y: torch.Tensor, loss: str, probes: int, gen: torch.Generator,
                      sums: dict[str, torch.Tensor], probe_chunk: int = 16) -> None:
    """Add len(x) · mean over probes of v ⊙ Hv (H of this batch's mean loss) to ``sums``."""
    names = list(params)
    tensors = [params[n][1] for n in names]
    with torch.enable_grad():
        out = model(x)
        value = _loss(out.to(torch.promote_types(out.dtype, torch.float32)), y, loss)
        grads = torch.autograd.grad(value, tensors, create_graph=True)
        for start in range(0, probes, probe_chunk):
            k = min(probe_chunk, probes - start)
            vs = [(torch.randint(0, 2, (k, *t.shape), generator=gen) * 2 - 1).to(t.device, t.dtype) for t in tensors]
            hvs = torch.autograd.grad(grads, tensors, grad_outputs=vs, retain_graph=start + k < probes,
                                      is_grads_batched=True)  # k Hessian-vector products, vmapped
            for n, v, hv in zip(names, vs, hvs, strict=True):
                sums[n] += (v * hv).sum(0).detach().to(sums[n].dtype) * (len(x) / probes)


def obd_saliency(model: nn.Module, data: Iterable, estimator: str = "gauss-newton", batches: int = 1,
                 loss: str = "cross-entropy", probes: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """OBD saliency ½ · h_qq · w_q² of every prunable weight, by layer name (0 where pruned)."""
    h = hessian_diagonal(model, data, estimator, batches, loss, probes, seed)
    layers = prunable_layers(model)
    return {name: 0.5 * h[name] * current_weight(layers[name]).float().pow(2) for name in h}
