"""A proxy rung validated on part of the split (``results/budget-search/PLAN.md``, "A later stage: a proxy rung
validated on part of the split"): the competitive pool's first random draws trained again, validated on 2,000 images,
against the stored jobs validated on the whole split. This module builds the experiment and holds the rule;
``scripts/budget_val_subset.py`` runs it.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nasprune.analysis import candidate_means
from nasprune.search import Experiment

from studies.budget_search import STRATEGIES, UNDER_TEST, evaluate

__all__ = ["DRAWS", "KENDALL_TOLERANCE", "POOL", "REGRET_TOLERANCE", "VAL_IMAGES", "choices", "compare", "decide",
           "experiment", "with_values"]

POOL = Path("results/proxy-benchmark-comp")
DRAWS, VAL_IMAGES = (0, 1, 2), 2000
#: PLAN.md's rule: the part's mean Kendall against the truth at least the whole split's minus this ...
KENDALL_TOLERANCE = 0.02
#: ... and strategy A's choice from the part at most this many points worse than from the whole split, every time.
REGRET_TOLERANCE = 0.2


def experiment(out: Path, pool: Path = POOL, draws=DRAWS, val_images: int = VAL_IMAGES) -> Experiment:
    """The pool's draws as training sets of a new experiment in ``out``, their proxy files copied, each validated on
    ``val_images`` images; the same candidates, dataset and training otherwise (seed 0, as the stored jobs)."""
    source = Experiment.load(pool)
    sets = {}
    for d in draws:
        name = f"random-pc100-d{d}"
        stored = source.training_sets[name]
        (out / "proxies").mkdir(parents=True, exist_ok=True)
        if not (out / stored.proxy).exists():
            shutil.copyfile(pool / stored.proxy, out / stored.proxy)
        sets[name] = dataclasses.replace(stored, train=dataclasses.replace(stored.train, val_images=val_images))
    return dataclasses.replace(source, name=f"{source.name}-val{val_images}", training_sets=sets, storage=None)


def compare(part: pd.DataFrame, stored: pd.DataFrame, draws=DRAWS) -> pd.DataFrame:
    """Per draw: Kendall of the part's ranking against the whole split's and of each against the truth (the whole
    set's mean final validation accuracy), the largest accuracy difference, and whether every job's last-epoch
    training loss equals the stored one (the same training, step for step), with the largest gap."""
    truth = candidate_means(stored, "whole")["val_acc"]
    rows = []
    for d in draws:
        name = f"random-pc100-d{d}"
        a = part[part["training_set"] == name].set_index("candidate").reindex(truth.index)
        b = stored[(stored["training_set"] == name) & (stored["seed"] == 0)].set_index("candidate").reindex(truth.index)
        rows.append({"draw": d, "candidates": int(a["val_acc"].notna().sum()),
                     "kendall_part_whole_split": float(stats.kendalltau(a["val_acc"], b["val_acc"])[0]),
                     "kendall_part_truth": float(stats.kendalltau(a["val_acc"], truth)[0]),
                     "kendall_whole_split_truth": float(stats.kendalltau(b["val_acc"], truth)[0]),
                     "max_abs_diff": float((a["val_acc"] - b["val_acc"]).abs().max()),
                     "same_training": bool(np.allclose(a["train_loss"], b["train_loss"], rtol=1e-5, atol=1e-7)),
                     "loss_gap_max": float((a["train_loss"] - b["train_loss"]).abs().max())})
    return pd.DataFrame(rows)


def with_values(stored: pd.DataFrame, part: pd.DataFrame) -> pd.DataFrame:
    """The stored jobs with the draws' validation accuracy replaced by the part's (the rows ``part`` has)."""
    key = ["training_set", "candidate", "seed"]
    merged = stored.merge(part[key + ["val_acc"]], on=key, how="left", suffixes=("", "_part"))
    merged["val_acc"] = merged["val_acc_part"].fillna(merged["val_acc"])  # a partial run: decide() gives no verdict
    return merged.drop(columns="val_acc_part")


def choices(stored: pd.DataFrame, part: pd.DataFrame, history: pd.DataFrame, exp: Experiment,
            zero_cost: Callable[[int], pd.DataFrame], draws=DRAWS) -> pd.DataFrame:
    """Strategy A over the repetitions (draw, seed), its proxy rung read from the whole split and from the part."""
    a = {s.name: s for s in STRATEGIES}[UNDER_TEST[0]]
    reps = [(d, s) for d in draws for s in (0, 1)]
    whole = evaluate(a, stored, history, exp, zero_cost, reps)
    mine = evaluate(a, with_values(stored, part), history, exp, zero_cost, reps)
    return whole[["draw", "seed", "chosen", "regret"]].merge(mine[["draw", "seed", "chosen", "regret"]],
                                                             on=["draw", "seed"], suffixes=("_whole_split", "_part"))


def decide(kendalls: pd.DataFrame, picks: pd.DataFrame, candidates: int) -> bool | None:
    """PLAN.md's rule: the part's mean Kendall against the truth within :data:`KENDALL_TOLERANCE` of the whole
    split's, and A's choice from the part never more than :data:`REGRET_TOLERANCE` worse. None while jobs are
    missing (a draw without all ``candidates``, or a repetition without both choices): no verdict."""
    if (kendalls["candidates"] < candidates).any() or picks[["regret_part", "regret_whole_split"]].isna().any().any():
        return None
    close = kendalls["kendall_part_truth"].mean() >= kendalls["kendall_whole_split_truth"].mean() - KENDALL_TOLERANCE
    return bool(close and (picks["regret_part"] - picks["regret_whole_split"] <= REGRET_TOLERANCE + 1e-9).all())
