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


def test_the_rule_for_the_pool_not_yet_seen_needs_every_pool_and_prefers_the_cheaper_at_720():
    from studies.budget_search import HALF_FILTER, UNDER_TEST, confirm_unseen

    a, b = UNDER_TEST
    assert a in {s.name for s in STRATEGIES} and b == HALF_FILTER.name and b not in {s.name for s in STRATEGIES}

    def pool(p_a, p_b, cost_b=0.03, paper_b=0.017, reps=40):
        return pd.DataFrame({"strategy": [a, b], "p_within": [p_a, p_b], "goal_cost": [0.04, cost_b],
                             "paper_cost": [0.034, paper_b], "repetitions": [reps, reps]})

    both = {"x": pool(1.0, 0.95), "y": pool(0.9, 0.9)}
    assert confirm_unseen(both)[0] == b  # both confirmed: B is cheaper at 720
    assert confirm_unseen({**both, "y": pool(0.9, 0.9, paper_b=0.036)})[0] == a  # by B's worst pool, A is cheaper
    assert confirm_unseen({**both, "y": pool(0.9, 0.9, reps=20)})[0] is None  # a partial reading decides nothing
    default, verdicts = confirm_unseen({**both, "z": pool(0.95, 0.85)})
    assert default == a and verdicts[b] == {"x": True, "y": True, "z": False}
    assert confirm_unseen({**both, "z": pool(0.95, 0.95, cost_b=0.06)})[0] == a  # B over 5% on one pool
    assert confirm_unseen({"x": pool(0.8, 0.5)}) == (None, {a: {"x": False}, b: {"x": False}})
    # the cheapest strategy at P >= 0.90 on every pool it ran on all of; one missing from a pool does not qualify
    from studies.budget_search import cheapest_everywhere
    assert cheapest_everywhere(both) == (b, 0.03)
    assert cheapest_everywhere({**both, "z": pool(0.95, 0.95).iloc[:1]}) == (a, 0.04)
    # B is added after the first rule: never its pick, however good
    s = summary([("f", b, 1.0, 0.0, 1.0), ("f", "planned", 0.5, 0.01, 0.1)])
    assert choose_default(s)["strategy"] == "planned"


def test_a_pool_whose_proxy_covers_only_the_filtered_candidates_replays_the_filter_and_refuses_the_flat_proxy():
    """Six candidates, the proxy trained only on the two that a zero-cost score keeps (a third): the filter schedule
    replays and chooses the better of the two; the flat proxy, which reaches all six, raises MissingJobsError."""
    from nasprune.errors import MissingJobsError
    from nasprune.search import Experiment
    from studies.budget_search import truth_seeds

    candidates = [f"w{w}-d{d}-relu-none-avgpooling" for w in (8, 16, 32) for d in (1, 2)]
    exp = Experiment(name="t", dataset={"name": "synthetic"}, candidates=candidates, training_sets={
        "whole": {"proxy": None, "train": {"epochs": 10, "batch_size": 128}},
        "random-pc100-d0": {"proxy": "p.json", "train": {"epochs": 50, "batch_size": 128}, "seeds": [0],
                            "candidates": candidates[-2:]}})
    whole = [{"training_set": "whole", "candidate": c, "seed": s, "val_acc": 80 + i, "test_acc": 80 + i, "tse": 1.0,
              "images": 50_000, "epochs": 10, "seconds": 100.0, "diverged": False}
             for i, c in enumerate(candidates) for s in (0, 1)]
    proxy = [{"training_set": "random-pc100-d0", "candidate": c, "seed": 0, "val_acc": 70 + i, "test_acc": float("nan"),
              "tse": 1.0, "images": 1_000, "epochs": 50, "seconds": 10.0, "diverged": False}
             for i, c in enumerate(candidates[-2:])]
    jobs = pd.DataFrame(whole + proxy)
    zero_cost = pd.DataFrame({"zico": range(6), "seconds_zico": 0.1}, index=candidates)  # the last two the highest
    by_name = {s.name: s for s in STRATEGIES}
    reps = evaluate(by_name["zc:zico/3>random-pc100@400>top1>whole"], jobs, None, exp, lambda seed: zero_cost,
                    [(0, 0), (0, 1)])
    assert set(reps["chosen"]) == {candidates[-1]} and set(reps["regret"]) == {0.0}
    with pytest.raises(MissingJobsError, match="no finished job of"):
        evaluate(by_name["random-pc100@400"], jobs, None, exp, lambda seed: zero_cost, [(0, 0)])
    assert truth_seeds(jobs, candidates) == (0, 1)
    assert truth_seeds(jobs.drop(index=1), candidates) == (0,)  # seed 1 of the first candidate still training


