"""K members of one ConvNet spec trained as one network (horizontal fusion, as in HFTA).

Member k's channels sit side by side with the others': every conv is grouped with ``groups=K``,
batchnorm / instancenorm / groupnorm act per channel or per group (groups never straddle members),
layernorm normalises each member's own [C, H, W] with its own affine, and the classifier is a
batched matmul. Each member keeps what :func:`nasprune.training.train` would give it under
``TrainConfig(seed=seeds[k])``: its initial weights, its training set, its seeded batch order and
augmentation, its divergence flag and its accuracies. The loss is the sum of the members' mean
cross-entropies, so each member's gradient is its own, and SGD is elementwise, so one optimizer over
the fused parameters takes the K separate steps.

A fused step does the work of K small steps in a few large kernels: a win where kernel launches
dominate (small nets on a GPU), not necessarily on a CPU. ``scripts/bench_fused.py`` measures it.
"""

from __future__ import annotations

import copy
import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.convnet import ConvNet, ConvNetSpec, build_convnet

from ._config import TrainConfig, TrainResult
from ._loop import (augment, autocast, batches, finite, memory_format, normalisation, optimiser, resolve_device,
                    to_float, validation_part)

__all__ = ["FusedConvNet", "build_fused_convnet", "train_fused", "train_fused_net"]

Split = tuple[torch.Tensor, torch.Tensor]

# --- the fused network ----------------------------------------------------------------------------------


