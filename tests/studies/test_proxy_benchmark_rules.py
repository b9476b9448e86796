"""The proxy benchmark's decision rules (scripts/studies/proxy_benchmark/rules.py, results/proxy-benchmark/PLAN.md):
the default per size, chance qualifications, the held-out pools' confirmation and the recommendation, on the pool
of size-sweep jobs of tests/conftest.py; and the percentiles as words of its recommendation table."""

import pandas as pd
import pytest

from nasprune.analysis import size_sweep
from studies.proxy_benchmark.recommendation import _ordinal
from studies.proxy_benchmark.rules import (PLAN_DRAWS, chance_qualifications, choose_defaults, choose_network, confirm,
                                           recommend)


@pytest.fixture()
def jobs(sweep_jobs):
    """The pool of size-sweep jobs (tests/conftest.py)."""
    return sweep_jobs


def test_decision_rule_picks_a_qualifier_or_random(jobs):
    sweep = size_sweep(jobs, classes=10, n_boot=50)
    chosen = choose_defaults(sweep, k=3, exclude=["easy-10-cheap"]).set_index("per_class")
    assert chosen.loc[10, "default"] == "herding-10" and chosen.loc[10, "qualified"] == "herding-10"
    assert chosen.loc[10, "method"] == "herding"
    # the other network's proxy competes only when not excluded; ties go to the method with cheaper inputs
    both = choose_defaults(sweep, k=3).set_index("per_class")
    assert both.loc[10, "qualified"] == "herding-10, easy-10-cheap" and both.loc[10, "default"] == "herding-10"
    # the network rule: the first (cheapest) network's proxy that still qualifies
    assert choose_network(sweep, 3, ["easy-10", "easy-10-cheap", "herding-10"]) == "easy-10-cheap"
    assert choose_network(sweep, 3, ["easy-10", "easy-20"]) is None
    assert chosen.loc[20, "default"] == "random" and chosen.loc[20, "qualified"] == ""
    # above the draws on every metric, but a demanding threshold leaves nothing: random
    assert (choose_defaults(sweep, k=3, min_percentile=100.1)["default"] == "random").all()


def test_chance_qualifications_judge_each_draw_against_the_others(jobs, sweep_pool):
    base = chance_qualifications(jobs, classes=10, k=3)
    assert list(base["per_class"]) == [10, 20] and list(base["draws"]) == [10, 10]
    assert (base["rate"] == base["qualified"] / base["draws"]).all()
    # a draw in the truth's own order beats every other draw: it qualifies; one in reverse order never does
    truth = jobs["training_set"] == "random-100-d0"
    perfect = jobs.copy()
    perfect.loc[truth, "val_acc"] = sweep_pool.truth
    reverse = jobs.copy()
    reverse.loc[truth, "val_acc"] = -sweep_pool.truth
    gained = chance_qualifications(perfect, classes=10, k=3).set_index("per_class")
    lost = chance_qualifications(reverse, classes=10, k=3).set_index("per_class")
    assert "random-100-d0" in gained.loc[10, "which"].split(", ")
    assert "random-100-d0" not in lost.loc[10, "which"].split(", ")
    assert gained.loc[20, "which"] == lost.loc[20, "which"] == base.set_index("per_class").loc[20, "which"]
    assert (chance_qualifications(perfect, classes=10, k=3, min_percentile=100.1)["qualified"] == 0).all()


def test_a_random_set_of_every_image_is_the_whole_set_trained_not_a_draw_that_qualifies_by_chance(jobs, sweep_pool):
    """The whole set trained otherwise (one epoch), built by the random method but holding all 50,000 images, is
    not a draw: no size of 5,000 per class appears among the chance qualifications (as in the sweep,
    tests/analysis/test_sweep.py)."""
    one_epoch = pd.DataFrame(sweep_pool.rows("whole-1epoch", "random", 50000, sweep_pool.truth))
    single = pd.DataFrame(sweep_pool.rows("whole-1epoch-s2", "random", 50000, -sweep_pool.truth))
    more = pd.concat([jobs, one_epoch, single], ignore_index=True)
    assert set(chance_qualifications(more, classes=10, k=3)["per_class"]) == {10, 20}


