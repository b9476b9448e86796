"""A documented, seeded rule for picking a small subset of a search space that still covers it.

``stratified_subset`` picks ``count`` distinct specs so that every level of every factor (width, depth,
activation, normalisation, pooling) appears, and the levels of each factor appear about equally often,
as in a Latin hypercube:

1. **Order.** The specs are shuffled by a seeded permutation; every tie below is broken by this order.
2. **Cover.** While some (factor, level) pair is missing, add the spec that brings in the most missing
   pairs. On a full grid this takes exactly as many picks as the largest factor has levels.
3. **Balance.** Until ``count`` specs are chosen, add the spec whose levels have been used least so far
   (the smallest sum, over its five factors, of how often its level is already in the subset).

Specs are never repeated, so no de-duplication is needed. The result is returned in the input order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from search_spaces.convnet import ConvNetSpec

FACTORS: tuple[str, ...] = ("width", "depth", "act", "norm", "pool")


def stratified_subset(specs: Sequence[ConvNetSpec], count: int, seed: int = 0) -> list[ConvNetSpec]:
    """Pick ``count`` distinct specs of ``specs`` in which every level of every factor appears.

    Deterministic for a given ``seed`` (see the module docstring for the rule). Raises ``ValueError``
    when ``count`` is smaller than the largest number of levels of a factor, larger than ``len(specs)``,
    or too small for the cover step on an irregular (non-grid) list.

    Example:
        >>> from search_spaces import convnet_720
        >>> subset = stratified_subset(convnet_720(widths=(8, 16, 32, 64)), 36, seed=0)
        >>> sorted({s.norm for s in subset})
        ['batchnorm', 'groupnorm', 'instancenorm', 'layernorm', 'none']
    """
    specs = list(dict.fromkeys(specs))  # distinct, first occurrence kept
    levels = {f: sorted({getattr(s, f) for s in specs}, key=str) for f in FACTORS}
    most = max((len(v) for v in levels.values()), default=0)
    if not isinstance(count, (int, np.integer)) or count < most:
        raise ValueError(
            f"count must be an int >= {most} (the largest number of levels of a factor, so that every level "
            f"can appear), got {count!r}"
        )
    if count > len(specs):
        raise ValueError(f"count must be <= the number of distinct specs ({len(specs)}), got {count}")

    order = np.random.default_rng(seed).permutation(len(specs))
    pool = [specs[i] for i in order]
    chosen: list[ConvNetSpec] = []
    used = {(f, v): 0 for f in FACTORS for v in levels[f]}

    def take(spec: ConvNetSpec) -> None:
        chosen.append(spec)
        pool.remove(spec)
        for f in FACTORS:
            used[(f, getattr(spec, f))] += 1

    while any(n == 0 for n in used.values()):  # cover
        best = max(pool, key=lambda s: sum(used[(f, getattr(s, f))] == 0 for f in FACTORS))
        take(best)
    if len(chosen) > count:
        raise ValueError(
            f"covering every level of every factor takes {len(chosen)} of these specs; ask for count >= "
            f"{len(chosen)}"
        )
    while len(chosen) < count:  # balance
        take(min(pool, key=lambda s: sum(used[(f, getattr(s, f))] for f in FACTORS)))

    position = {s: i for i, s in enumerate(specs)}
    return sorted(chosen, key=position.__getitem__)
