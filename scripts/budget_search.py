"""Writes results/budget-search/: every strategy of its PLAN.md replayed over the finished jobs of the three pools
(the study: scripts/studies/budget_search.py).

    python scripts/budget_search.py              # zero-cost scores computed once (minutes), then the replays
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import optuna
import pandas as pd

from nasprune.analysis import markdown_table, write_readme
from nasprune.provenance import provenance
from nasprune.search import Experiment
from studies.budget_search import (GOAL_COST, GOAL_P, OPTUNA_BASELINES, POOLS, REGRET, STRATEGIES, available, best_by_budget, ceiling,
                                   choose_default, confirmed, cost_at, cost_model, evaluate, plot, pool_table,
                                   repetitions, summarise, zero_cost_table)

OUT = Path("results/budget-search")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per replayed trial otherwise
    out, start = Path(args.out), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    all_reps, summaries, ceilings, sizes = [], {}, {}, {}
    for pool in POOLS:
        experiment = Experiment.load(pool.directory)
        jobs, history = (pd.read_csv(pool.directory / f) for f in ("jobs.csv", "history.csv"))
        zero_cost = zero_cost_table(pool, out)
        runnable = [s for s in (*STRATEGIES, *OPTUNA_BASELINES) if available(s, jobs)]
        reps = pd.concat([evaluate(s, jobs, history, experiment, zero_cost.__getitem__, repetitions())
                          for s in runnable], ignore_index=True)
        reps.insert(0, "pool", pool.name)
        summary = summarise(reps)
        n = len(experiment.candidates)
        models = {s.name: cost_model(s, jobs, history, experiment, zero_cost[0]) for s in runnable}
        summary["paper_cost"] = [cost_at(models[s], 720) if models[s] else float("nan") for s in summary["strategy"]]
        summary["candidates"] = n
        summaries[pool.name], ceilings[pool.name], sizes[pool.name] = summary, ceiling(jobs), n
        all_reps.append(reps)
        print(f"{pool.name}: {len(runnable)} of {len(STRATEGIES) + len(OPTUNA_BASELINES)} strategies x {len(repetitions())} repetitions "
              "replayed (the others read training sets this pool does not have)")
    reps = pd.concat(all_reps, ignore_index=True)
    reps.to_csv(out / "repetitions.csv", index=False)
    pd.concat([s.assign(pool=p) for p, s in summaries.items()], ignore_index=True).to_csv(out / "summary.csv",
                                                                                         index=False)
    plot(summaries, out / "cost_quality.png")
    body = write_up(summaries, ceilings, sizes)
    prov = provenance(time.perf_counter() - start, repetitions="random draws 0-19 x whole-set seeds 0, 1",
                      zero_cost_batch="128 training images, stratified, seed = the repetition's whole-set seed",
                      strategies=f"{len(STRATEGIES)} planned + {len(OPTUNA_BASELINES)} Optuna pruner baselines")
    write_readme(out / "README.md", "Budget search: the best architecture at a share of the cost, replayed", body, prov)
    print(f"{out / 'README.md'} written")


def write_up(summaries: dict[str, pd.DataFrame], ceilings: dict[str, dict], sizes: dict[str, int]) -> list[str]:
    dev = summaries["development"]
    default = choose_default(dev)
    lines = ["Plan, strategies and decision rule, fixed before any schedule was evaluated: [PLAN.md](PLAN.md). Every "
             "strategy replayed through nasprune's scheduler over the finished jobs of three pools, 40 repetitions "
             "each (20 random draws x 2 whole-set seeds); per repetition: repetitions.csv; per strategy: summary.csv; "
             "zero-cost scores: zerocost-<pool>.csv.", "",
             f"Goal (the issue's): the choice within {REGRET} points of the whole set's best test accuracy in at least "
             f"{GOAL_P:.0%} of repetitions, for at most {GOAL_COST:.0%} of the whole-set search (the goal cost: the "
             "chosen net's own whole-set training left out; the total cost counts it).", "",
             "How much 40 repetitions are: a strategy that reads no proxy (zero-cost scores, the whole set alone) varies "
             "only with the whole-set seed, so its 40 are 2 distinct runs and its P moves in steps of 0.5; a P of 1.00 "
             "there rests on two. A strategy with a proxy rung varies with the 20 draws too.", "",
             "## The decision", ""]
    if default is None:
        lines += ["No strategy has a median goal cost within 5% on the development pool.", ""]
    else:
        name = default["strategy"]
        verdicts = {p: confirmed(s, name) for p, s in summaries.items() if p != "development"}
        rows = []
        for pool, summary in summaries.items():
            if name not in set(summary["strategy"]):
                rows.append([pool, "not available", "", "", "", "", ""])
                continue
            r = summary.set_index("strategy").loc[name]
            rows.append([pool, f"{r.p_within:.2f}", f"{r.regret_median:.2f}", _num(r.ndcg), f"{100 * r.goal_cost:.1f}%",
                         f"{100 * r.total_cost:.1f}%", f"{100 * r.paper_cost:.2f}%" if pd.notna(r.paper_cost) else "n/a"])
        met_dev = default["p_within"] >= GOAL_P
        lines += [f"PLAN.md's rule picks **`{name}`** ({default['family']}) on the development pool: P(regret <= 0.2) "
                  f"{default['p_within']:.2f} at a median goal cost of {100 * default['goal_cost']:.1f}%"
                  + ("" if met_dev else f", **below the {GOAL_P:.0%} goal** there") + ". Held out: "
                  + "; ".join(f"{p} {'confirms it' if v else 'does not confirm it'}" for p, v in verdicts.items())
                  + ".", "",
                  *markdown_table(["pool", "P(regret <= 0.2)", "regret median", "NDCG", "goal cost", "total cost",
                                   "at 720 candidates"], rows), ""]
        everywhere = _cheapest_everywhere(summaries)
        lines += ["The cheapest strategy at P(regret <= 0.2) >= 0.90 on every pool: " + (
            f"**`{everywhere[0]}`**, at a median goal cost of {everywhere[1]} (the worst pool), and "
            f"{_paper(summaries, everywhere[0])} at 720 candidates. It was found by reading all three pools, so it is "
            "a candidate for a pool not seen yet, not a confirmed default." if everywhere else
            f"none of the {len(STRATEGIES) + len(OPTUNA_BASELINES)}."), ""]
    lines += _optuna_section(summaries)
    missing = {p: [s.name for s in STRATEGIES if s.name not in set(summary["strategy"])] for p, summary in
               summaries.items()}
    lines += [f"Not available on {p} (it has no such training set): {', '.join(f'`{m}`' for m in names)}." for p, names in
              missing.items() if names] + [""]
    lines += ["## The best buy at each budget", "",
              "Per budget, the strategy with the highest P(regret <= 0.2) whose median goal cost fits, per pool "
              "(descriptive: the rule above is the decision).", "", *best_by_budget(summaries), "",
              "![quality against cost](cost_quality.png)", ""]
    for pool, summary in summaries.items():
        c = ceilings[pool]
        lines += [f"## {pool} ({sizes[pool]} candidates)", "",
                  f"Noise ceiling (one whole-set seed against the other): Kendall {c.get('kendall_all', float('nan')):.3f}, "
                  f"regret {c.get('regret', float('nan')):.2f} points. Every strategy, cheapest first; minutes: the "
                  "median wall time its replayed jobs took (and its zero-cost scoring) on this 2-core CPU.", "",
                  *pool_table(summary), ""]
    return lines


def _optuna_section(summaries: dict[str, pd.DataFrame]) -> list[str]:
    """Optuna's pruners on the whole set (added after PLAN.md's first reading): per pool, P, regret and cost."""
    names = [s.name for s in OPTUNA_BASELINES]
    rows = [[pool, f"`{r.strategy}`", f"{r.p_within:.2f}", f"{r.regret_median:.2f}", f"{r.regret_p90:.2f}",
             f"{100 * r.goal_cost:.1f}%", f"{100 * r.goal_cost_max:.1f}%", f"{100 * r.total_cost:.1f}%"]
            for pool, summary in summaries.items() for r in summary[summary["strategy"].isin(names)].itertuples()]
    return ["## Optuna's pruners on the whole set", "",
            "What an Optuna user writes (`nasprune.search.search_on_proxy(..., candidates=pool, pruner=...)`): the "
            "pool queued in an order drawn per repetition, one trial per candidate, its validation accuracy reported "
            "after every epoch of the whole set's 10, the pruner stopping the weak, the best finished trial chosen. "
            "Replayed from the recorded curves (`nasprune.search.replay_objective`; a test checks that the replay "
            "prunes as a live study does). Added after PLAN.md's first reading as baselines; the rule does not read "
            "them. The order matters: trials run one after another, and asynchronous successive halving promotes "
            "every early trial that has no competitor yet at its rung.", "",
            *markdown_table(["pool", "strategy", "P(regret <= 0.2)", "regret median", "regret 90th pct",
                             "goal cost (median)", "goal cost (max)", "total cost"], rows), ""]


def _paper(summaries: dict[str, pd.DataFrame], strategy: str) -> str:
    """The strategy's goal cost at 720 candidates, over the pools' cost models."""
    costs = [s.set_index("strategy").loc[strategy, "paper_cost"] for s in summaries.values()]
    low, high = f"{100 * min(costs):.1f}", f"{100 * max(costs):.1f}"
    return f"{low}%" if low == high else f"{low}-{high}%"


def _num(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.3f}"


def _cheapest_everywhere(summaries: dict[str, pd.DataFrame]) -> tuple[str, str] | None:
    """The strategy with P(regret <= 0.2) >= 0.90 on every pool and the lowest worst-pool median goal cost."""
    table = pd.concat([s.set_index("strategy")[["p_within", "goal_cost"]].add_prefix(f"{p}:")
                       for p, s in summaries.items()], axis=1)
    ok = table[[c for c in table if c.endswith("p_within")]].min(axis=1) >= GOAL_P
    worst = table[[c for c in table if c.endswith("goal_cost")]].max(axis=1)[ok]
    return (worst.idxmin(), f"{100 * worst.min():.1f}%") if len(worst) else None


if __name__ == "__main__":
    main()
