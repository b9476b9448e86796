"""The budget search's study (scripts/studies/budget_search.py): PLAN.md's strategies, its decision rule at its
thresholds, and its cost model against a replay."""

import pandas as pd
import pytest

from nasprune.search import Rung
from studies.budget_search import OPTUNA_BASELINES, STRATEGIES, available, choose_default, confirmed, cost_at, evaluate


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
    baseline = summary([("optuna pruner", OPTUNA_BASELINES[0].name, 1.0, 0.0, 1.0)])
    assert choose_default(pd.concat([s, baseline]))["strategy"] == "cheap"  # added after the plan: not a candidate
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


def test_an_optuna_pruner_replay_pays_for_the_epochs_its_trials_ran():
    """Four candidates whose whole-set curves never cross (the best is best from epoch 1): asynchronous successive
    halving (rungs at epochs 1, 3, 9 of 10) queues them in a drawn order; whatever the order it chooses the best,
    and it pays 391 steps for each epoch a trial ran: 10 epochs for every trial that finished, 1 or 3 for the pruned."""
    from nasprune.search import Experiment

    candidates = [f"w{w}-d1-relu-none-avgpooling" for w in (8, 16, 32, 64)]
    exp = Experiment(name="t", dataset={"name": "synthetic"}, candidates=candidates,
                     training_sets={"whole": {"proxy": None, "train": {"epochs": 10, "batch_size": 128}}})
    jobs = pd.DataFrame([{"training_set": "whole", "candidate": c, "seed": s, "val_acc": 60 + 10 * i,
                          "test_acc": 60 + 10 * i, "images": 50_000, "epochs": 10, "seconds": 100.0}
                         for i, c in enumerate(candidates) for s in (0, 1)])
    history = pd.DataFrame([{"training_set": "whole", "candidate": c, "seed": s, "epoch": e,
                             "val_acc": 10 * i + 5 * e, "train_loss": 1.0}
                            for i, c in enumerate(candidates) for s in (0, 1) for e in range(1, 11)])
    reps = evaluate(OPTUNA_BASELINES[0], jobs, history, exp, lambda seed: None, [(d, 0) for d in range(6)])
    assert set(reps["chosen"]) == {candidates[-1]} and set(reps["regret"]) == {0.0}
    epochs = reps["steps"] / 391
    assert all(e == round(e) and 10 + 3 <= e <= 40 for e in epochs)  # the chosen net's 10, and at least a rung
    assert (reps["goal_cost"] == (reps["steps"] - 3910) / (4 * 3910)).all()
    assert reps["steps"].nunique() > 1  # the order changes what is pruned
