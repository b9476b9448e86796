"""The budget search (``results/budget-search/PLAN.md``): which schedule finds a pool's best architecture for the
smallest share of the whole-set search, replayed over every random draw and seed of the three pools whose ground
truth exists. This module holds the plan's strategies as data, its cost and quality measures and its decision rule;
``scripts/budget_search.py`` runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from scipy import stats

from nasprune.analysis import candidate_means, ndcg, noise_ceiling, top_quartile_k
from nasprune.errors import MissingJobsError
from nasprune.search import (Experiment, ReplaySource, Rung, Schedule, enqueue_candidates, hyperband, replay_objective,
                             run_brackets, run_schedule, successive_halving)
from nasprune.zerocost import SCORES

__all__ = ["COST_TOLERANCE", "GOAL_COST", "GOAL_P", "HALF_FILTER", "HALF_FILTERS", "LIVE", "OPTUNA_BASELINES",
           "PAPER_GOAL", "POOLS", "REGRET", "STRATEGIES", "UNDER_TEST", "UNSEEN", "WHOLE_STEPS", "Pool", "PoolReading",
           "Strategy", "available", "beaten_at_equal_cost", "best_by_budget", "ceiling", "cheapest_everywhere", "choose_default",
           "confirm_unseen", "confirmed", "cost_at", "cost_model", "evaluate", "live_against_replay", "p_interval",
           "paper_cost", "plot", "pool_table", "repetitions", "replay_pool", "strategies", "summarise", "truth_seeds",
           "zero_cost_table"]

#: The issue's goals, as PLAN.md's decision rule reads them, and the default's goal cost at 720 candidates.
GOAL_COST, GOAL_P, REGRET, PAPER_GOAL = 0.05, 0.90, 0.2, 0.02
#: Two median goal costs closer than this are equal: they differ only by the zero-cost scoring's measured seconds.
COST_TOLERANCE = 0.001
#: Whole-set SGD steps of one candidate: 10 epochs of ceil(50,000 / 128) batches.
WHOLE_STEPS = 3_910


@dataclass(frozen=True)
class Pool:
    """A pool whose ground truth and random draws exist: its name and folder."""

    name: str
    directory: Path


POOLS = (Pool("development", Path("results/proxy-benchmark")), Pool("competitive", Path("results/proxy-benchmark-comp")),
         Pool("fmnist-ref", Path("results/proxy-benchmark-ref")))
#: PLAN.md's "A pool not yet seen": trained for the confirmation below (``scripts/budget_unseen.py``).
UNSEEN = Pool("unseen", Path("results/budget-search/unseen"))


@dataclass(frozen=True)
class Strategy:
    """One strategy of PLAN.md: a family, a name, and one schedule, Hyperband's brackets, or an Optuna pruner (made
    fresh for each repetition) over the whole set's epochs."""

    family: str
    name: str
    schedule: Schedule | None = None
    brackets: tuple[tuple[int, Schedule], ...] | None = None
    pruner: Callable[[], optuna.pruners.BasePruner] | None = None


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

#: Added after PLAN.md's first reading (listed at its end): Optuna's own pruners on the whole set, as an Optuna user
#: writes them (``nasprune.search.search_on_proxy`` with ``candidates``), replayed from the per-epoch curves. Baselines:
#: the decision rule reads only :data:`STRATEGIES`.
OPTUNA_BASELINES = (
    Strategy("optuna pruner", "optuna:asha-eta3",
             pruner=lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)),
    Strategy("optuna pruner", "optuna:hyperband-eta3",
             pruner=lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=10, reduction_factor=3)),
)


#: Added with the pool not yet seen, before its jobs ran and before any replay of it (PLAN.md, "A pool not yet seen"):
#: the cheapest strategy of the first reading with half its proxy rung (1.7% at 720 candidates), its top one trained
#: (B, under test) or its top 2 or 3 (reported beside it). PLAN.md's first rule does not read them.
HALF_FILTERS = tuple(_one("zero-cost filter, proxy, top k", f"zc:zico/6>random-pc100@400>top{k}>whole",
                          Rung("zerocost:zico", eta=6), Rung("random-pc100", keep=k), Rung("whole")) for k in (1, 2, 3))
