"""Writes results/budget-search/: every strategy of its PLAN.md replayed over the finished jobs of the three pools of
the first reading and, once it has jobs, the pool not yet seen (scripts/budget_unseen.py trains it; the study:
scripts/studies/budget_search.py).

    python scripts/budget_search.py              # zero-cost scores computed once (minutes), then the replays
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import optuna
import pandas as pd
from scipy import stats

from nasprune.analysis import markdown_table, write_readme
from nasprune.provenance import provenance
from studies.budget_search import (COST_TOLERANCE, GOAL_COST, GOAL_P, HALF_FILTERS, LIVE, OPTUNA_BASELINES,
                                   PAPER_GOAL, POOLS, REGRET, STRATEGIES, UNDER_TEST, UNSEEN, beaten_at_equal_cost,
                                   best_by_budget, ceiling, cheapest_everywhere, choose_default, confirm_unseen,
                                   confirmed, live_against_replay, paper_cost, plot, pool_table, repetitions,
                                   replay_pool)

OUT = Path("results/budget-search")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per replayed trial otherwise
    out, start = Path(args.out), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    summaries, ceilings, gaps, seeds_of, all_reps, live = {}, {}, {}, {}, [], None
    pools = [*POOLS, UNSEEN] if (UNSEEN.directory / "jobs.csv").exists() else list(POOLS)
    everything = (*STRATEGIES, *HALF_FILTERS, *OPTUNA_BASELINES)
    for pool in pools:
        reading = replay_pool(pool, out, everything)
        if reading is None:
            print(f"{pool.name}: no whole-set seed has finished on every candidate yet; left out")
            continue
        summaries[pool.name], ceilings[pool.name] = reading.summary, ceiling(reading.jobs)
        gaps[pool.name], seeds_of[pool.name] = reading.gaps, reading.seeds
        all_reps.append(reading.reps)
        if pool.name == "fmnist-ref" and (LIVE / "schedule.csv").exists():
            live = live_against_replay(LIVE, reading.jobs, reading.zero_cost[0],
                                       reading.reps[reading.reps["strategy"] == UNDER_TEST[0]])
        print(f"{pool.name}: {len(reading.summary)} of {len(everything)} strategies x "
              f"{len(repetitions(seeds=reading.seeds))} repetitions replayed (the others read training sets or "
              "candidates this pool does not have)")
    reps = pd.concat(all_reps, ignore_index=True)
    reps.to_csv(out / "repetitions.csv", index=False)
    pd.concat([s.assign(pool=p) for p, s in summaries.items()], ignore_index=True).to_csv(out / "summary.csv",
                                                                                         index=False)
    default = confirm_unseen(summaries)[0] if UNSEEN.name in summaries else None  # None while partial
    plot(summaries, out / "cost_quality.png", highlight=default)
    body = write_up(summaries, ceilings, gaps, seeds_of) + _live_section(live)
    prov = provenance(time.perf_counter() - start, repetitions="random draws 0-19 x whole-set seeds 0, 1",
                      zero_cost_batch="128 training images, stratified, seed = the repetition's whole-set seed",
                      strategies=f"{len(STRATEGIES)} planned + {len(HALF_FILTERS)} added with the pool not yet "
                                 f"seen + {len(OPTUNA_BASELINES)} Optuna pruner baselines",
                      pools=", ".join(summaries))
    write_readme(out / "README.md", "Budget search: the best architecture at a share of the cost, replayed", body, prov)
    print(f"{out / 'README.md'} written")


def write_up(summaries: dict[str, pd.DataFrame], ceilings: dict[str, dict], gaps: dict[str, list[str]],
             seeds_of: dict[str, tuple[int, ...]]) -> list[str]:
    first = {p.name: summaries[p.name] for p in POOLS}  # the first reading's pools
    default = choose_default(first["development"])
    lines = ["Plan, strategies and decision rules, fixed before the data they decide on: [PLAN.md](PLAN.md). Every "
             "strategy replayed through nasprune's scheduler over the finished jobs of the pools, 40 repetitions "
             "each (20 random draws x 2 whole-set seeds); per repetition: repetitions.csv; per strategy: summary.csv; "
             "zero-cost scores: zerocost-<pool>.csv.", "",
             f"Goal (the issue's): the choice within {REGRET} points of the whole set's best test accuracy in at least "
             f"{GOAL_P:.0%} of repetitions, for at most {GOAL_COST:.0%} of the whole-set search (the goal cost: the "
             "chosen net's own whole-set training left out; the total cost counts it).", "",
             "How much 40 repetitions are: a strategy that reads no proxy (zero-cost scores, the whole set alone) varies "
             "only with the whole-set seed, so its 40 are 2 distinct runs and its P moves in steps of 0.5; a P of 1.00 "
             "there rests on two. A strategy with a proxy rung varies with the 20 draws too.", ""]
    lines += _unseen_section(summaries, seeds_of)
    lines += ["## The first reading's decision (three pools)", ""]
    if default is None:
        lines += ["No strategy has a median goal cost within 5% on the development pool.", ""]
    else:
        name = default["strategy"]
        verdicts = {p: confirmed(s, name) for p, s in first.items() if p != "development"}
        met_dev = default["p_within"] >= GOAL_P
        lines += [f"PLAN.md's rule picks **`{name}`** ({default['family']}) on the development pool: P(regret <= 0.2) "
                  f"{default['p_within']:.2f} at a median goal cost of {100 * default['goal_cost']:.1f}%"
                  + ("" if met_dev else f", **below the {GOAL_P:.0%} goal** there") + ". Held out: "
                  + "; ".join(f"{p} {'confirms it' if v else 'does not confirm it'}" for p, v in verdicts.items())
                  + ".", "", *_strategy_table(summaries, name), ""]
        everywhere = cheapest_everywhere(first, [s.name for s in STRATEGIES])
        lines += ["The cheapest strategy of the first reading at P(regret <= 0.2) >= 0.90 on its three pools: " + (
            f"**`{everywhere[0]}`**, at a median goal cost of {100 * everywhere[1]:.1f}% (the worst pool), and "
            f"{_paper(first, everywhere[0])} at 720 candidates. It was found by reading all three pools; the pool not "
            "yet seen (above) is its test." if everywhere else f"none of the {len(STRATEGIES)}."), ""]
    lines += _optuna_section(summaries)
    for p, summary in summaries.items():
        lacking = [s.name for s in STRATEGIES if s.name not in set(summary["strategy"]) and s.name not in gaps[p]]
        if lacking:
            lines += [f"Not available on {p} (it has no such training set): {', '.join(f'`{m}`' for m in lacking)}."]
        if gaps[p]:
            lines += [f"Not available on {p} (a rung reaches candidates whose jobs it did not train): "
                      f"{len(gaps[p])} strategies, e.g. {', '.join(f'`{m}`' for m in gaps[p][:3])}."]
    lines += ["", "## The best buy at each budget", "",
              "Per budget, the strategy with the highest P(regret <= 0.2) whose median goal cost fits, per pool "
              "(descriptive: the rules above decide).", "", *best_by_budget(summaries), "",
              "![quality against cost](cost_quality.png)", ""]
    for pool, summary in summaries.items():
        c = ceilings[pool]
        lines += [f"## {pool} ({int(summary['candidates'].iloc[0])} candidates)", "",
                  f"Noise ceiling (one whole-set seed against the other): Kendall {c.get('kendall_all', float('nan')):.3f}, "
                  f"regret {c.get('regret', float('nan')):.2f} points. Every strategy, cheapest first; minutes: the "
                  "median wall time its replayed jobs took (and its zero-cost scoring) on this 2-core CPU.", "",
                  *pool_table(summary), ""]
    return lines


def _strategy_table(summaries: dict[str, pd.DataFrame], name: str) -> list[str]:
    """One strategy on every pool: P, regret, NDCG, the goal and total cost, and the cost at 720 candidates."""
    rows = []
    for pool, summary in summaries.items():
        if name not in set(summary["strategy"]):
            rows.append([pool, "not available", "", "", "", "", ""])
            continue
        r = summary.set_index("strategy").loc[name]
        rows.append([pool, f"{r.p_within:.2f} [{r.p_low:.2f}, {r.p_high:.2f}]", f"{r.regret_median:.2f}", _num(r.ndcg),
                     f"{100 * r.goal_cost:.1f}%", f"{100 * r.total_cost:.1f}%",
                     f"{100 * r.paper_cost:.2f}%" if pd.notna(r.paper_cost) else "n/a"])
    return markdown_table(["pool", "P(regret <= 0.2) [95% over the draws]", "regret median", "NDCG", "goal cost",
                           "total cost", "at 720 candidates"], rows)


def _unseen_section(summaries: dict[str, pd.DataFrame], seeds_of: dict[str, tuple[int, ...]]) -> list[str]:
    """PLAN.md's "A pool not yet seen": strategies A and B on every pool, the verdicts, and the default."""
    head = ["## The decision: a pool not yet seen", ""]
    if UNSEEN.name not in summaries:
        return head + ["The pool not yet seen has no finished jobs yet (`scripts/budget_unseen.py`).", ""]
    partial = seeds_of[UNSEEN.name] != (0, 1)
    default, verdicts = confirm_unseen(summaries)
    lines = head + [
        "PLAN.md (\"A pool not yet seen\") fixed two strategies and the rule before any job of this pool ran: each is "
        f"confirmed when every pool, this one included, gives it P(regret <= 0.2) >= {GOAL_P:.2f} at a median goal "
        f"cost <= {GOAL_COST:.0%}; the default is the confirmed one cheaper at 720 candidates.", ""]
    if partial:
        lines += [f"**Partial**: the whole set's seeds finished on every candidate of this pool: "
                  f"{list(seeds_of[UNSEEN.name]) or 'none'}; by PLAN.md a partial reading decides nothing.", ""]
    for label, name in zip("AB", UNDER_TEST):
        fails = [p for p, ok in verdicts[name].items() if not ok]
        lines += [f"**{label}. `{name}`**: " + ("confirmed on every pool." if not fails else
                                                 f"not confirmed on {', '.join(fails)}."), "",
                  *_strategy_table(summaries, name), ""]
    lines += ["At equal or lower cost (the issue's second goal): per pool, the strategies whose median goal cost is at "
              f"most the strategy's own (within {100 * COST_TOLERANCE:.1f} point, the zero-cost scoring's noise) and "
              "whose P(regret <= 0.2) or NDCG is higher.", "",
              *markdown_table(["strategy", "pool", "higher P at <= its cost", "higher NDCG at <= its cost"],
                              [[label, pool, _names(b[b["better_p"]]), _names(b[b["better_ndcg"]])]
                               for label, name in zip("AB", UNDER_TEST) for pool, summary in summaries.items()
                               if name in set(summary["strategy"])
                               for b in [beaten_at_equal_cost(summary, name)]]), ""]
    if partial:
        lines += ["No decision until the pool has finished.", ""]
    elif default is None:
        lines += ["**No confirmed default**: neither strategy meets the rule on every pool. nasprune's recommendation "
                  "stays as it was (README).", ""]
    else:
        beaten = {p: beaten_at_equal_cost(s, default) for p, s in summaries.items()}
        missed = [p for p, b in beaten.items() if len(b)]
        rivals = sorted({n for b in beaten.values() for n in b["strategy"]})
        robust = [n for n in rivals if all(n in set(s["strategy"]) and
                                           s.set_index("strategy").loc[n, "p_within"] >= GOAL_P
                                           for s in summaries.values())]
        lines += [f"The default meets the second goal (at or above every strategy of equal or lower cost on P and "
                  f"NDCG) on {', '.join(p for p in summaries if p not in missed) or 'no pool'}"
                  + (f", and misses it on {', '.join(missed)}, where {', '.join(f'`{n}`' for n in rivals)} "
                     "score higher on P or NDCG; " + (
                         f"of these, {', '.join(f'`{n}`' for n in robust)} also reach P >= {GOAL_P:.2f} on every pool."
                         if robust else f"none of them reaches P >= {GOAL_P:.2f} on every pool.")
                     if missed else "."), ""]
        worst = paper_cost(summaries, default)
        lines += [f"**The default: `{default}`**, confirmed on all {len(summaries)} pools, "
                  f"{_paper(summaries, default)} of the whole-set search at 720 candidates "
                  f"({'within' if worst <= PAPER_GOAL + 1e-12 else 'over'} the issue's {PAPER_GOAL:.0%} there).", ""]
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


