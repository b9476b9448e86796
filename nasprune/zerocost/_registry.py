"""The zero-cost registry: every score's name, what it reads, which end is better, its function.

A score is a plain function. One that reads a network at initialisation and a batch (``needs="batch"``) is
``fn(model, x, y) -> float``: ``model`` freshly built from the candidate's spec under a seed, ``x`` normalised images
and ``y`` their labels. One that reads the architecture alone (``needs="spec"``) is ``fn(spec, in_channels,
image_size, num_classes) -> float``. It registers once, with :func:`register_score`; everything else (scoring a
pool, the conformance check in ``nasprune/zerocost/testing.py``) looks it up here. ``SCORES`` is a live view of the
registered names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["NEEDS", "SCORES", "ZeroCostScore", "get_score", "register_score"]

#: What a score may read: a network at initialisation and a batch of images, or the architecture alone.
NEEDS = ("batch", "spec")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ZeroCostScore:
    """One registered score: its name, what it reads (:data:`NEEDS`), whether a higher value ranks a candidate
    higher, whether it depends on the seed (the network's initialisation and the batch) and its function."""

    name: str
    needs: str
    higher_is_better: bool
    seeded: bool
    fn: Callable[..., float]

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip().split("\n\n")[0]


_REGISTRY: dict[str, ZeroCostScore] = {}


def register_score(name: str, *, needs: str, higher_is_better: bool = True):
    """Register the decorated function as score ``name``; a name registered twice, a bad name or an unknown
    ``needs`` is a ValueError."""
    if not _NAME.match(name):
        raise ValueError(f"a score name is lower case letters, digits and '_', got {name!r}")
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {', '.join(NEEDS)}, got {needs!r}")

    def add(fn: Callable[..., float]) -> Callable[..., float]:
        if name in _REGISTRY:
            raise ValueError(f"score {name!r} is registered already")
        _REGISTRY[name] = ZeroCostScore(name, needs, higher_is_better, needs == "batch", fn)
        return fn

    return add


def get_score(name: str) -> ZeroCostScore:
    """The registered score ``name``; a ValueError lists the known names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown zero-cost score {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


class _ScoreNames(Sequence):
    """The registered names, in registration order: a read-only view that always reflects the registry."""

    def __getitem__(self, i):
        return list(_REGISTRY)[i]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(list(_REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __repr__(self) -> str:
        return repr(list(_REGISTRY))


#: The registered scores' names, in registration order.
SCORES: Sequence[str] = _ScoreNames()