HALF_FILTER = HALF_FILTERS[0]
#: The two strategies under test on the pool not yet seen, A and B of PLAN.md.
UNDER_TEST = ("zc:zico/3>random-pc100@400>top1>whole", HALF_FILTER.name)


def available(strategy: Strategy, jobs: pd.DataFrame) -> bool:
    """Whether the pool has every training set the strategy's rungs read (the competitive pool and fmnist-ref have no
    20-per-class draws, say)."""
    from nasprune.proxies import draw_name

    if strategy.pruner is not None:
        return "whole" in set(jobs["training_set"])
    schedules = [strategy.schedule] if strategy.brackets is None else [b for _, b in strategy.brackets]
    names = set(jobs["training_set"])
    return all(r.zero_cost or r.source in names or draw_name(r.source, 0) in names
               for schedule in schedules for r in schedule.rungs)


def repetitions(draws: int = 20, seeds: Sequence[int] = (0, 1)) -> list[tuple[int, int]]:
    """PLAN.md's repetitions: every random draw with every whole-set seed."""
    return [(d, s) for d in range(draws) for s in seeds]


def truth_seeds(jobs: pd.DataFrame, candidates: Sequence[str], seeds: Sequence[int] = (0, 1)) -> tuple[int, ...]:
    """The whole-set seeds finished on every candidate: a pool still training reads only those."""
    whole = jobs[jobs["training_set"] == "whole"]
    return tuple(s for s in seeds if set(candidates) <= set(whole.loc[whole["seed"] == s, "candidate"]))


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

        if strategy.pruner is not None:
            chosen, steps, seconds, chosen_whole = _optuna_replay(strategy, candidates, history, whole, trains["whole"],
                                                                  draw, seed)
            ranking, scoring = [chosen] + [c for c in candidates if c != chosen], 0.0
        elif strategy.brackets is not None:
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
                     "kendall": float(stats.kendalltau(score, truth["val_acc"])[0]) if strategy.schedule
                     else float("nan"),
                     "ndcg": ndcg(score.to_numpy(), truth["val_acc"].to_numpy(), k) if strategy.schedule
                     else float("nan"),
                     "steps": steps, "scoring_seconds": scoring, "seconds": seconds + scoring,
                     "goal_cost": (spent - chosen_whole) / (n * WHOLE_STEPS),
                     "total_cost": (spent - chosen_whole + WHOLE_STEPS) / (n * WHOLE_STEPS)})
    return pd.DataFrame(rows)


def _optuna_replay(strategy: Strategy, candidates: Sequence[str], history: pd.DataFrame, whole: pd.DataFrame,
                   train, draw: int, seed: int) -> tuple[str, float, float, float]:
    """One repetition of an Optuna pruner: the pool queued in an order drawn from (draw, seed), each trial reporting
    its whole-set run's recorded validation accuracy per epoch (seed ``seed``); the chosen net (the best finished
    trial), the SGD steps and seconds of the epochs trained, and the chosen net's own steps."""
    order = list(np.random.default_rng([draw, seed]).permutation(candidates))
    study = optuna.create_study(direction="maximize", pruner=strategy.pruner(),
                                study_name=f"{strategy.name}-d{draw}-s{seed}")
    enqueue_candidates(study, order)
    study.optimize(replay_objective(history, candidates, "whole", seed), n_trials=len(candidates))
    epochs = {t.user_attrs["candidate"]: t.user_attrs["epochs"] for t in study.trials}
    rows = whole[whole["seed"] == seed].set_index("candidate")
    per_epoch = train.steps(int(rows["images"].iloc[0]), epochs=1)
    seconds = float(sum(rows.loc[c, "seconds"] * e / int(rows.loc[c, "epochs"]) for c, e in epochs.items()))
    chosen = study.best_trial.user_attrs["candidate"]
    return chosen, float(sum(epochs.values()) * per_epoch), seconds, float(epochs[chosen] * per_epoch)


@dataclass(frozen=True)
class PoolReading:
    """One pool replayed: every repetition, the summary per strategy (with its cost at 720 candidates and the pool's
    size), the strategies whose rungs reach candidates the pool did not train, the whole-set seeds read, and the jobs
    and zero-cost tables read."""

    reps: pd.DataFrame
    summary: pd.DataFrame
    gaps: list[str]
    seeds: tuple[int, ...]
    jobs: pd.DataFrame
    zero_cost: dict[int, pd.DataFrame]


