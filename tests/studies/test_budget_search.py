"""The budget search's study (scripts/studies/budget_search.py): PLAN.md's strategies, its decision rule at its
thresholds, and its cost model against a replay."""

import pandas as pd
import pytest

from nasprune.search import Rung
from studies.budget_search import (STRATEGIES, available, choose_default, confirmed, cost_at)


def test_the_plan_lists_68_distinct_strategies_in_its_families():
    assert len(STRATEGIES) == len({s.name for s in STRATEGIES}) == 68
    assert [s.name for s in STRATEGIES if s.family == "flat proxy"] == [f"random-pc{k}@400" for k in
                                                                         (10, 20, 50, 100, 200)]
    hyper = [s for s in STRATEGIES if s.family == "hyperband"]
    assert len(hyper) == 1 and [n for n, _ in hyper[0].brackets] == [9, 5, 3]


def summary(rows):
    return pd.DataFrame(rows, columns=["family", "strategy", "p_within", "goal_cost", "ndcg"])


def test_the_rule_takes_the_best_p_within_5_percent_then_the_cheaper_then_the_better_ndcg():
    s = summary([("f", "dear", 1.00, 0.051, 0.9), ("f", "good", 0.95, 0.04, 0.5), ("f", "twin", 0.95, 0.04, 0.7),
                 ("f", "cheap", 0.95, 0.03, 0.1), ("f", "poor", 0.5, 0.0, 1.0)])
    assert choose_default(s)["strategy"] == "cheap"  # 'dear' is over 5%; of the 0.95s the cheapest
    assert choose_default(s[s.strategy != "cheap"])["strategy"] == "twin"  # equal cost: the better NDCG
    assert choose_default(s[s.goal_cost > 0.05]) is None
    held_out = summary([("f", "cheap", 0.90, 0.05, 0.0), ("f", "twin", 0.89, 0.01, 0.0)])
    assert confirmed(held_out, "cheap") and not confirmed(held_out, "twin") and not confirmed(held_out, "gone")


def test_a_strategy_that_reads_a_set_the_pool_lacks_is_not_available():
    jobs = pd.DataFrame({"training_set": ["whole", "random-pc100-d0", "random-pc100-d1"]})
    by_name = {s.name: s for s in STRATEGIES}
    assert available(by_name["random-pc100@400"], jobs) and available(by_name["zc:naswot"], jobs)
    assert available(by_name["hyperband-whole-eta3"], jobs) and not available(by_name["random-pc20@400"], jobs)


def test_the_cost_model_scales_each_rungs_share_and_a_top_k_rung_shrinks():
    """A third of n by a free score, 400 steps each for those, the top 2 fully (3,910 steps), the chosen net's whole
    training left out: (n/3 * 400 + 2 * 3910 - 3910) / (3910 n)."""
    model = ([(Rung("zerocost:flops", eta=3), 0.0), (Rung("p", keep=2), 400.0), (Rung("whole"), 3910.0)], 3910.0)
    for n in (16, 36, 720):
        assert cost_at(model, n) == pytest.approx((-(-n // 3) * 400 + 2 * 3910 - 3910) / (3910 * n))
    assert cost_at(model, 720) < cost_at(model, 36) < cost_at(model, 16)
