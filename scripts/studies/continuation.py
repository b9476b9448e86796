"""A rung at a smaller budget: a fresh run annealed over that budget (what ``nasprune run``'s live schedule trains), or
the longer run's epoch e continued (what ASHA and the budget search's whole-set replays read)? The comparison and the
rule of ``results/budget-search/PLAN.md`` ("A later stage"), over fresh whole-set runs the pools already hold;
``scripts/budget_continuation.py`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nasprune.search import Experiment, ReplaySource, Rung, Schedule, run_schedule, successive_halving

__all__ = ["POOLS", "TOLERANCE", "FreshPool", "decide", "kendalls", "schedules"]

#: PLAN.md's rule: fresh is kept when its Kendall is at least continued's minus this, at epoch 1, on two pools of three.
TOLERANCE = 0.05


@dataclass(frozen=True)
class FreshPool:
    """A pool (its ground truth's folder) and the folder holding its fresh whole-set runs: training set name ->
    (epochs, seed)."""

    name: str
    directory: Path
    fresh_directory: Path
    fresh: dict[str, tuple[int, int]]


POOLS = (
    FreshPool("development", Path("results/proxy-benchmark"), Path("results/proxy-benchmark-budget"),
              {"whole-1epoch-s0": (1, 0), "whole-1epoch-s2": (1, 2), "whole-3epoch-s2": (3, 2)}),
    FreshPool("competitive", Path("results/proxy-benchmark-comp"), Path("results/proxy-benchmark-budget-comp"),
              {"whole-1epoch-s2": (1, 2), "whole-3epoch-s2": (3, 2)}),
    FreshPool("fmnist-ref", Path("results/proxy-benchmark-ref"), Path("results/proxy-benchmark-ref"),
              {"whole-1epoch": (1, 0), "whole-1epoch-s2": (1, 2)}),
)


def _row(pool: str, way: str, epochs: int, seed: int, signal: pd.Series, finals: dict[int, pd.Series],
         test: pd.Series) -> dict:
    """One signal against every whole-set seed other than its own: the mean Kendall, and whether its top third holds
    the truth's best and its top one's regret (the truth: the mean of the seeds' test accuracy)."""
    against = [s for s in finals if s != seed]
    taus = [stats.kendalltau(signal.reindex(finals[s].index), finals[s])[0] for s in against]
    ranked = signal.sort_values(ascending=False).index
    third = ranked[: int(np.ceil(len(ranked) / 3))]
    return {"pool": pool, "way": way, "epochs": epochs, "seed": seed, "against": "+".join(map(str, against)),
            "kendall": float(np.mean(taus)), "best_in_top_third": bool(test.idxmax() in third),
            "regret_top1": float(test.max() - test[ranked[0]])}


def kendalls(pool: FreshPool) -> pd.DataFrame:
    """Every signal of the pool at 1 and 3 epochs, continued (seeds 0 and 1) and fresh, as :func:`_row`'s rows."""
    jobs = pd.read_csv(pool.directory / "jobs.csv")
    history = pd.read_csv(pool.directory / "history.csv")
    whole = jobs[jobs["training_set"] == "whole"]
    finals = {int(s): g.set_index("candidate")["val_acc"] for s, g in whole.groupby("seed")}
    test = whole.groupby("candidate")["test_acc"].mean()
    fresh_jobs = pd.read_csv(pool.fresh_directory / "jobs.csv")
    rows = []
    for epochs in sorted({e for e, _ in pool.fresh.values()}):
        for seed in finals:
            h = history[(history["training_set"] == "whole") & (history["seed"] == seed) & (history["epoch"] == epochs)]
            rows.append(_row(pool.name, "continued", epochs, seed, h.set_index("candidate")["val_acc"], finals, test))
        for name, (e, seed) in pool.fresh.items():
            if e == epochs:
                f = fresh_jobs[fresh_jobs["training_set"] == name]
                rows.append(_row(pool.name, "fresh", epochs, seed, f.set_index("candidate")["val_acc"], finals, test))
    return pd.DataFrame(rows)


def decide(table: pd.DataFrame) -> tuple[bool, pd.DataFrame]:
    """PLAN.md's rule at epoch 1: per pool, fresh's and continued's mean Kendall and whether fresh is within
    :data:`TOLERANCE`; fresh is kept when it is on at least two pools."""
    at1 = table[table["epochs"] == 1].groupby(["pool", "way"], sort=False)["kendall"].mean().unstack("way")
    at1["fresh_within"] = at1["fresh"] >= at1["continued"] - TOLERANCE
    return bool(at1["fresh_within"].sum() >= 2), at1


def schedules(pool: FreshPool) -> pd.DataFrame:
    """Successive halving (1, 3, 10), eta 3, both ways, for each whole-set seed of the last rung: the choice, its
    regret and the SGD steps spent, as a share of the whole-set search (n x 10 epochs). Only pools with fresh runs at
    both 1 and 3 epochs (seed 2)."""
    names = {e: n for n, (e, s) in pool.fresh.items() if s == 2}
    if set(names) != {1, 3}:
        return pd.DataFrame()
    jobs = pd.concat([pd.read_csv(pool.directory / "jobs.csv"),
                      pd.read_csv(pool.fresh_directory / "jobs.csv").query("training_set in @names.values()")])
    history = pd.read_csv(pool.directory / "history.csv")
    experiment, fresh_exp = Experiment.load(pool.directory), Experiment.load(pool.fresh_directory)
    trains = {"whole": experiment.training_sets["whole"].train,
              **{n: fresh_exp.training_sets[n].train for n in names.values()}}
    continued = successive_halving("whole", (1, 3, 10), 3)
    fresh = Schedule("sh-fresh-1-3-10-eta3", (Rung(names[1], eta=3), Rung(names[3], eta=3), Rung("whole")))
    test = jobs[jobs["training_set"] == "whole"].groupby("candidate")["test_acc"].mean()
    n, rows = len(experiment.candidates), []
    images = int(jobs.loc[jobs["training_set"] == "whole", "images"].iloc[0])
    per_epoch = trains["whole"].steps(images, epochs=1)
    for schedule, way in ((continued, "continued"), (fresh, "fresh")):
        for seed in (0, 1):
            result = run_schedule(schedule, experiment.candidates, ReplaySource(jobs, history, trains, seed=seed))
            rows.append({"pool": pool.name, "way": way, "seed": seed, "chosen": result.chosen,
                         "regret": float(test.max() - test[result.chosen]),
                         "cost": result.steps / (n * 10 * per_epoch),
                         "goal_cost": (result.steps - result.whole_steps.get(result.chosen, 0.0))
                         / (n * 10 * per_epoch)})
    return pd.DataFrame(rows)