def replay_pool(pool: Pool, out: Path, candidates: Sequence[Strategy]) -> PoolReading | None:
    """Replay ``candidates`` over the pool's finished jobs; None while no whole-set seed has finished on every
    candidate (a pool still training reads only the seeds that have)."""
    experiment = Experiment.load(pool.directory)
    jobs, history = (pd.read_csv(pool.directory / f) for f in ("jobs.csv", "history.csv"))
    zero_cost = zero_cost_table(pool, out)
    seeds = truth_seeds(jobs, experiment.candidates)
    if not seeds:
        return None
    jobs = jobs[(jobs["training_set"] != "whole") | jobs["seed"].isin(seeds)]
    per, gaps = [], []
    for s in (s for s in candidates if available(s, jobs)):
        try:
            per.append(evaluate(s, jobs, history, experiment, zero_cost.__getitem__, repetitions(seeds=seeds)))
        except MissingJobsError:  # a rung reaches candidates whose jobs this pool did not train
            gaps.append(s.name)
    reps = pd.concat(per, ignore_index=True)
    reps.insert(0, "pool", pool.name)
    summary = summarise(reps)
    by_name = {s.name: s for s in candidates}
    models = {name: cost_model(by_name[name], jobs, history, experiment, zero_cost[0]) for name in summary["strategy"]}
    summary["paper_cost"] = [cost_at(models[s], 720) if models[s] else float("nan") for s in summary["strategy"]]
    summary["candidates"] = len(experiment.candidates)
    return PoolReading(reps, summary, gaps, seeds, jobs, zero_cost)


def summarise(reps: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: P(regret <= 0.2), the median and 90th-percentile regret, the mean Kendall and NDCG, and the
    median and range of the goal cost and the total cost."""
    g = reps.groupby(["family", "strategy"], sort=False)
    out = g.agg(reps_=("regret", "size"), p_within=("regret", lambda r: float((r <= REGRET + 1e-9).mean())),
                regret_median=("regret", "median"), regret_p90=("regret", lambda r: float(np.percentile(r, 90))),
                kendall=("kendall", "mean"), ndcg=("ndcg", "mean"), goal_cost=("goal_cost", "median"),
                goal_cost_max=("goal_cost", "max"), total_cost=("total_cost", "median"),
                minutes=("seconds", lambda s: float(s.median() / 60)))
    out = out.rename(columns={"reps_": "repetitions"}).reset_index()
    bounds = [p_interval(reps[reps["strategy"] == name]) for name in out["strategy"]]
    out.insert(out.columns.get_loc("p_within") + 1, "p_low", [lo for lo, _ in bounds])
    out.insert(out.columns.get_loc("p_low") + 1, "p_high", [hi for _, hi in bounds])
    return out


def p_interval(reps: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A 95% bootstrap interval of P(regret <= 0.2) over the random draws: draws resampled with replacement, each
    with all its seeds' repetitions (a draw's seeds share its proxy, so they are not independent). A strategy that
    reads no proxy gives every draw the same result, and its interval only says that."""
    within = (reps["regret"] <= REGRET + 1e-9).groupby(reps["draw"]).agg(["sum", "size"])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(within), size=(n_boot, len(within)))
    p = within["sum"].to_numpy()[picks].sum(axis=1) / within["size"].to_numpy()[picks].sum(axis=1)
    return float(np.percentile(p, 2.5)), float(np.percentile(p, 97.5))


def choose_default(summary: pd.DataFrame) -> pd.Series | None:
    """PLAN.md's rule on the development pool: among the strategies with a median goal cost at most 5%, the highest
    P(regret <= 0.2); ties to the lower cost, then the higher NDCG. None when no strategy is that cheap."""
    later = {s.name for s in (*OPTUNA_BASELINES, *HALF_FILTERS)}  # added after the first reading: not candidates
    planned = summary[~summary["strategy"].isin(later)]
    cheap = planned[planned["goal_cost"] <= GOAL_COST + 1e-12]
    if cheap.empty:
        return None
    ranked = cheap.assign(ndcg_=cheap["ndcg"].fillna(-np.inf)).sort_values(
        ["p_within", "goal_cost", "ndcg_"], ascending=[False, True, False], kind="mergesort")
    return ranked.iloc[0].drop("ndcg_")


