"""Local instability of a classifier around an image: gradient norm and top Hessian eigenvalue.

For a classifier ``f`` (logits) and an image ``x`` with label ``c`` (by default the class ``f``
predicts), let ``L(x) = cross_entropy(f(x), c)``:

* ``M1(x) = ||grad_x L(x)||_2``;
* ``M2(x)`` = the eigenvalue of largest magnitude of the input Hessian ``grad_x^2 L(x)``, by power
  iteration on Hessian-vector products (double backward); no dense Hessian is formed.

Images are independent (the model must be in eval mode, so batch norm does not mix them), so a
batch is handled at once: the gradient of the summed loss holds every image's gradient, and one
Hessian-vector product of the summed loss gives every image's product with its own vector. For a
piecewise-linear network (ReLU, max-pool) the Hessian is ``J^T (diag(p) - p p^T) J``, positive
semi-definite, so ``M2`` is its largest eigenvalue.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _labels(model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if x.dim() != 4:
        raise ValueError(f"x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    if labels is None:
        with torch.no_grad():
            return model(x).argmax(-1)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(labels.shape)}")
    return labels


def input_gradient_norm(model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``M1``: ``(N,)`` L2 norms of each image's input gradient of the cross-entropy."""
    model.eval()
    labels = _labels(model, x, labels)
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, x)
    return gradient.flatten(1).norm(dim=1)


def hessian_top_eigenvalue(model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None,
                           iterations: int = 20, seed: int = 0) -> torch.Tensor:  # fmt: skip
    """``M2``: ``(N,)`` eigenvalue of largest magnitude of each image's input Hessian (power iteration).

    Args:
        iterations: power iterations (one Hessian-vector product each); the estimate is the
            Rayleigh quotient of the last vector.
        seed: seeds the random start vectors.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
    model.eval()
    labels = _labels(model, x, labels)
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, x, create_graph=True)
    generator = torch.Generator(x.device).manual_seed(seed)
    vector = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def normalise(v: torch.Tensor) -> torch.Tensor:
        return v / v.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *([1] * (v.dim() - 1)))

    vector = normalise(vector)
    eigenvalue = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        (product,) = torch.autograd.grad(gradient, x, grad_outputs=vector, retain_graph=True)
        eigenvalue = (product * vector).flatten(1).sum(1)
        vector = normalise(product.detach())
    return eigenvalue.detach()