def _live_section(live: pd.DataFrame | None) -> list[str]:
    """The default run live (``nasprune run fmnist-schedule``) against its replay on fmnist-ref."""
    if live is None:
        return []
    chosen, rows = live["candidate"].iloc[-1], []
    for r, g in live.groupby("rung"):
        both = g.dropna(subset=["replayed"])
        rows.append([r, g["source"].iloc[0], len(g), int(g["kept"].sum()),
                     f"{(both['value'] - both['replayed']).abs().max():.2g}" if len(both) else "n/a",
                     f"{stats.kendalltau(both['value'], both['replayed'])[0]:.3f}" if len(both) > 1 else "n/a"])
    return ["## The default, run live", "",
            f"`nasprune run fmnist-schedule --out {LIVE}`: the default schedule trained by the runner on fmnist-ref's "
            f"36 candidates ([{LIVE.name}/schedule.md]({LIVE.name}/schedule.md)). It chose `{chosen}`, regret "
            f"{live['truth_regret'].iloc[0]:.2f} points against the ground truth; the replay's repetition with the "
            f"same draw and seed (0, 0) chose `{live['replay_chose'].iloc[0]}`. Per rung, the live values against "
            "those the replay read: ZiCo with seed 0, and the stored `random-pc100-d0` jobs (the same images and "
            "training seed, but validated on the whole split where the shipped schedule validates on 2,000 images, "
            "and trained by earlier code: see val-subset/).", "",
            *markdown_table(["rung", "source", "candidates", "kept", "largest difference", "Kendall"], rows), ""]


def _names(rows: pd.DataFrame) -> str:
    """Strategies as a short list: their names and P, or 'none'."""
    if rows.empty:
        return "none"
    shown = [f"`{r.strategy}` ({r.p_within:.2f}, NDCG {_num(r.ndcg)})" for r in rows.itertuples()][:4]
    return "; ".join(shown) + (f"; and {len(rows) - 4} more" if len(rows) > 4 else "")


def _num(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.3f}"


if __name__ == "__main__":
    main()