def confirmed(summary: pd.DataFrame, strategy: str) -> bool:
    """PLAN.md's confirmation on a held-out pool: P(regret <= 0.2) at least 0.90 and a median goal cost at most 5%;
    a strategy the pool cannot run is not confirmed."""
    if strategy not in set(summary["strategy"]):
        return False
    row = summary.set_index("strategy").loc[strategy]
    return bool(row["p_within"] >= GOAL_P and row["goal_cost"] <= GOAL_COST + 1e-12)


def paper_cost(summaries: Mapping[str, pd.DataFrame], strategy: str) -> float:
    """The strategy's goal cost at 720 candidates by the worst pool's cost model."""
    return max(s.set_index("strategy").loc[strategy, "paper_cost"] for s in summaries.values())


def confirm_unseen(summaries: Mapping[str, pd.DataFrame],
                   repetitions: int = 40) -> tuple[str | None, dict[str, dict[str, bool]]]:
    """PLAN.md's rule for the pool not yet seen: whether each pool confirms each strategy of :data:`UNDER_TEST`
    (:func:`confirmed`), and the default: of those every pool confirms, the one cheaper at 720 candidates
    (:func:`paper_cost`), else None. A pool with fewer than ``repetitions`` of a strategy (a partial reading) decides
    nothing: None."""
    verdicts = {name: {pool: confirmed(summary, name) for pool, summary in summaries.items()} for name in UNDER_TEST}
    partial = any((s.loc[s["strategy"].isin(UNDER_TEST), "repetitions"] < repetitions).any()
                  for s in summaries.values())
    passed = [name for name, by_pool in verdicts.items() if all(by_pool.values())]
    if partial or not passed:
        return None, verdicts
    return min(passed, key=lambda name: (paper_cost(summaries, name), UNDER_TEST.index(name))), verdicts


def cheapest_everywhere(summaries: Mapping[str, pd.DataFrame],
                        names: Sequence[str] | None = None) -> tuple[str, float] | None:
    """Of ``names`` (None: every strategy), the one replayed on every pool with P(regret <= 0.2) >= 0.90 on each,
    and the lowest worst-pool median goal cost; with that cost."""
    table = pd.concat([s.set_index("strategy")[["p_within", "goal_cost"]].add_prefix(f"{p}:")
                       for p, s in summaries.items()], axis=1).dropna()
    if names is not None:
        table = table[table.index.isin(names)]
    ok = table[[c for c in table if c.endswith("p_within")]].min(axis=1) >= GOAL_P
    worst = table[[c for c in table if c.endswith("goal_cost")]].max(axis=1)[ok]
    return (worst.idxmin(), float(worst.min())) if len(worst) else None


def beaten_at_equal_cost(summary: pd.DataFrame, name: str) -> pd.DataFrame:
    """The issue's second goal, read for ``name`` on one pool: the other strategies whose median goal cost is at most
    its own (within :data:`COST_TOLERANCE`) and whose P(regret <= 0.2) or NDCG is higher (NDCG where both have
    one)."""
    me = summary.set_index("strategy").loc[name]
    others = summary[(summary["strategy"] != name) & (summary["goal_cost"] <= me["goal_cost"] + COST_TOLERANCE)]
    better_p = others["p_within"] > me["p_within"] + 1e-12
    better_ndcg = others["ndcg"].notna() & pd.notna(me["ndcg"]) & (others["ndcg"] > me["ndcg"] + 1e-12)
    marked = others.assign(better_p=better_p, better_ndcg=better_ndcg)  # before filtering: an empty frame's assign
    return marked[marked["better_p"] | marked["better_ndcg"]]              # would take the Series' index as its own


#: ``nasprune run fmnist-schedule --out`` this: the default run live on fmnist-ref's candidates.
LIVE = Path("results/budget-search/live-fmnist")


