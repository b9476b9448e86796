"""The budget search (``results/budget-search/PLAN.md``): which schedule finds a pool's best architecture for the
smallest share of the whole-set search, replayed over every random draw and seed of the three pools whose ground
truth exists. This module holds the plan's strategies as data, its cost and quality measures and its decision rule;
``scripts/budget_search.py`` runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nasprune.analysis import candidate_means, ndcg, noise_ceiling, top_quartile_k
from nasprune.search import (Experiment, ReplaySource, Rung, Schedule, hyperband, run_brackets, run_schedule,
                             successive_halving)
from nasprune.zerocost import SCORES

__all__ = ["GOAL_COST", "GOAL_P", "POOLS", "REGRET", "STRATEGIES", "Pool", "Strategy", "choose_default", "evaluate",
           "repetitions"]

#: The issue's goals, as PLAN.md's decision rule reads them.
GOAL_COST, GOAL_P, REGRET = 0.05, 0.90, 0.2
#: Whole-set SGD steps of one candidate: 10 epochs of ceil(50,000 / 128) batches.
WHOLE_STEPS = 3_910


@dataclass(frozen=True)
class Pool:
    """A pool whose ground truth and random draws exist: its name and folder."""

    name: str
    directory: Path


POOLS = (Pool("development", Path("results/proxy-benchmark")), Pool("competitive", Path("results/proxy-benchmark-comp")),
         Pool("fmnist-ref", Path("results/proxy-benchmark-ref")))


@dataclass(frozen=True)
class Strategy:
    """One strategy of PLAN.md: a family, a name, and either one schedule or Hyperband's brackets."""

    family: str
    name: str
    schedule: Schedule | None = None
    brackets: tuple[tuple[int, Schedule], ...] | None = None


def _one(family: str, name: str, *rungs: Rung) -> Strategy:
    return Strategy(family, name, Schedule(name, tuple(rungs)))


def strategies() -> list[Strategy]:
    """PLAN.md's complete list, in its order."""
    out = [_one("flat proxy", f"random-pc{k}@400", Rung(f"random-pc{k}")) for k in (10, 20, 50, 100, 200)]
    out += [_one("zero-cost", f"zc:{s}", Rung(f"zerocost:{s}")) for s in (*SCORES, "ensemble")]
    out += [_one("whole set early", f"whole@{e}-{sig}", Rung("whole", epochs=e, signal=sig))
            for e in (1, 2, 3) for sig in ("val_acc", "tse")]
    for epochs, eta in (((1, 3, 10), 3), ((1, 2, 5, 10), 2)):
        for sig in ("val_acc", "tse"):
            sh = successive_halving("whole", epochs, eta, signal=sig)
            out.append(Strategy("successive halving", sh.name, sh))
    out.append(Strategy("hyperband", "hyperband-whole-eta3", brackets=tuple(hyperband("whole", 10, 3))))
    out += [_one("screen, then top k", f"random-pc100@400>top{k}>whole", Rung("random-pc100", keep=k), Rung("whole"))
            for k in (1, 2, 3, 5)]
    for score in ("flops", "naswot", "zico", "ensemble"):
        for eta in (3, 2):
            for k in (1, 2, 3):
                out.append(_one("zero-cost filter, proxy, top k", f"zc:{score}/{eta}>random-pc100@400>top{k}>whole",
                                Rung(f"zerocost:{score}", eta=eta), Rung("random-pc100", keep=k), Rung("whole")))
    for score in ("flops", "ensemble"):
        for size in (50, 100):
            for sig in ("val_acc", "tse"):
                for k in (1, 2):
                    out.append(_one("data, steps, whole set",
                                    f"zc:{score}/2>random-pc{size}@400/3>whole@1-{sig}>top{k}>whole",
                                    Rung(f"zerocost:{score}", eta=2), Rung(f"random-pc{size}", eta=3),
                                    Rung("whole", epochs=1, signal=sig, keep=k), Rung("whole")))
    return out


STRATEGIES = strategies()


def repetitions(draws: int = 20, seeds: Sequence[int] = (0, 1)) -> list[tuple[int, int]]:
    """PLAN.md's repetitions: every random draw with every whole-set seed."""
    return [(d, s) for d in range(draws) for s in seeds]


