"""nasprune.benchmark: proxies against the random draws of their size, and the pre-registered decision rule."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nasprune.benchmark import (PLAN_DRAWS, chance_qualifications, choose_defaults, choose_network, complete_sets,
                                confirm, costs, paired_draws, paper_scale, random_spread, recommend, settling,
                                size_sweep, top_quartile_k, whole_variant_sweep, whole_variants)
from nasprune.report import family_lines, plot_size_sweep, random_band, size_sweep_markdown

CANDIDATES = [f"w8-d{d}-relu-none-avgpooling" for d in (1, 2, 3, 4)] + \
             [f"w16-d{d}-relu-none-avgpooling" for d in (1, 2, 3, 4)] + \
             [f"w32-d{d}-relu-none-avgpooling" for d in (1, 2, 3, 4)]
TRUTH = np.linspace(70, 90, len(CANDIDATES))


def _rows(name, method, images, values, seed=0, proxy_minutes=0.0):
    return [{"training_set": name, "candidate": c, "seed": seed, "val_acc": v, "test_acc": t, "method": method,
             "images": images, "seconds": 10.0 if name != "whole" else 100.0, "proxy_minutes": proxy_minutes,
             "epochs": 50 if name != "whole" else 10}
            for c, v, t in zip(CANDIDATES, values, TRUTH)]


@pytest.fixture()
def jobs():
    rng = np.random.default_rng(0)
    rows = _rows("whole", "whole", 50000, TRUTH + 0.1) + _rows("whole", "whole", 50000, TRUTH - 0.1, seed=1)
    for images in (100, 200):
        for d in range(10):
            rows += _rows(f"random-{images}-d{d}", "random", images, TRUTH + rng.normal(0, 6, len(TRUTH)))
    rows += _rows("herding-10", "herding", 100, TRUTH, proxy_minutes=2.0)        # the truth's own order
    rows += _rows("easy-10", "easy", 100, -TRUTH, proxy_minutes=2.0)             # the reverse order
    rows += _rows("easy-20", "easy", 200, -TRUTH, proxy_minutes=2.0)
    rows += _rows("easy-10-cheap", "easy", 100, TRUTH, proxy_minutes=0.5)     # another network, same method
    partial = _rows("kcenter-10", "kcenter", 100, TRUTH)[:-1]                   # one candidate short
    return pd.DataFrame(rows + partial)


def test_sweep_groups_draws_by_size_and_skips_unfinished_sets(jobs):
    assert "kcenter-10" not in complete_sets(jobs)
    k = top_quartile_k(12)
    sweep = size_sweep(jobs, classes=10, n_boot=50)
    assert k == 3 and set(sweep["metric"]) >= {"kendall_all", "ndcg_top3", "regret"}
    assert sorted(sweep["per_class"].unique()) == [10, 20] and set(sweep["draws"]) == {10}
    assert set(sweep["proxy"]) == {"herding-10", "easy-10", "easy-20", "easy-10-cheap"}
    row = sweep[(sweep.proxy == "herding-10") & (sweep.metric == "kendall_all")].iloc[0]
    # independent check: the draws' Kendall taus against the truth, and the proxy's percentile among them
    taus = [stats.kendalltau(jobs[jobs.training_set == f"random-100-d{d}"].val_acc, TRUTH)[0] for d in range(10)]
    assert row["value"] == pytest.approx(1.0)
    assert row["percentile"] == pytest.approx(stats.percentileofscore(taus, 1.0, kind="mean"))
    assert row["draw_median"] == pytest.approx(np.median(taus))
    assert sweep[(sweep.proxy == "easy-10") & (sweep.metric == "kendall_all")]["percentile"].iloc[0] == 0


def test_random_spread_covers_every_size_even_without_other_proxies(jobs):
    only_random = jobs[~jobs["training_set"].str.match(r"(herding|easy|kcenter)-")]
    assert size_sweep(only_random, classes=10, n_boot=0).empty  # nothing to compare, so no sweep rows
    spread = random_spread(only_random, classes=10, k=3).set_index(["per_class", "metric"])
    assert set(spread.index.get_level_values(0)) == {10, 20} and set(spread["draws"]) == {10}
    # independent check: the draws' Kendall taus against the truth (scipy)
    for images, per_class in ((100, 10), (200, 20)):
        taus = [stats.kendalltau(jobs[jobs.training_set == f"random-{images}-d{d}"].val_acc, TRUTH)[0]
                for d in range(10)]
        row = spread.loc[(per_class, "kendall_all")]
        assert row["median"] == pytest.approx(np.median(taus))
        assert (row["band_lo"], row["band_hi"]) == pytest.approx(tuple(np.percentile(taus, [5, 95])))
    # the same spread the sweep draws around the proxies of that size
    sweep = size_sweep(jobs, classes=10, n_boot=0)
    row = sweep[(sweep.proxy == "herding-10") & (sweep.metric == "ndcg_top3")].iloc[0]
    assert spread.loc[(10, "ndcg_top3"), "median"] == pytest.approx(row["draw_median"])
    assert spread.loc[(10, "ndcg_top3"), "band_hi"] == pytest.approx(row["band_hi"])


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


def test_chance_qualifications_judge_each_draw_against_the_others(jobs):
    base = chance_qualifications(jobs, classes=10, k=3)
    assert list(base["per_class"]) == [10, 20] and list(base["draws"]) == [10, 10]
    assert (base["rate"] == base["qualified"] / base["draws"]).all()
    # a draw in the truth's own order beats every other draw: it qualifies; one in reverse order never does
    truth = jobs["training_set"] == "random-100-d0"
    perfect = jobs.copy()
    perfect.loc[truth, "val_acc"] = TRUTH
    reverse = jobs.copy()
    reverse.loc[truth, "val_acc"] = -TRUTH
    gained = chance_qualifications(perfect, classes=10, k=3).set_index("per_class")
    lost = chance_qualifications(reverse, classes=10, k=3).set_index("per_class")
    assert "random-100-d0" in gained.loc[10, "which"].split(", ")
    assert "random-100-d0" not in lost.loc[10, "which"].split(", ")
    assert gained.loc[20, "which"] == lost.loc[20, "which"] == base.set_index("per_class").loc[20, "which"]
    assert (chance_qualifications(perfect, classes=10, k=3, min_percentile=100.1)["qualified"] == 0).all()


def test_confirmation_needs_the_95th_percentile_on_both_primary_metrics_and_half_a_point_of_regret(jobs):
    c = confirm(size_sweep(jobs, classes=10, n_boot=0), 3, ["easy-20", "herding-10", "easy-10", "not-run"])
    assert list(c["proxy"]) == ["herding-10", "easy-10", "easy-20"]  # by size; a proxy not in the sweep is left out
    c = c.set_index("proxy")
    assert c.loc["herding-10", "kendall_all"] == pytest.approx(1.0) and c.loc["herding-10", "regret"] == 0
    assert c.loc["herding-10", "kendall_all_percentile"] == 100 and c.loc["herding-10", "ndcg_top3_percentile"] == 100
    assert c.loc["herding-10", "confirmed"] and not c.loc["easy-10", "confirmed"] and not c.loc["easy-20", "confirmed"]
    # the whole set's best by validation tests 1 point below its runner-up: the proxy, in the truth's order, is
    # still above every draw, but picks a net 1 point below the best: not confirmed at 0.5 points, confirmed at 2
    worse = jobs.copy()
    worse.loc[(worse["training_set"] == "whole") & (worse["candidate"] == CANDIDATES[-1]), "test_acc"] = TRUTH[-2] - 1
    sweep = size_sweep(worse, classes=10, n_boot=0)
    strict = confirm(sweep, 3, ["herding-10"]).iloc[0]
    assert strict["regret"] == pytest.approx(1.0)
    assert min(strict["kendall_all_percentile"], strict["ndcg_top3_percentile"]) >= 95 and not strict["confirmed"]
    assert confirm(sweep, 3, ["herding-10"], max_regret=2.0).iloc[0]["confirmed"]
    # 10 draws, fewer than PLAN.md's 20, or a ground truth short of a seed: the verdict is provisional
    assert PLAN_DRAWS == 20 and c["provisional"].all() and (c["candidates"] == len(CANDIDATES)).all()
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


def test_paired_draws_compare_each_draw_with_itself(jobs):
    """Each pair's metrics are the two sets' own, checked against scipy; the change is after minus before."""
    pairs = [("random-100-d0", "random-200-d0"), ("random-100-d1", "herding-10")]
    table = paired_draws(jobs, pairs, k=3)
    assert list(table["before"]) == ["random-100-d0", "random-100-d1"] and len(table) == 2

    def tau(name):
        return stats.kendalltau(jobs[jobs.training_set == name].val_acc, TRUTH)[0]

    assert table["kendall_all_before"].tolist() == pytest.approx([tau("random-100-d0"), tau("random-100-d1")])
    assert table["kendall_all_after"].tolist() == pytest.approx([tau("random-200-d0"), 1.0])
    assert table["kendall_all_change"].tolist() == pytest.approx([tau("random-200-d0") - tau("random-100-d0"),
                                                                  1.0 - tau("random-100-d1")])
    assert {"ndcg_top3_change", "regret_change"} <= set(table.columns)


def test_costs_are_fractions_of_the_whole_search(jobs):
    c = costs(jobs)
    assert c.loc["whole", "search_seconds"] == 12 * 100.0
    assert c.loc["herding-10", "fraction_of_whole"] == pytest.approx((12 * 10.0 + 120.0) / 1200.0)
    assert "kcenter-10" not in c.index  # unfinished: its cost so far is not its cost
    assert costs(jobs[jobs.training_set != "whole"]).empty and costs(jobs.iloc[:0]).empty


def test_paper_scale_extrapolates_per_image_cost_and_amortises_building(jobs):
    scale = paper_scale(jobs, candidates=720, epochs=100, train_images=50_000)
    assert "whole" not in scale.index and "kcenter-10" not in scale.index
    # by hand: the whole set spends 1200 s on 12 x 50,000 x 10 images seen, herding-10 120 s on 12 x 100 x 50,
    # ten times as much per image; its 120 s of building over 720 x 100 whole-set candidate-epochs of 10 s each
    row = scale.loc["herding-10"]
    assert row["per_image_ratio"] == pytest.approx((120 / (12 * 100 * 50)) / (1200 / (12 * 50_000 * 10)))
    assert row["search_fraction"] == pytest.approx(10 * 100 / 50_000)
    assert row["building_fraction"] == pytest.approx(120 / (720 * 100 * 10))
    assert row["fraction_of_whole"] == pytest.approx(0.02 + 120 / 720_000)
    assert scale.loc["random-100-d0", "building_fraction"] == 0
    assert paper_scale(jobs.iloc[:0]).empty


def test_settling_reads_the_whole_sets_history():
    rows = []
    for seed in (0, 1):
        for epoch in range(1, 11):
            for i, c in enumerate(CANDIDATES):  # early epochs rank in reverse, from epoch 5 on in the final order
                rows.append({"training_set": "whole", "candidate": c, "seed": seed, "epoch": epoch,
                             "val_acc": (TRUTH[i] if epoch >= 5 else -TRUTH[i]) + 0.01 * epoch})
    table = settling(pd.DataFrame(rows)).set_index("epoch")
    assert list(table.index) == [1, 3, 5, 10]
    assert table.loc[1, "kendall_vs_last"] == pytest.approx(-1) and table.loc[5, "kendall_vs_last"] == pytest.approx(1)


def test_a_random_set_of_every_image_is_the_whole_set_trained_otherwise_not_a_draw(jobs):
    # the whole set trained one epoch: built by the random method, but it holds all 50,000 images
    one_epoch = pd.DataFrame(_rows("whole-1epoch", "random", 50000, TRUTH))
    single = pd.DataFrame(_rows("whole-1epoch-s2", "random", 50000, -TRUTH))
    more = pd.concat([jobs, one_epoch, single], ignore_index=True)
    assert whole_variants(more) == ["whole-1epoch", "whole-1epoch-s2"] and whole_variants(jobs) == []
    # no size of 5,000 per class appears among the draws, and every other reading is unchanged
    assert set(random_spread(more, classes=10, k=3)["per_class"]) == {10, 20}
    assert set(chance_qualifications(more, classes=10, k=3)["per_class"]) == {10, 20}
    pd.testing.assert_frame_equal(size_sweep(more, classes=10, n_boot=20), size_sweep(jobs, classes=10, n_boot=20))
    # each variant is placed among the draws of every size; independent check with scipy
    placed = whole_variant_sweep(more, classes=10, n_boot=20)
    assert set(placed["per_class"]) == {10, 20} and set(placed["method"]) == {"whole"}
    assert set(placed["proxy"]) == {"whole-1epoch", "whole-1epoch-s2"}
    for images, per_class in ((100, 10), (200, 20)):
        taus = [stats.kendalltau(jobs[jobs.training_set == f"random-{images}-d{d}"].val_acc, TRUTH)[0]
                for d in range(10)]
        row = placed[(placed.per_class == per_class) & (placed.proxy == "whole-1epoch-s2")
                     & (placed.metric == "kendall_all")].iloc[0]
        assert row["value"] == pytest.approx(-1.0) and row["percentile"] == 0
        assert row["draw_median"] == pytest.approx(np.median(taus))
    assert whole_variant_sweep(jobs, classes=10, n_boot=20).empty
    text = "\n".join(size_sweep_markdown(placed, [("kendall_all", "Kendall", ".3f")], heading="at {per_class}"))
    assert "### at 10" in text and "| whole-1epoch | 1.000 [1.000, 1.000], 100, 0/10 |" in text


def test_sweep_plot_and_tables(jobs, tmp_path):
    sweep = size_sweep(jobs, classes=10, n_boot=50)
    ceiling = {"kendall_all": 0.9, "kendall_all_lo": 0.85, "kendall_all_hi": 0.95}
    path = plot_size_sweep(sweep, tmp_path / "sweep.png", [("kendall_all", "Kendall"), ("ndcg_top3", "NDCG@3")],
                           ceiling=ceiling, title="t")
    assert path.stat().st_size > 10_000
    text = "\n".join(size_sweep_markdown(sweep, [("kendall_all", "Kendall", ".3f"), ("regret", "regret", ".2f")]))
    assert "### 10 images per class (12 candidates)" in text and "random (10 draws): median" in text
    assert "| herding-10 | 1.000 [1.000, 1.000], 100, 0/10 | 0.00 [" in text  # beats all 10 draws, none as good
    assert "| easy-10 | -1.000 [-1.000, -1.000], 0, 10/10 |" in text


def test_the_sweep_plot_draws_random_at_a_size_where_it_ran_alone(jobs, tmp_path):
    sweep = size_sweep(jobs, classes=10, n_boot=50)
    alone = sweep[sweep["per_class"] == 10]  # as if only random had run at 20 per class
    spread = random_spread(jobs, classes=10, k=3)
    rows = alone[alone["metric"] == "kendall_all"]
    assert list(random_band(rows, None, "kendall_all").index) == [10]  # the sweep alone knows no 20
    band = random_band(rows, spread, "kendall_all")
    assert list(band.index) == [10, 20]
    taus = [stats.kendalltau(jobs[jobs.training_set == f"random-200-d{d}"].val_acc, TRUTH)[0] for d in range(10)]
    assert band.loc[20, "draw_median"] == pytest.approx(np.median(taus))
    assert band.loc[20, "band_lo"] == pytest.approx(np.percentile(taus, 5))
    # where a method ran, the spread and the sweep describe the same draws
    assert band.loc[10].tolist() == pytest.approx(random_band(rows, None, "kendall_all").loc[10].tolist())
    path = plot_size_sweep(alone, tmp_path / "sweep.png", [("kendall_all", "Kendall")], spread=spread)
    assert path.stat().st_size > 10_000


def test_family_lines_leave_a_gap_where_a_method_did_not_run():
    rows = pd.DataFrame({"proxy": ["herding-pc10", "ccs-pc50", "herding-pc200", "random-pc50-d0"],
                         "per_class": [10, 50, 200, 50], "value": [0.3, 0.5, 0.6, 0.4]})
    lines = family_lines(rows)
    assert list(lines.index) == [10, 50, 200]
    assert lines["herding"].tolist()[::2] == [0.3, 0.6] and np.isnan(lines.loc[50, "herding"])  # no bridge over 50
    assert lines["ccs"].notna().tolist() == [False, True, False]