def live_against_replay(live: Path, pool_jobs: pd.DataFrame, zero_cost: pd.DataFrame,
                        replayed: pd.DataFrame) -> pd.DataFrame:
    """The live run's rungs (its ``schedule.csv``) beside what the replay read for the same candidates: ZiCo with
    seed 0, the stored ``random-pc100-d0`` jobs (the same images and training seed, validated on the whole split,
    where the shipped schedule validates on 2,000 images), the replay's choice in repetition (draw 0, seed 0) of
    ``replayed`` (:func:`evaluate`'s rows), and the live choice's regret against the pool's truth."""
    table = pd.read_csv(live / "schedule.csv")
    stored = {0: zero_cost["zico"],
              1: pool_jobs[(pool_jobs["training_set"] == "random-pc100-d0") & (pool_jobs["seed"] == 0)]
              .set_index("candidate")["val_acc"]}
    table["replayed"] = [stored[r.rung].get(r.candidate, np.nan) if r.rung in stored else np.nan
                         for r in table.itertuples()]
    rep = replayed[(replayed["draw"] == 0) & (replayed["seed"] == 0)].iloc[0]
    truth = candidate_means(pool_jobs, "whole")["test_acc"]
    return table.assign(replay_chose=rep["chosen"],
                        truth_regret=float(truth.max() - truth[table["candidate"].iloc[-1]]))


def ceiling(jobs: pd.DataFrame) -> dict:
    """The pool's noise ceiling (one whole-set seed against the other) at its NDCG's k."""
    return noise_ceiling(jobs, k=top_quartile_k(candidate_means(jobs, "whole")["val_acc"].notna().sum()), n_boot=200)


# --- the pools' zero-cost scores, and the paper's scale -----------------------------------------------------------


def zero_cost_table(pool: Pool, out: Path, seeds: Sequence[int] = (0, 1),
                    experiment: Experiment | None = None) -> dict[int, pd.DataFrame]:
    """Every zero-cost score of the pool's candidates, per seed (the networks' initialisation and the batch's),
    computed once and kept in ``out/zerocost-<pool>.csv``; ``experiment`` None reads the pool's."""
    from nasprune.zerocost import score_candidates

    path = out / f"zerocost-{pool.name}.csv"
    experiment = experiment or Experiment.load(pool.directory)
    if path.exists():
        table = pd.read_csv(path, index_col="candidate")
        if sorted(set(table.index)) == sorted(experiment.candidates) and set(table["seed"]) == set(seeds):
            return {s: table[table["seed"] == s].drop(columns="seed") for s in seeds}
    dataset = experiment.dataset.load()
    tables = {s: score_candidates(dataset, experiment.candidates, seed=s) for s in seeds}
    pd.concat([t.assign(seed=s) for s, t in tables.items()]).rename_axis("candidate").to_csv(path)
    return tables


def cost_model(strategy: Strategy, jobs: pd.DataFrame, history: pd.DataFrame, experiment: Experiment,
               zero_cost: pd.DataFrame) -> tuple[list[tuple[Rung, float]], float] | None:
    """What ``strategy`` spends per candidate at each rung (SGD steps, zero-cost seconds converted at the whole set's
    seconds per step), from one replay (draw 0, seed 0), and the whole-set steps its chosen net received; None for
    Hyperband, whose brackets draw their candidates, and for Optuna's pruners, whose cost depends on the order."""
    if strategy.schedule is None:
        return None
    trains = {name: s.train for name, s in experiment.training_sets.items()}
    whole = jobs[jobs["training_set"] == "whole"]
    steps_per_second = len(whole) * WHOLE_STEPS / float(whole["seconds"].sum())
    result = run_schedule(strategy.schedule, experiment.candidates,
                          ReplaySource(jobs, history, trains, draw=0, seed=0, zero_cost=zero_cost))
    per = [(r.rung, (r.steps + r.scoring_seconds * steps_per_second) / len(r.candidates)) for r in result.rungs]
    return per, result.whole_steps.get(result.chosen, 0.0)


def cost_at(model: tuple[list[tuple[Rung, float]], float], n: int) -> float:
    """The goal cost at ``n`` candidates by a :func:`cost_model`: each rung reads the candidates the previous one
    kept (its share, or its top k, of n), at its measured steps per candidate; the chosen net's own whole-set steps
    left out; over n x 3,910."""
    per, chosen_whole = model
    alive, spent = n, 0.0
    for rung, steps in per:
        spent += alive * steps
        alive = rung.kept(alive)
    return (spent - chosen_whole) / (n * WHOLE_STEPS)