def test_at_equal_cost_a_strategy_is_beaten_only_by_cheaper_or_equal_ones_with_higher_p_or_ndcg():
    from studies.budget_search import beaten_at_equal_cost

    s = summary([("f", "me", 0.90, 0.03, 0.5), ("f", "dearer", 1.00, 0.04, 0.9), ("f", "cheap-p", 0.95, 0.01, 0.1),
                 ("f", "equal-ndcg", 0.90, 0.03, 0.6), ("f", "worse", 0.85, 0.00, 0.4),
                 ("f", "no-ndcg", 0.5, 0.0, None), ("f", "noise-dearer", 0.95, 0.0305, 0.1)])
    b = beaten_at_equal_cost(s, "me").set_index("strategy")
    # 0.05 points dearer is equal cost (zero-cost seconds); 'dearer' at 4% is not
    assert list(b.index) == ["cheap-p", "equal-ndcg", "noise-dearer"]
    assert b.loc["cheap-p", "better_p"] and not b.loc["cheap-p", "better_ndcg"] and b.loc["equal-ndcg", "better_ndcg"]


def test_the_interval_of_p_resamples_whole_draws():
    """Four draws of two seeds each. Every draw within: [1, 1]. Two of four draws within: the bootstrap over draws
    gives P the distribution of (number of 'within' draws among 4 resampled) / 4, Binomial(4, 1/2) / 4, whose 2.5%
    and 97.5% points are 0 and 1 (each has mass 1/16 > 2.5%)."""
    from studies.budget_search import p_interval

    def reps(within_draws):
        return pd.DataFrame([{"draw": d, "seed": s, "regret": 0.0 if d in within_draws else 1.0}
                             for d in range(4) for s in (0, 1)])

    assert p_interval(reps({0, 1, 2, 3})) == (1.0, 1.0)
    assert p_interval(reps({0, 1})) == (0.0, 1.0)
    lo, hi = p_interval(reps({0, 1, 2}))  # Binomial(4, 3/4) / 4: P(0 of 4) = 1/256 < 2.5% < P(<= 1) = 13/256
    assert (lo, hi) == (0.25, 1.0)


def test_the_live_run_is_set_beside_the_values_its_replay_read(tmp_path):
    from studies.budget_search import live_against_replay

    pd.DataFrame({"rung": [0, 0, 0, 1, 2], "source": ["zerocost:zico"] * 3 + ["random-pc100", "whole"],
                  "candidate": ["a", "b", "c", "a", "a"], "value": [3.0, 2.0, 1.0, 70.0, 90.0],
                  "kept": [True, False, False, True, True]}).to_csv(tmp_path / "schedule.csv", index=False)
    jobs = pd.DataFrame({"training_set": ["random-pc100-d0", "random-pc100-d0", "random-pc100-d1", "whole", "whole"],
                         "candidate": ["a", "a", "a", "a", "b"], "seed": [0, 1, 0, 0, 0],
                         "val_acc": [69.5, 1.0, 2.0, 90.0, 91.0], "test_acc": [None, None, None, 90.0, 91.0]})
    zero_cost = pd.DataFrame({"zico": [3.0, 2.5, 1.0]}, index=["a", "b", "c"])
    reps = pd.DataFrame({"draw": [0, 0, 1], "seed": [0, 1, 0], "chosen": ["a", "b", "c"]})
    out = live_against_replay(tmp_path, jobs, zero_cost, reps)
    assert list(out["replayed"].iloc[:4]) == [3.0, 2.5, 1.0, 69.5] and pd.isna(out["replayed"].iloc[4])
    assert set(out["replay_chose"]) == {"a"}


def test_a_strategy_nothing_beats_at_equal_cost_gets_an_empty_table():
    from studies.budget_search import beaten_at_equal_cost

    s = summary([("f", "me", 1.0, 0.03, 0.9), ("f", "cheap", 0.5, 0.0, 0.5), ("f", "dear", 1.0, 0.5, 1.0)])
    assert beaten_at_equal_cost(s, "me").empty
