"""The zero-cost scores: what a ConvNet at initialisation, or its architecture alone, says about how well it will
train. Each registers itself (``_registry.py``); a higher value ranks a candidate higher for every one of them.

Which weights count: the conv and linear layers' weights (``_weights``), as Abdelfattah et al.'s code counts them;
biases and the normalisation layers' affine parameters take part in the forward pass but not in the sums.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.convnet import ConvNetSpec, count_flops, count_params

from ._registry import register_score

__all__ = ["flops", "grad_norm", "naswot", "params", "snip", "synflow", "zico"]

#: The modules whose input NASWOT reads as a binary code: every activation the search space builds.
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """The conv and linear layers' weights, in module order."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _loss_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of the mean cross-entropy on (x, y) by each of :func:`_weights`, the model as built."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [w.grad.detach() for w in _weights(model)]


@register_score("naswot", needs="batch")
def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """NASWOT (Mellor et al., ICML 2021): log|K| with K = c c^T + (1 - c)(1 - c)^T, c the binary code of each
    image: whether the input of every activation unit is positive (for ReLU, whether the unit is active; leaky ReLU
    and sigmoid get the same sign code), concatenated over the network. K counts the units on which two images
    agree; a network that tells the batch's images apart at initialisation has a large determinant. The labels are
    not read; the model runs as built (batch norm on the batch's statistics), in float64 for the determinant."""
    codes: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda module, inp: codes.append((inp[0] > 0).flatten(1).double()))
             for m in model.modules() if isinstance(m, ACTIVATIONS)]  # before an in-place ReLU changes its input
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(kernel)[1])


@register_score("synflow", needs="batch")
def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """SynFlow (Tanaka et al., NeurIPS 2020; a NAS proxy in Abdelfattah et al., ICLR 2021): every parameter
    replaced by its absolute value, in float64, R = the sum of the network's outputs for one all-ones input, and the
    score sum |theta * dR/dtheta| over the conv and linear weights. Data-free: only the input's shape is read.

    The norms: the copy runs in eval mode, so batch norm applies its statistics at initialisation (mean 0, variance
    1, so only its affine acts) rather than those of a one-image batch; instance, group and layer norm normalise the
    all-ones input as built. Taken per layer the sum is homogeneous: with no biases and no norms, each conv or
    linear layer's term equals R (tests/zerocost/test_scores.py checks it). Logged, as the sums span hundreds of
    orders of magnitude across the space: the score is log(sum), -inf when it is 0."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    net(torch.ones((1, *x.shape[1:]), dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        total = sum(float((w * w.grad).abs().sum()) for w in _weights(net))
    return math.log(total) if total > 0 else float("-inf")


@register_score("grad_norm", needs="batch")
def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """grad_norm (Abdelfattah et al., ICLR 2021): the sum over conv and linear layers of the Euclidean norm of the
    cross-entropy's gradient by the layer's weights, on the batch at initialisation."""
    return float(sum(g.norm() for g in _loss_gradients(model, x, y)))


@register_score("snip", needs="batch")
def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """SNIP's connection sensitivity (Lee et al., ICLR 2019), summed as a NAS proxy (Abdelfattah et al.): the sum of
    |theta * dL/dtheta| over the conv and linear weights, L the cross-entropy on the batch at initialisation."""
    grads = _loss_gradients(model, x, y)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(_weights(model), grads)))


@register_score("zico", needs="batch")
def zico(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """ZiCo (Li et al., ICLR 2023): the batch split into two halves, and each half's gradient of the cross-entropy by
    every conv and linear weight; per layer the sum, over its weights whose gradient differs between the halves, of
    mean |g| / std(g) across the halves (std with ddof 0, as numpy's); the score is the sum over layers of its log (a
    layer whose sum is 0 adds nothing). High: gradients large and consistent across data."""
    halves = [_loss_gradients(model, xs, ys) for xs, ys in zip(x.chunk(2), y.chunk(2))]
    total = 0.0
    for per_half in zip(*halves):
        g = torch.stack([h.flatten().double() for h in per_half])
        std = g.std(dim=0, unbiased=False)
        keep = std > 0
        ratio = float((g.abs().mean(dim=0)[keep] / std[keep]).sum())
        if ratio > 0:
            total += math.log(ratio)
    return total


@register_score("params", needs="spec")
def params(spec: ConvNetSpec, in_channels: int, image_size: int, num_classes: int) -> float:
    """The number of trainable parameters (``search_spaces.count_params``): as good as most proxies on
    NAS-Bench-201 (Abdelfattah et al.), and the baseline ZiCo was built to beat."""
    return float(count_params(spec, in_channels, image_size, num_classes))


@register_score("flops", needs="spec")
def flops(spec: ConvNetSpec, in_channels: int, image_size: int, num_classes: int) -> float:
    """Forward FLOPs for one image (``search_spaces.count_flops``)."""
    return float(count_flops(spec, in_channels, image_size, num_classes))