def test_confirmation_needs_the_95th_percentile_on_both_primary_metrics_and_half_a_point_of_regret(jobs,
                                                                                                   sweep_pool):
    c = confirm(size_sweep(jobs, classes=10, n_boot=0), 3, ["easy-20", "herding-10", "easy-10", "not-run"])
    assert list(c["proxy"]) == ["herding-10", "easy-10", "easy-20"]  # by size; a proxy not in the sweep is left out
    c = c.set_index("proxy")
    assert c.loc["herding-10", "kendall_all"] == pytest.approx(1.0) and c.loc["herding-10", "regret"] == 0
    assert c.loc["herding-10", "kendall_all_percentile"] == 100 and c.loc["herding-10", "ndcg_top3_percentile"] == 100
    assert c.loc["herding-10", "confirmed"] and not c.loc["easy-10", "confirmed"] and not c.loc["easy-20", "confirmed"]
    # the whole set's best by validation tests 1 point below its runner-up: the proxy, in the truth's order, is
    # still above every draw, but picks a net 1 point below the best: not confirmed at 0.5 points, confirmed at 2
    worse = jobs.copy()
    best = (worse["training_set"] == "whole") & (worse["candidate"] == sweep_pool.candidates[-1])
    worse.loc[best, "test_acc"] = sweep_pool.truth[-2] - 1
    sweep = size_sweep(worse, classes=10, n_boot=0)
    strict = confirm(sweep, 3, ["herding-10"]).iloc[0]
    assert strict["regret"] == pytest.approx(1.0)
    assert min(strict["kendall_all_percentile"], strict["ndcg_top3_percentile"]) >= 95 and not strict["confirmed"]
    assert confirm(sweep, 3, ["herding-10"], max_regret=2.0).iloc[0]["confirmed"]
    # 10 draws, fewer than PLAN.md's 20, or a ground truth short of a seed: the verdict is provisional
    assert PLAN_DRAWS == 20 and c["provisional"].all() and (c["candidates"] == len(sweep_pool.candidates)).all()
    full = sweep.assign(draws=PLAN_DRAWS)
    assert not confirm(full, 3, ["herding-10"]).iloc[0]["provisional"]
    assert confirm(full, 3, ["herding-10"], ground_truth_complete=False).iloc[0]["provisional"]


def _verdicts(**pools):
    """A confirmation table per pool: proxy -> (confirmed, provisional)."""
    return {pool: None if v is None else pd.DataFrame(
        [{"proxy": p, "confirmed": c, "provisional": prov, "draws": PLAN_DRAWS} for p, (c, prov) in v.items()],
        columns=["proxy", "confirmed", "provisional", "draws"]) for pool, v in pools.items()}


def test_recommend_uses_a_method_only_where_every_held_out_pool_confirms_it_for_good():
    defaults = pd.DataFrame({"per_class": [200, 10, 20, 50, 100], "default": ["h200", "h10", "random", "c50", "e100"],
                             "method": ["herding", "herding", "random", "ccs", "entropy"]})
    r = recommend(defaults, _verdicts(a={"h10": (True, False), "c50": (True, False), "h200": (True, True),
                                         "e100": (False, False)},
                                      b={"h10": (True, False), "c50": (False, True), "h200": (True, False)}))
    r = r.set_index("per_class")
    assert list(r.index) == [10, 20, 50, 100, 200]
    assert r.loc[10, "use"] == "herding" and not r.loc[10, "pending"]                 # both final and confirmed
    assert (r.loc[20, "use"], r.loc[20, "a"], r.loc[20, "pending"]) == ("random", "", False)  # nothing to confirm
    assert r.loc[50, "use"] == "random" and r.loc[50, "b"] == "not confirmed so far" and r.loc[50, "pending"]
    assert r.loc[100, "use"] == "random" and r.loc[100, "b"] == "not finished" and not r.loc[100, "pending"]
    assert r.loc[200, "a"] == "confirmed so far" and r.loc[200, "use"] == "random" and r.loc[200, "pending"]
    r = recommend(defaults, _verdicts(a={"h10": (True, False)}, b=None)).set_index("per_class")
    assert r.loc[10, "b"] == "not run" and r.loc[10, "use"] == "random" and r.loc[10, "pending"]
    few = _verdicts(a={"h10": (False, True)})
    few["a"]["draws"] = PLAN_DRAWS - 1  # a percentile among too few draws is no verdict either way
    r = recommend(defaults, few).set_index("per_class")
    assert r.loc[10, "a"] == "under way" and r.loc[10, "use"] == "random" and r.loc[10, "pending"]
    with pytest.raises(ValueError, match="no held-out pool"):
        recommend(defaults, {})


def test_percentiles_read_as_ordinals():
    assert [_ordinal(x) for x in (0, 1, 2, 3, 4, 11, 12, 13, 21, 22, 82.4, 99.6, 100, 101, 111, 112)] == [
        "0th", "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "82nd", "100th", "100th", "101st",
        "111th", "112th"]
