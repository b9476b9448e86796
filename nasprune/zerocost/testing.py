"""The conformance check every registered zero-cost score passes (as ``nasprune.proxies.selection.testing`` is for
the selection methods).

The rules: a number (not NaN) for a network of every activation, norm and pooling the search space builds; the same
value under the same seed; for a score that reads the network at initialisation, another value under another seed
on some candidate, and for one that reads the architecture alone, none; the batch left unchanged; the global RNG
left unchanged. Check a score of your own after registering it::

    from nasprune.zerocost.testing import check_score
    check_score("my_score")  # raises AssertionError naming the rule it breaks
"""

from __future__ import annotations

import math

import torch

from search_spaces import convnet_720

from ._pool import Batch, compute_score
from ._registry import SCORES, get_score

__all__ = ["CANDIDATES", "check_all", "check_score", "synthetic_batch"]

#: Small candidates with every activation, norm and pooling of the search space: the 45 of width 8 and depth 1.
CANDIDATES = [s.id for s in convnet_720(widths=(8,), depths=(1,))]


def synthetic_batch(size: int = 16, *, seed: int = 0) -> Batch:
    """A batch of ``size`` random 3x16x16 images in 4 classes, each class present."""
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(size, 3, 16, 16, generator=g), torch.arange(size) % 4, 3, 16, 4)


def _expect(condition: bool, name: str, rule: str) -> None:
    if not condition:
        raise AssertionError(f"zero-cost score {name!r} breaks the rule: {rule}")


def check_score(name: str, batch: Batch | None = None) -> None:
    """Every rule of this module's docstring for score ``name``."""
    score = get_score(name)
    batch = batch or synthetic_batch()
    x, y = batch.x.clone(), batch.y.clone()
    rng = torch.get_rng_state()
    values = {c: compute_score(name, c, batch, seed=0) for c in CANDIDATES}
    _expect(all(isinstance(v, float) and not math.isnan(v) for v in values.values()), name,
            "a number (not NaN) for every activation, norm and pooling")
    _expect(torch.equal(torch.get_rng_state(), rng), name, "the global RNG left unchanged")
    _expect(torch.equal(batch.x, x) and torch.equal(batch.y, y), name, "the batch left unchanged")
    again = {c: compute_score(name, c, batch, seed=0) for c in CANDIDATES[:6]}
    _expect(all(again[c] == values[c] for c in again), name, "the same value under the same seed")
    other = {c: compute_score(name, c, batch, seed=1) for c in CANDIDATES[:6]}
    differs = any(other[c] != values[c] for c in other)
    _expect(differs == score.seeded, name, "another value under another seed exactly when it reads the network at "
            "initialisation")


def check_all() -> None:
    """:func:`check_score` for every registered score."""
    for name in SCORES:
        check_score(name)
