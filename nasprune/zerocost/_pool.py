"""Scoring a pool of candidates: one fixed, seeded batch of the training split, each candidate built under one seed,
every score timed, and an ensemble that aggregates the scores' ranks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats

from nasprune.config import check_random_state
from nasprune.data import Dataset
from nasprune.training import to_float
from search_spaces.convnet import ConvNetSpec, build_convnet

from ._registry import SCORES, get_score

__all__ = ["Batch", "compute_score", "ensemble", "fixed_batch", "score_candidates"]


@dataclass(frozen=True)
class Batch:
    """The images a zero-cost score reads: ``x`` normalised with the dataset's statistics, ``y`` their labels, and
    the shape of the dataset's images and classes, which the candidates are built for."""

    x: torch.Tensor
    y: torch.Tensor
    in_channels: int
    image_size: int
    num_classes: int


def fixed_batch(dataset: Dataset, size: int = 128, *, seed: int = 0) -> Batch:
    """``size`` images of the training split, drawn stratified by class under ``seed`` (the same batch for every
    candidate), normalised with the dataset's mean and std as the training jobs are."""
    labels = dataset.train_y.numpy()
    classes = np.unique(labels)
    if size < len(classes) or size > len(labels):
        raise ValueError(f"a batch of {size} images needs {len(classes)} <= size <= {len(labels)}")
    rng = check_random_state(seed)
    per_class = [size // len(classes) + (i < size % len(classes)) for i in range(len(classes))]
    picked = np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                             for c, k in zip(classes, per_class)])
    picked = rng.permutation(picked)
    x = to_float(dataset.train_x[torch.as_tensor(picked)], dataset.mean, dataset.std, torch.device("cpu"))
    return Batch(x, dataset.train_y[torch.as_tensor(picked)], dataset.in_channels, dataset.image_size,
                 dataset.num_classes)


def compute_score(name: str, spec: ConvNetSpec | str, batch: Batch, *, seed: int = 0) -> float:
    """Score ``name`` of one candidate: its network built under ``seed`` (the global RNG untouched) and the batch,
    or its architecture alone."""
    score = get_score(name)
    spec = ConvNetSpec.from_id(spec) if isinstance(spec, str) else spec
    if score.needs == "spec":
        return float(score.fn(spec, batch.in_channels, batch.image_size, batch.num_classes))
    model = build_convnet(spec, batch.in_channels, batch.image_size, batch.num_classes, seed=seed)
    return float(score.fn(model, batch.x, batch.y))


def score_candidates(dataset: Dataset, candidates: Sequence[str], scores: Sequence[str] | None = None, *,
                     batch_size: int = 128, seed: int = 0) -> pd.DataFrame:
    """Every score of every candidate on one :func:`fixed_batch` (its seed is ``seed``, as is every network's):
    one row per candidate (index), one column per score, and ``seconds_<score>``, each score's wall time."""
    scores = list(SCORES if scores is None else scores)
    for name in scores:
        get_score(name)  # an unknown name is refused before any work
    batch = fixed_batch(dataset, batch_size, seed=seed)
    rows = {}
    for candidate in candidates:
        row = {}
        for name in scores:
            start = time.perf_counter()
            row[name] = compute_score(name, candidate, batch, seed=seed)
            row[f"seconds_{name}"] = time.perf_counter() - start
        rows[candidate] = row
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*scores, *(f"seconds_{s}" for s in scores)])


def ensemble(table: pd.DataFrame, scores: Sequence[str], higher_is_better: Mapping[str, bool] | None = None
             ) -> pd.Series:
    """The scores' ranks aggregated as AZ-NAS does (Lee and Ham, CVPR 2024): the sum over the columns ``scores`` of
    log(rank / n), a candidate's rank being 1 for the worst of the ``n`` and n for the best (ties share their mean
    rank). The log punishes a low rank on any one score far more than it rewards a high one, so a candidate must
    rank high on every score. A NaN score ranks lowest. ``higher_is_better`` says which end is best for a column
    (default: the registered score's, else higher)."""
    n = len(table)
    total = pd.Series(0.0, index=table.index)
    for name in scores:
        higher = (higher_is_better or {}).get(name, get_score(name).higher_is_better if name in SCORES else True)
        values = table[name].to_numpy(float)
        values = values if higher else -values
        values = np.where(np.isnan(values), -np.inf, values)
        total += np.log(stats.rankdata(values) / n)
    return total


def ranking_score(table: pd.DataFrame, score: str) -> pd.Series:
    """What a zero-cost rung ranks by, from a table of :func:`score_candidates`: the column ``score`` oriented so
    that higher ranks higher, or for ``"ensemble"`` the :func:`ensemble` of every registered score the table holds."""
    if score == "ensemble":
        return ensemble(table, [s for s in SCORES if s in table])
    return table[score] if get_score(score).higher_is_better else -table[score]
