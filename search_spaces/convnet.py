"""The Dataset Condensation ConvNet family as data, plus one builder.

A spec is five choices (width, depth, activation, normalisation, pooling). One block is
``Conv2d(in, width, 3, padding=1) -> norm -> activation -> pool`` repeated ``depth`` times,
then ``Flatten -> Linear``. Following Dataset Condensation, a single-channel input gets
padding 3 in its first conv, so 28x28 images become 32x32 maps.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

WIDTHS: tuple[int, ...] = (32, 64, 128, 256)
DEPTHS: tuple[int, ...] = (1, 2, 3, 4)
ACTIVATIONS: tuple[str, ...] = ("sigmoid", "relu", "leakyrelu")
NORMS: tuple[str, ...] = ("none", "batchnorm", "layernorm", "instancenorm", "groupnorm")
POOLINGS: tuple[str, ...] = ("none", "maxpooling", "avgpooling")

GROUPNORM_GROUPS = 4


class SpecError(ValueError):
    """An invalid search-space value or id."""


@dataclass(frozen=True, order=True)
class ConvNetSpec:
    """One ConvNet of the family; ``id`` is a stable string name such as
    ``w128-d3-relu-instancenorm-avgpooling``."""

    width: int = 128
    depth: int = 3
    act: str = "relu"
    norm: str = "instancenorm"
    pool: str = "avgpooling"

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or self.width < 1:
            raise SpecError(f"width must be a positive int, got {self.width!r}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise SpecError(f"depth must be a positive int, got {self.depth!r}")
        for field, value, allowed in (
            ("act", self.act, ACTIVATIONS),
            ("norm", self.norm, NORMS),
            ("pool", self.pool, POOLINGS),
        ):
            if value not in allowed:
                raise SpecError(f"unknown {field} {value!r}; choose one of {', '.join(allowed)}")
        if self.norm == "groupnorm" and self.width % GROUPNORM_GROUPS:
            raise SpecError(
                f"groupnorm needs a width divisible by {GROUPNORM_GROUPS}, got width {self.width}"
            )

    @property
    def id(self) -> str:
        return f"w{self.width}-d{self.depth}-{self.act}-{self.norm}-{self.pool}"

    def __str__(self) -> str:
        return self.id

    @classmethod
    def from_id(cls, spec_id: str) -> "ConvNetSpec":
        """Parse an id made by :attr:`id`; raises :class:`SpecError` on anything else."""
        parts = str(spec_id).split("-")
        if (
            len(parts) != 5
            or not parts[0].startswith("w")
            or not parts[1].startswith("d")
            or not parts[0][1:].isdigit()
            or not parts[1][1:].isdigit()
        ):
            raise SpecError(
                f"cannot parse ConvNet id {spec_id!r}; expected e.g. "
                "'w128-d3-relu-instancenorm-avgpooling' (w<width>-d<depth>-<act>-<norm>-<pool>)"
            )
        return cls(int(parts[0][1:]), int(parts[1][1:]), parts[2], parts[3], parts[4])

    def as_params(self) -> dict:
        """The spec as a flat dict (used as Optuna trial params)."""
        return {"width": self.width, "depth": self.depth, "act": self.act, "norm": self.norm, "pool": self.pool}


def convnet_720(
    widths: Sequence[int] = WIDTHS,
    depths: Sequence[int] = DEPTHS,
    acts: Sequence[str] = ACTIVATIONS,
    norms: Sequence[str] = NORMS,
    pools: Sequence[str] = POOLINGS,
) -> list[ConvNetSpec]:
    """All specs of the grid, in a fixed order: width slowest, then depth, activation,
    normalisation, pooling fastest (each in the order given). The defaults give the 720."""
    return [ConvNetSpec(w, d, a, n, p) for w, d, a, n, p in itertools.product(widths, depths, acts, norms, pools)]


# --- shapes, parameters, FLOPs without building the model ----------------------------------------------


def _first_padding(in_channels: int) -> int:
    return 3 if in_channels == 1 else 1


def block_shapes(spec: ConvNetSpec, in_channels: int, image_size: int | tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Per block: (in_channels, out_channels, H, W) of the conv output (before pooling)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    shapes = []
    c = in_channels
    for d in range(spec.depth):
        pad = _first_padding(in_channels) if d == 0 else 1
        h, w = h + 2 * pad - 2, w + 2 * pad - 2
        if h < 1 or w < 1:
            raise SpecError(f"{spec.id}: the feature map vanishes at block {d + 1} for input {image_size}")
        shapes.append((c, spec.width, h, w))
        c = spec.width
        if spec.pool != "none":
            h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise SpecError(
                    f"{spec.id}: pooling shrinks the map to zero at block {d + 1} for input {image_size}; "
                    "use fewer blocks or no pooling"
                )
    return shapes


def feature_dim(spec: ConvNetSpec, in_channels: int, image_size: int | tuple[int, int]) -> int:
    """Length of the flattened feature vector fed to the classifier."""
    *_, (_, c, h, w) = block_shapes(spec, in_channels, image_size)
    if spec.pool != "none":
        h, w = h // 2, w // 2
    return c * h * w


def count_params(spec: ConvNetSpec, in_channels: int, image_size: int | tuple[int, int], num_classes: int) -> int:
    """Trainable parameter count, computed from the spec alone."""
    total = 0
    for cin, cout, h, w in block_shapes(spec, in_channels, image_size):
        total += cin * cout * 9 + cout
        if spec.norm == "layernorm":
            total += 2 * cout * h * w
        elif spec.norm != "none":
            total += 2 * cout
    return total + feature_dim(spec, in_channels, image_size) * num_classes + num_classes


def count_flops(spec: ConvNetSpec, in_channels: int, image_size: int | tuple[int, int], num_classes: int) -> int:
    """Forward FLOPs for one image, counting a multiply-add as 2 (convs and the classifier only,
    which is what ``torch.utils.flop_counter`` counts)."""
    total = 0
    for cin, cout, h, w in block_shapes(spec, in_channels, image_size):
        total += 2 * cin * 9 * cout * h * w
    return total + 2 * feature_dim(spec, in_channels, image_size) * num_classes


# --- the builder -------------------------------------------------------------------------------------------


def _norm(kind: str, channels: int, h: int, w: int) -> nn.Module:
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "layernorm":
        return nn.LayerNorm([channels, h, w], elementwise_affine=True)
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(GROUPNORM_GROUPS, channels, affine=True)
    raise SpecError(f"unknown norm {kind!r}")


def _act(kind: str) -> nn.Module:
    return {"sigmoid": nn.Sigmoid, "relu": lambda: nn.ReLU(inplace=True), "leakyrelu": lambda: nn.LeakyReLU(0.01)}[kind]()


def _pool(kind: str) -> nn.Module:
    return {"maxpooling": nn.MaxPool2d, "avgpooling": nn.AvgPool2d}[kind](kernel_size=2, stride=2)


class ConvNet(nn.Module):
    """``features`` maps images to the flat feature vector; ``classifier`` is the final ``nn.Linear``."""

    def __init__(self, features: nn.Sequential, classifier: nn.Linear, spec: ConvNetSpec):
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.spec = spec

    def forward(self, x):
        return self.classifier(self.features(x))


def build_convnet(
    spec: ConvNetSpec | str,
    in_channels: int,
    image_size: int | tuple[int, int],
    num_classes: int,
    *,
    seed: int | None = None,
) -> ConvNet:
    """Build ``spec`` for inputs of shape (in_channels, image_size, image_size).

    With ``seed`` the weights are drawn under a forked CPU RNG seeded with it: they equal those of
    ``torch.manual_seed(seed); build_convnet(...)`` and the global RNG is left as it was. Without it
    they come from the global RNG.
    """
    if isinstance(spec, str):
        spec = ConvNetSpec.from_id(spec)
    if in_channels < 1 or num_classes < 2:
        raise SpecError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels} and {num_classes}")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_convnet(spec, in_channels, image_size, num_classes)
    layers: list[nn.Module] = []
    for d, (cin, cout, h, w) in enumerate(block_shapes(spec, in_channels, image_size)):
        pad = _first_padding(in_channels) if d == 0 else 1
        layers.append(nn.Conv2d(cin, cout, kernel_size=3, padding=pad))
        if spec.norm != "none":
            layers.append(_norm(spec.norm, cout, h, w))
        layers.append(_act(spec.act))
        if spec.pool != "none":
            layers.append(_pool(spec.pool))
    layers.append(nn.Flatten())
    classifier = nn.Linear(feature_dim(spec, in_channels, image_size), num_classes)
    return ConvNet(nn.Sequential(*layers), classifier, spec)
