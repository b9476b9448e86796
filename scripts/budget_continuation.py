"""Writes results/budget-search/continuation/: a rung's smaller budget as a fresh annealed run or as the longer run
continued, from the fresh whole-set runs the pools already hold (the study: scripts/studies/continuation.py; its rule:
results/budget-search/PLAN.md, "A later stage").

    python scripts/budget_continuation.py        # seconds: no training
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from nasprune.analysis import markdown_table, write_readme
from nasprune.provenance import provenance
from studies.continuation import POOLS, TOLERANCE, decide, kendalls, schedules

OUT = Path("results/budget-search/continuation")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    out, start = Path(ap.parse_args().out), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    table = pd.concat([kendalls(p) for p in POOLS], ignore_index=True)
    sh = pd.concat([schedules(p) for p in POOLS], ignore_index=True)
    table.to_csv(out / "signals.csv", index=False)
    sh.to_csv(out / "successive_halving.csv", index=False)
    keep_fresh, at1 = decide(table)
    rows = [[r.pool, r.way, r.epochs, r.seed, r.against, f"{r.kendall:.3f}", "yes" if r.best_in_top_third else "no",
             f"{r.regret_top1:.2f}"] for r in table.itertuples()]
    verdict = [[pool, f"{r['continued']:.3f}", f"{r['fresh']:.3f}", f"{r['fresh'] - r['continued']:+.3f}",
                "yes" if r["fresh_within"] else "no"] for pool, r in at1.iterrows()]
    body = ["A rung that trains a smaller budget can read a fresh run annealed over that budget (what `nasprune run`'s "
            "live schedule trains) or the longer run's epoch e, continued (what ASHA does, and what the budget search's "
            "whole-set replays read). Both, from whole-set runs the pools already hold; the rule was written first "
            "([PLAN.md](../PLAN.md), \"A later stage\"). Each signal's Kendall is taken against the final (epoch 10) "
            "validation accuracy of a whole-set seed other than its own.", "",
            "## The decision", "",
            f"At epoch 1, fresh is kept when its mean Kendall is at least continued's minus {TOLERANCE} on two pools of "
            "three.", "",
            *markdown_table(["pool", "continued (epoch 1)", "fresh (1 epoch)", "fresh - continued", "within"], verdict),
            "",
            ("**Fresh runs stay** the live schedules' way: they rank at least as well as the continued run's first "
             "epoch on at least two pools." if keep_fresh else
             "**Fresh runs lose** on at least two pools (by the margins above): checkpointed continuation is the next "
             "piece of work for the live schedules."),
            "", "Cost: a fresh rung pays its whole budget again at the next rung (1 + 3 + 10 epochs for a net that "
            "reaches the top), a continued one only the epochs added (10).", "",
            "## Successive halving (1, 3, 10), eta 3, both ways", "",
            "Where a pool has fresh runs of 1 and 3 epochs (seed 2): the last rung reads whole-set seed 0 or 1. Not a "
            "fair race: continued, every rung is one run of the last rung's seed, which the truth (the mean of seeds 0 "
            "and 1) half consists of, so it carries part of the truth's own noise and reads better than a fresh seed "
            "would; fresh, the early rungs are an independent seed (2). The Kendall table above compares like with "
            "like (each signal against a seed not its own).", "",
            *markdown_table(["pool", "way", "last rung's seed", "chosen", "regret", "goal cost", "total cost"],
                            [[r.pool, r.way, r.seed, f"`{r.chosen}`", f"{r.regret:.2f}", f"{100 * r.goal_cost:.1f}%",
                              f"{100 * r.cost:.1f}%"] for r in sh.itertuples()]), "",
            "## Every signal", "",
            *markdown_table(["pool", "way", "epochs", "seed", "against seed(s)", "Kendall", "best in top third",
                             "top one's regret"], rows), "",
            "Few runs: one or two fresh runs per pool and budget, so each Kendall here is one draw; the seed-to-seed "
            "spread of the continued rows is the scale of that noise.", ""]
    prov = provenance(time.perf_counter() - start, pools=", ".join(p.name for p in POOLS))
    write_readme(out / "README.md", "Fresh or continued: a rung's smaller budget", body, prov)
    print(f"{out / 'README.md'} written; fresh kept: {keep_fresh}")


if __name__ == "__main__":
    main()
