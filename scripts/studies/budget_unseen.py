"""A pool not yet seen (``results/budget-search/PLAN.md``, "A pool not yet seen"): 15 candidates that no folder of
``results/`` has trained, their whole-set ground truth, and the random proxy rung trained only on the candidates that
zico's top third keeps. This module holds the pool's draw and that rule; ``scripts/budget_unseen.py`` runs it, and
``scripts/budget_search.py`` replays it beside the other pools.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from nasprune.search import Experiment, Rung
from nasprune.workflows import CandidateDraw, Grid

__all__ = ["FILTER", "draw_pool", "proxy_candidates", "restrict", "seen_candidates"]

#: The zero-cost rung whose kept candidates (under either seed) the proxy rung is trained on.
FILTER = Rung("zerocost:zico", eta=3)


def seen_candidates(results: Path = Path("results")) -> set[str]:
    """Every candidate in the jobs of a folder of ``results`` (one level down: this pool's own folder, deeper, is not
    read)."""
    seen: set[str] = set()
    for path in sorted(results.glob("*/jobs.csv")):
        seen |= set(pd.read_csv(path, usecols=["candidate"])["candidate"])
    return seen


def draw_pool(seen: set[str], count: int = 15, seed: int = 0) -> list[str]:
    """PLAN.md's draw: ``count`` candidates by ``stratified_subset`` (seed ``seed``) from the grid at widths 8-32,
    minus ``seen``."""
    return CandidateDraw(Grid(widths=(8, 16, 32)), count=count, seed=seed, exclude=tuple(sorted(seen))).ids()


def proxy_candidates(zero_cost: Mapping[int, pd.DataFrame], candidates: Sequence[str],
                     rung: Rung = FILTER) -> list[str]:
    """The candidates ``rung`` keeps (:func:`nasprune.search.promote`, as a schedule does) under any seed's zero-cost
    scores, in the pool's order."""
    from nasprune.search import promote
    from nasprune.zerocost import ranking_score

    score = rung.source.split(":", 1)[1]
    kept: set[str] = set()
    for table in zero_cost.values():
        kept |= set(promote(ranking_score(table.reindex(list(candidates)), score), rung.kept(len(candidates))))
    return [c for c in candidates if c in kept]


def restrict(experiment: Experiment, candidates: Sequence[str]) -> Experiment:
    """``experiment`` with every proxy training set trained on ``candidates`` only (the whole set on all)."""
    sets = {name: s if s.proxy is None else dataclasses.replace(s, candidates=list(candidates))
            for name, s in experiment.training_sets.items()}
    return dataclasses.replace(experiment, training_sets=sets)