# --- the write-up -------------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.1f}%"


def pool_table(summary: pd.DataFrame) -> list[str]:
    """Every strategy of one pool, cheapest first."""
    from nasprune.analysis import markdown_table

    rows = [[r.family, f"`{r.strategy}`", f"{r.p_within:.2f}", f"{r.regret_median:.2f}", f"{r.regret_p90:.2f}",
             "n/a" if pd.isna(r.kendall) else f"{r.kendall:.3f}", "n/a" if pd.isna(r.ndcg) else f"{r.ndcg:.3f}",
             _pct(r.goal_cost), _pct(r.goal_cost_max), _pct(r.total_cost), _pct(r.paper_cost), f"{r.minutes:.1f}"]
            for r in summary.sort_values(["goal_cost", "strategy"]).itertuples()]
    return markdown_table(["family", "strategy", "P(regret <= 0.2)", "regret median", "regret 90th pct", "Kendall",
                           "NDCG", "goal cost (median)", "goal cost (max)", "total cost", "at 720 candidates",
                           "minutes"], rows)


def best_by_budget(summaries: dict[str, pd.DataFrame], budgets=(0.01, 0.02, 0.05, 0.10, 0.25)) -> list[str]:
    """Per budget and pool, the strategy with the highest P(regret <= 0.2) whose median goal cost fits it."""
    from nasprune.analysis import markdown_table

    rows = []
    for budget in budgets:
        cells = []
        for summary in summaries.values():
            fit = summary[summary["goal_cost"] <= budget + 1e-12].sort_values(["p_within", "goal_cost"],
                                                                           ascending=[False, True], kind="mergesort")
            cells.append("none" if fit.empty else
                         f"`{fit.iloc[0]['strategy']}`: {fit.iloc[0]['p_within']:.2f} at {_pct(fit.iloc[0]['goal_cost'])}")
        rows.append([_pct(budget), *cells])
    return markdown_table(["goal cost at most", *summaries], rows)


def plot(summaries: dict[str, pd.DataFrame], path: Path, highlight: str | None = None) -> Path:
    """P(regret <= 0.2) against the goal cost, one panel per pool (two to a row), one colour per family, the goals
    dotted, and ``highlight`` (the default) ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(f for s in summaries.values() for f in s["family"]))
    cols = 2 if len(summaries) > 3 else len(summaries)
    rows_ = -(-len(summaries) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(5.6 * cols, 4.2 * rows_ + 0.8), squeeze=False, sharey=True,
                             layout="constrained")
    handles = {}
    for ax, (pool, summary) in zip(axes.flat, summaries.items()):
        for j, family in enumerate(families):
            rows = summary[summary["family"] == family]
            handles[family] = ax.scatter(100 * rows["goal_cost"].clip(lower=1e-4), rows["p_within"], s=28,
                                         color=f"C{j}", marker="osD^v<>p"[j % 8], alpha=0.85, edgecolor="k", lw=0.4)
        if highlight is not None and highlight in set(summary["strategy"]):
            r = summary.set_index("strategy").loc[highlight]
            handles[f"the default: {highlight}"] = ax.scatter(100 * r["goal_cost"], r["p_within"], s=160,
                                                              facecolor="none", edgecolor="k", lw=1.5)
        handles["the goal: P >= 0.90 at <= 5%"] = ax.axvline(100 * GOAL_COST, color="0.3", ls=":", lw=1.2)
        ax.axhline(GOAL_P, color="0.3", ls=":", lw=1.2)
        ax.set_xscale("log")
        ax.set_xlabel("goal cost: % of the whole-set search (log)")
        ax.set_ylabel("P(regret <= 0.2 points), 40 repetitions")
        ax.set_title(f"{pool} ({int(summary['candidates'].iloc[0])} candidates)", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(summaries):]:
        ax.set_visible(False)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Budget search, replayed: how often each strategy's choice is within 0.2 points of the best, "
                 "against its cost", fontsize=11)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