class MemberLayerNorm(nn.Module):
    """LayerNorm over each member's own [C, H, W] slice of a (B, K*C, H, W) map, with a per-member
    elementwise affine of shape [C, H, W] (stored as one [K*C, H, W] tensor)."""

    def __init__(self, members: int, shape: Sequence[int], eps: float):
        super().__init__()
        self.members, self.shape, self.eps = members, tuple(shape), eps
        c, h, w = self.shape
        self.weight = nn.Parameter(torch.ones(members * c, h, w))
        self.bias = nn.Parameter(torch.zeros(members * c, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = F.layer_norm(x.reshape(b, self.members, *self.shape), self.shape, eps=self.eps)
        shape = (self.members, *self.shape)
        return torch.addcmul(self.bias.view(shape), y, self.weight.view(shape)).reshape(x.shape)


class MemberLinear(nn.Module):
    """K linear classifiers applied to a (B, K*F) feature matrix as one batched matmul; returns
    member-major logits (K, B, out)."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        self.members = members
        self.weight = nn.Parameter(torch.zeros(members, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = x.reshape(x.shape[0], self.members, -1).transpose(0, 1)  # (K, B, F)
        return torch.baddbmm(self.bias.unsqueeze(1), feats, self.weight.transpose(1, 2))


_PER_CHANNEL = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten)


def _fuse_layer(layer: nn.Module, k: int) -> nn.Module:
    """The K-member version of one ``ConvNet.features`` layer (fresh weights; copied in later)."""
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(k * layer.in_channels, k * layer.out_channels, layer.kernel_size,
                         stride=layer.stride, padding=layer.padding, groups=k, bias=layer.bias is not None)
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm2d(k * layer.num_features, eps=layer.eps, momentum=layer.momentum,
                              affine=layer.affine, track_running_stats=layer.track_running_stats)
    if isinstance(layer, nn.GroupNorm):
        return nn.GroupNorm(k * layer.num_groups, k * layer.num_channels, eps=layer.eps, affine=layer.affine)
    if isinstance(layer, nn.LayerNorm):
        return MemberLayerNorm(k, layer.normalized_shape, layer.eps)
    if isinstance(layer, _PER_CHANNEL):
        return copy.deepcopy(layer)
    raise TypeError(f"cannot fuse layer {layer!r}; fused training covers the layers that "
                    "search_spaces/convnet.py builds")


class FusedConvNet(nn.Module):
    """K ConvNets of one spec as one network: input (B, K*C, H, W) with member k's images in
    channels [k*C, (k+1)*C), output logits (K, B, classes).

    Its ``state_dict`` has the same keys as a member's; each tensor holds the K members' tensors
    stacked along its first dimension (``num_batches_tracked`` is one shared counter).
    """

    def __init__(self, members: Sequence[ConvNet]):
        super().__init__()
        if not members:
            raise ValueError("members is empty; give at least one ConvNet to fuse")
        first = members[0]
        shapes = {name: t.shape for name, t in first.state_dict().items()}
        for m in members[1:]:
            if m.spec != first.spec or {name: t.shape for name, t in m.state_dict().items()} != shapes:
                raise ValueError(f"all members must share one architecture, got {first.spec.id} and "
                                 f"{m.spec.id} (or other input shapes); fuse members of one spec and "
                                 "input shape")
        self.members = len(members)
        self.spec: ConvNetSpec = first.spec
        with torch.random.fork_rng(devices=[]):  # the fresh layers' init must not move the global RNG
            self.features = nn.Sequential(*(_fuse_layer(layer, self.members) for layer in first.features))
            self.classifier = MemberLinear(self.members, first.classifier.in_features,
                                           first.classifier.out_features)
        self.member_shapes = shapes
        with torch.no_grad():
            states = [m.state_dict() for m in members]
            for name, t in self.state_dict().items():
                if self.shared(name):
                    t.copy_(states[0][name])
                else:
                    t.copy_(torch.stack([s[name] for s in states]).view_as(t))

    def shared(self, name: str) -> bool:
        """Whether state ``name`` is one tensor for all members (BatchNorm's ``num_batches_tracked``)."""
        return len(self.member_shapes[name]) == 0

    def member_view(self, name: str, t: torch.Tensor, k: int) -> torch.Tensor:
        """Member k's part of the fused tensor ``t`` (state key ``name``), as a view."""
        return t if self.shared(name) else t.view(self.members, *self.member_shapes[name])[k]

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's state as a ConvNet ``state_dict`` (copies): load it into
        ``build_convnet(spec, ...)`` to get member k as a separate model."""
        if not 0 <= k < self.members:
            raise IndexError(f"member {k} out of range for {self.members} members")
        return {name: self.member_view(name, t, k).detach().clone() for name, t in self.state_dict().items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_fused_convnet(
    spec: ConvNetSpec | str,
    in_channels: int,
    image_size: int | tuple[int, int],
    num_classes: int,
    seeds: Sequence[int],
) -> FusedConvNet:
    """One member per seed, member k initialised exactly as ``build_convnet(..., seed=seeds[k])``."""
    return FusedConvNet([build_convnet(spec, in_channels, image_size, num_classes, seed=s) for s in seeds])


# --- training -------------------------------------------------------------------------------------------


def _check_sets(sets: Sequence[Split], seeds: Sequence[int], members: int | None = None) -> None:
    if len(sets) != len(seeds) or not sets:
        raise ValueError(f"sets has {len(sets)} training sets but seeds has {len(seeds)} seeds; "
                         "give one (train_x, train_y) and one seed per member")
    if members is not None and members != len(sets):
        raise ValueError(f"the fused net has {members} members but {len(sets)} training sets were given")
    for k, (x, y) in enumerate(sets):
        if x.ndim != 4 or len(x) != len(y) or len(y) == 0:
            raise ValueError(f"sets[{k}]: train_x must be (N, C, H, W) with N = len(train_y) > 0, "
                             f"got {tuple(x.shape)} and {len(y)} labels")
    sizes = [len(y) for _, y in sets]
    shapes = {tuple(x.shape[1:]) for x, _ in sets}
    if len(set(sizes)) > 1 or len(shapes) > 1:
        raise ValueError(f"fused members need training sets of one size and image shape, got sizes {sizes} "
                         f"and shapes {sorted(shapes)}; group members by training-set size")


def _batch(xs: torch.Tensor, idx: torch.Tensor, config: TrainConfig, gens: list) -> torch.Tensor:
    """Member k's images ``xs[k, idx[k]]``, augmented with its own generator exactly as ``train()``
    augments them, laid side by side along channels: (b, K*C, H, W)."""
    picked = xs[torch.arange(len(xs), device=xs.device)[:, None], idx]  # (K, b, C, H, W)
    out = [augment(picked[k], config.crop_padding, config.flip, g) for k, g in enumerate(gens)]
    return torch.stack(out, dim=1).flatten(1, 2)


@torch.inference_mode()
def evaluate_members(net: FusedConvNet, split: Split, stats: Sequence[tuple], device: torch.device,
                     layout: torch.memory_format, batch_size: int) -> list[float]:
    """Accuracy in percent of every member on one split of raw images, each normalised with its
    member's (mean, std). On a CPU a batch holds ``batch_size // K`` images, so its activations take
    the cache of one model's batch; on a GPU ``batch_size`` images, as kernel launches cost more there."""
    x, y = split
    was_training = net.training
    net.eval()
    step = batch_size if device.type == "cuda" else max(1, batch_size // net.members)
    same_stats = all(s == stats[0] for s in stats)
    correct = torch.zeros(net.members, dtype=torch.long, device=device)
    for i in range(0, len(y), step):
        xb = x[i : i + step]
        if same_stats:
            xb = to_float(xb, *stats[0], device).repeat(1, net.members, 1, 1)
        else:
            xb = torch.cat([to_float(xb, m, s, device) for m, s in stats], dim=1)
        logits = net(xb.contiguous(memory_format=layout))
        correct += (logits.argmax(2) == y[i : i + step].to(device)).sum(1)
    net.train(was_training)
    return [100.0 * c / max(len(y), 1) for c in correct.tolist()]


def train_fused_net(
    net: FusedConvNet,
    sets: Sequence[Split],
    seeds: Sequence[int],
    config: TrainConfig,
    *,
    val: Split | None = None,
    test: Split | None = None,
) -> list[TrainResult]:
    """Train ``net`` in place, member k on ``sets[k]`` with batch order and augmentation drawn
    from its own generator seeded with ``seeds[k]`` (``config.seed`` is not used), and evaluate
    every member on ``val`` and ``test`` (``test`` only if ``config.eval_test``).

    A member whose loss turns non-finite is recorded as diverged (``train_loss`` NaN), its state
    is kept as it was at that step (as ``train()`` leaves it) and it trains no further; the others
    go on. ``seconds`` is each member's equal share of the group's training wall time, so the
    members' seconds add up to the group's; ``images_per_sec`` is the member's images over it.
    """
    k_members = net.members
    _check_sets(sets, seeds, k_members)
    if config.eval_every:
        raise ValueError(f"eval_every={config.eval_every}: fused training records no per-epoch validation; "
                         "train these jobs unfused (--fuse 1)")
    device = resolve_device(config.device)
    layout = memory_format(device, config)
    stats = [normalisation(x, config) for x, _ in sets]
    xs = torch.stack([to_float(x, m, s, device) for (x, _), (m, s) in zip(sets, stats)])  # (K, N, C, H, W)
    ys = torch.stack([y.to(device) for _, y in sets])  # (K, N)
    net.to(device=device, memory_format=layout).train()

    gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    n = ys.shape[1]
    opt, sched = optimiser(net.parameters(), config, n)

    active = torch.ones(k_members, dtype=torch.bool, device=device)
    diverged = [False] * k_members
    frozen: dict[int, dict[str, torch.Tensor]] = {}  # member -> its state when it diverged
    history: list[list[dict]] = [[] for _ in range(k_members)]
    epoch_loss = [float("nan")] * k_members
    epochs_done = [0] * k_members
    seen = [0] * k_members
    start = time.perf_counter()
    for epoch in range(config.epochs):
        if all(diverged):
            break
        perms = torch.stack([torch.randperm(n, generator=g, device=device) for g in gens])  # (K, N)
        loss_sum = torch.zeros(k_members, device=device)
        count = [0] * k_members
        for idx in batches(perms, config.batch_size):
            b = idx.shape[1]
            xb = _batch(xs, idx, config, gens).contiguous(memory_format=layout)
            yb = torch.gather(ys, 1, idx)
            with autocast(device, config):
                logits = net(xb)  # (K, b, classes)
                losses = F.cross_entropy(logits.reshape(k_members * b, -1), yb.reshape(-1),
                                         reduction="none").view(k_members, b).mean(1)
            ok_now = torch.isfinite(losses)
            newly = [k for k, ok in enumerate(ok_now.tolist()) if not ok and not diverged[k]]
            for k in newly:  # params as before this step, BN statistics after it: what train() leaves
                diverged[k] = True
                frozen[k] = net.member_state(k)
                active[k] = False
            # A diverged member's loss is left out (where, not a product: 0 * NaN is NaN). Its slices
            # may still fill with NaN, but every fused kernel keeps members apart, so none reaches the
            # others; its state from when it diverged is put back after training.
            opt.zero_grad(set_to_none=True)
            torch.where(active, losses, torch.zeros_like(losses)).sum().backward()
            opt.step()
            sched.step()
            if all(diverged):
                break
            loss_sum += torch.where(active, losses.detach(), torch.zeros_like(losses.detach())) * b
            for k in range(k_members):
                count[k] += 0 if diverged[k] else b
        for k in range(k_members):
            seen[k] += count[k]
        means = (loss_sum / torch.tensor(count, device=device).clamp_min(1)).tolist()
        for k in range(k_members):
            if not diverged[k]:
                epochs_done[k] = epoch + 1
                epoch_loss[k] = means[k]
                history[k].append({"epoch": epoch + 1, "train_loss": epoch_loss[k]})
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / k_members

    with torch.no_grad():
        for k, state in frozen.items():  # put back what each diverged member held when it diverged
            for name, t in net.state_dict().items():
                if not net.shared(name):
                    net.member_view(name, t, k).copy_(state[name])
    for k in range(k_members):
        if diverged[k] or not finite(net.member_state(k).values()):
            diverged[k] = True
            epoch_loss[k] = float("nan")
    def accuracies(split: Split | None) -> list[float | None]:
        if split is None:
            return [None] * k_members
        return evaluate_members(net, split, stats, device, layout, config.eval_batch_size)

    val_acc = accuracies(validation_part(val, config) if val is not None else None)
    test_acc = accuracies(test if config.eval_test else None)
    return [
        TrainResult(
            train_loss=epoch_loss[k],
            val_acc=val_acc[k],
            test_acc=test_acc[k],
            epochs=epochs_done[k],
            seconds=seconds,
            images_per_sec=seen[k] / seconds if seconds > 0 else 0.0,
            diverged=diverged[k],
            history=history[k],
        )
        for k in range(k_members)
    ]


def train_fused(
    spec: ConvNetSpec | str,
    sets: Sequence[Split],
    seeds: Sequence[int],
    config: TrainConfig,
    *,
    in_channels: int,
    image_size: int | tuple[int, int],
    num_classes: int,
    val: Split | None = None,
    test: Split | None = None,
) -> list[TrainResult]:
    """Train K = len(seeds) members of ``spec`` as one network, member k initialised as
    ``build_convnet(spec, ..., seed=seeds[k])`` and trained on ``sets[k]`` as
    ``train(model, *sets[k], replace(config, seed=seeds[k]))`` would train it.
    Returns one :class:`TrainResult` per member, in order. See :func:`train_fused_net`."""
    _check_sets(sets, seeds)
    net = build_fused_convnet(spec, in_channels, image_size, num_classes, seeds)
    return train_fused_net(net, sets, seeds, config, val=val, test=test)