def evaluate(strategy: Strategy, jobs: pd.DataFrame, history: pd.DataFrame, experiment: Experiment,
             zero_cost: Callable[[int], pd.DataFrame], reps: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """One row per repetition (draw, seed): the chosen net, its regret, the final ranking's Kendall and NDCG against
    the truth, and the cost: SGD steps trained, zero-cost seconds, the goal's cost (the chosen net's own whole-set
    steps left out) and the total with its full training, as shares of the whole-set search."""
    trains = {name: s.train for name, s in experiment.training_sets.items()}
    candidates = list(experiment.candidates)
    truth = candidate_means(jobs, "whole")
    n, k = len(candidates), top_quartile_k(len(candidates))
    whole = jobs[jobs["training_set"] == "whole"]
    seconds_per_step = float(whole["seconds"].sum() / (len(whole) * WHOLE_STEPS))
    rows = []
    for draw, seed in reps:
        def source() -> ReplaySource:
            return ReplaySource(jobs, history, trains, draw=draw, seed=seed, zero_cost=zero_cost(seed))

        if strategy.brackets is not None:
            chosen, runs = run_brackets(strategy.brackets, candidates, source, np.random.default_rng([draw, seed]))
            ranking = [chosen] + [c for c in candidates if c != chosen]
            steps = sum(r.steps for r in runs)
            scoring = sum(r.scoring_seconds for r in runs)
            seconds = sum(r.seconds for r in runs)
            chosen_whole = max(r.whole_steps.get(chosen, 0.0) for r in runs)
        else:
            result = run_schedule(strategy.schedule, candidates, source())
            chosen, ranking = result.chosen, result.ranking
            steps, scoring, seconds = result.steps, result.scoring_seconds, result.seconds
            chosen_whole = result.whole_steps.get(chosen, 0.0)
        spent = steps + scoring / seconds_per_step
        score = pd.Series(np.arange(n, 0, -1, dtype=float), index=ranking).reindex(truth.index)
        rows.append({"strategy": strategy.name, "family": strategy.family, "draw": draw, "seed": seed,
                     "chosen": chosen, "regret": float(truth["test_acc"].max() - truth.loc[chosen, "test_acc"]),
                     "kendall": float(stats.kendalltau(score, truth["val_acc"])[0]) if strategy.brackets is None
                     else float("nan"),
                     "ndcg": ndcg(score.to_numpy(), truth["val_acc"].to_numpy(), k) if strategy.brackets is None
                     else float("nan"),
                     "steps": steps, "scoring_seconds": scoring, "seconds": seconds + scoring,
                     "goal_cost": (spent - chosen_whole) / (n * WHOLE_STEPS),
                     "total_cost": (spent - chosen_whole + WHOLE_STEPS) / (n * WHOLE_STEPS)})
    return pd.DataFrame(rows)


def summarise(reps: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: P(regret <= 0.2), the median and 90th-percentile regret, the mean Kendall and NDCG, and the
    median and range of the goal cost and the total cost."""
    g = reps.groupby(["family", "strategy"], sort=False)
    out = g.agg(reps_=("regret", "size"), p_within=("regret", lambda r: float((r <= REGRET + 1e-9).mean())),
                regret_median=("regret", "median"), regret_p90=("regret", lambda r: float(np.percentile(r, 90))),
                kendall=("kendall", "mean"), ndcg=("ndcg", "mean"), goal_cost=("goal_cost", "median"),
                goal_cost_max=("goal_cost", "max"), total_cost=("total_cost", "median"),
                minutes=("seconds", lambda s: float(s.median() / 60)))
    return out.rename(columns={"reps_": "repetitions"}).reset_index()


def choose_default(summary: pd.DataFrame) -> pd.Series | None:
    """PLAN.md's rule on the development pool: among the strategies with a median goal cost at most 5%, the highest
    P(regret <= 0.2); ties to the lower cost, then the higher NDCG. None when no strategy is that cheap."""
    cheap = summary[summary["goal_cost"] <= GOAL_COST + 1e-12]
    if cheap.empty:
        return None
    ranked = cheap.assign(ndcg_=cheap["ndcg"].fillna(-np.inf)).sort_values(
        ["p_within", "goal_cost", "ndcg_"], ascending=[False, True, False], kind="mergesort")
    return ranked.iloc[0].drop("ndcg_")


def confirmed(summary: pd.DataFrame, strategy: str) -> bool:
    """PLAN.md's confirmation on a held-out pool: P(regret <= 0.2) at least 0.90 and a median goal cost at most 5%."""
    row = summary.set_index("strategy").loc[strategy]
    return bool(row["p_within"] >= GOAL_P and row["goal_cost"] <= GOAL_COST + 1e-12)


def ceiling(jobs: pd.DataFrame) -> dict:
    """The pool's noise ceiling (one whole-set seed against the other) at its NDCG's k."""
    return noise_ceiling(jobs, k=top_quartile_k(candidate_means(jobs, "whole")["val_acc"].notna().sum()), n_boot=200)
