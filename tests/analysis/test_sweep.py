"""The size sweep (nasprune/analysis/_sweep.py): proxies against the random draws of their size, random's spread
size by size, paired draws, costs, settling, and the sweep's plots and tables. The proxy benchmark's decision
rules that read the sweep are tested in tests/studies/test_proxy_benchmark_rules.py."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nasprune.analysis import (complete_sets, cost_fractions, family_lines, noise_ceiling, paired_draws, paper_scale,
                               plot_size_sweep, random_band, random_spread, read_pool, settling, size_sweep,
                               size_sweep_markdown, top_quartile_k, whole_variant_sweep, whole_variants)


@pytest.fixture()
def jobs(sweep_jobs):
    """The pool of size-sweep jobs (tests/conftest.py)."""
    return sweep_jobs


def test_sweep_groups_draws_by_size_and_skips_unfinished_sets(jobs, sweep_pool):
    assert "kcenter-10" not in complete_sets(jobs)
    k = top_quartile_k(12)
    sweep = size_sweep(jobs, classes=10, n_boot=50)
    assert k == 3 and set(sweep["metric"]) >= {"kendall_all", "ndcg_top3", "regret"}
    assert sorted(sweep["per_class"].unique()) == [10, 20] and set(sweep["draws"]) == {10}
    assert set(sweep["proxy"]) == {"herding-10", "easy-10", "easy-20", "easy-10-cheap"}
    row = sweep[(sweep.proxy == "herding-10") & (sweep.metric == "kendall_all")].iloc[0]
    # independent check: the draws' Kendall taus against the truth, and the proxy's percentile among them
    taus = [stats.kendalltau(jobs[jobs.training_set == f"random-100-d{d}"].val_acc, sweep_pool.truth)[0]
            for d in range(10)]
    assert row["value"] == pytest.approx(1.0)
    assert row["percentile"] == pytest.approx(stats.percentileofscore(taus, 1.0, kind="mean"))
    assert row["draw_median"] == pytest.approx(np.median(taus))
    assert sweep[(sweep.proxy == "easy-10") & (sweep.metric == "kendall_all")]["percentile"].iloc[0] == 0


def test_random_spread_covers_every_size_even_without_other_proxies(jobs, sweep_pool):
    only_random = jobs[~jobs["training_set"].str.match(r"(herding|easy|kcenter)-")]
    assert size_sweep(only_random, classes=10, n_boot=0).empty  # nothing to compare, so no sweep rows
    spread = random_spread(only_random, classes=10, k=3).set_index(["per_class", "metric"])
    assert set(spread.index.get_level_values(0)) == {10, 20} and set(spread["draws"]) == {10}
    # independent check: the draws' Kendall taus against the truth (scipy)
    for images, per_class in ((100, 10), (200, 20)):
        taus = [stats.kendalltau(jobs[jobs.training_set == f"random-{images}-d{d}"].val_acc, sweep_pool.truth)[0]
                for d in range(10)]
        row = spread.loc[(per_class, "kendall_all")]
        assert row["median"] == pytest.approx(np.median(taus))
        assert (row["band_lo"], row["band_hi"]) == pytest.approx(tuple(np.percentile(taus, [5, 95])))
    # the same spread the sweep draws around the proxies of that size
    sweep = size_sweep(jobs, classes=10, n_boot=0)
    row = sweep[(sweep.proxy == "herding-10") & (sweep.metric == "ndcg_top3")].iloc[0]
    assert spread.loc[(10, "ndcg_top3"), "median"] == pytest.approx(row["draw_median"])
    assert spread.loc[(10, "ndcg_top3"), "band_hi"] == pytest.approx(row["band_hi"])


def test_paired_draws_compare_each_draw_with_itself(jobs, sweep_pool):
    """Each pair's metrics are the two sets' own, checked against scipy; the change is after minus before."""
    pairs = [("random-100-d0", "random-200-d0"), ("random-100-d1", "herding-10")]
    table = paired_draws(jobs, pairs, k=3)
    assert list(table["before"]) == ["random-100-d0", "random-100-d1"] and len(table) == 2

    def tau(name):
        return stats.kendalltau(jobs[jobs.training_set == name].val_acc, sweep_pool.truth)[0]

    assert table["kendall_all_before"].tolist() == pytest.approx([tau("random-100-d0"), tau("random-100-d1")])
    assert table["kendall_all_after"].tolist() == pytest.approx([tau("random-200-d0"), 1.0])
    assert table["kendall_all_change"].tolist() == pytest.approx([tau("random-200-d0") - tau("random-100-d0"),
                                                                  1.0 - tau("random-100-d1")])
    assert {"ndcg_top3_change", "regret_change"} <= set(table.columns)


def test_costs_are_fractions_of_the_whole_search(jobs):
    c = cost_fractions(jobs)
    assert c.loc["whole", "search_seconds"] == 12 * 100.0
    assert c.loc["herding-10", "fraction_of_whole"] == pytest.approx((12 * 10.0 + 120.0) / 1200.0)
    assert "kcenter-10" not in c.index  # unfinished: its cost so far is not its cost
    assert cost_fractions(jobs[jobs.training_set != "whole"]).empty and cost_fractions(jobs.iloc[:0]).empty


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


def test_settling_reads_the_whole_sets_history(sweep_pool):
    rows = []
    for seed in (0, 1):
        for epoch in range(1, 11):
            # early epochs rank in reverse, from epoch 5 on in the final order
            for i, c in enumerate(sweep_pool.candidates):
                rows.append({"training_set": "whole", "candidate": c, "seed": seed, "epoch": epoch,
                             "val_acc": (sweep_pool.truth[i] if epoch >= 5 else -sweep_pool.truth[i]) + 0.01 * epoch})
    table = settling(pd.DataFrame(rows)).set_index("epoch")
    assert list(table.index) == [1, 3, 5, 10]
    assert table.loc[1, "kendall_vs_last"] == pytest.approx(-1) and table.loc[5, "kendall_vs_last"] == pytest.approx(1)


def test_a_random_set_of_every_image_is_the_whole_set_trained_otherwise_not_a_draw(jobs, sweep_pool):
    # the whole set trained one epoch: built by the random method, but it holds all 50,000 images
    one_epoch = pd.DataFrame(sweep_pool.rows("whole-1epoch", "random", 50000, sweep_pool.truth))
    single = pd.DataFrame(sweep_pool.rows("whole-1epoch-s2", "random", 50000, -sweep_pool.truth))
    more = pd.concat([jobs, one_epoch, single], ignore_index=True)
    assert whole_variants(more) == ["whole-1epoch", "whole-1epoch-s2"] and whole_variants(jobs) == []
    # no size of 5,000 per class appears among the draws, and every other reading is unchanged
    # (the decision rule's chance qualifications too: tests/studies/test_proxy_benchmark_rules.py)
    assert set(random_spread(more, classes=10, k=3)["per_class"]) == {10, 20}
    pd.testing.assert_frame_equal(size_sweep(more, classes=10, n_boot=20), size_sweep(jobs, classes=10, n_boot=20))
    # each variant is placed among the draws of every size; independent check with scipy
    placed = whole_variant_sweep(more, classes=10, n_boot=20)
    assert set(placed["per_class"]) == {10, 20} and set(placed["method"]) == {"whole"}
    assert set(placed["proxy"]) == {"whole-1epoch", "whole-1epoch-s2"}
    for images, per_class in ((100, 10), (200, 20)):
        taus = [stats.kendalltau(jobs[jobs.training_set == f"random-{images}-d{d}"].val_acc, sweep_pool.truth)[0]
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


def test_the_sweep_plot_draws_random_at_a_size_where_it_ran_alone(jobs, tmp_path, sweep_pool):
    sweep = size_sweep(jobs, classes=10, n_boot=50)
    alone = sweep[sweep["per_class"] == 10]  # as if only random had run at 20 per class
    spread = random_spread(jobs, classes=10, k=3)
    rows = alone[alone["metric"] == "kendall_all"]
    assert list(random_band(rows, None, "kendall_all").index) == [10]  # the sweep alone knows no 20
    band = random_band(rows, spread, "kendall_all")
    assert list(band.index) == [10, 20]
    taus = [stats.kendalltau(jobs[jobs.training_set == f"random-200-d{d}"].val_acc, sweep_pool.truth)[0]
            for d in range(10)]
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


def test_read_pool_reads_every_table_at_the_whole_sets_k(sweep_jobs):
    """read_pool: the tables a benchmark reads, each at k = ceil(n/4) of the whole set's finished candidates (12 here:
    3), the same as calling each function; before the whole set has a finished job, k comes from the experiment's
    candidate count and every table is empty."""
    reading = read_pool(sweep_jobs, classes=10, candidates=40, n_boot=30)
    assert reading.whole_done == 12 and reading.k == 3
    pd.testing.assert_frame_equal(reading.sweep, size_sweep(sweep_jobs, classes=10, k=3, n_boot=30))
    pd.testing.assert_frame_equal(reading.spread, random_spread(sweep_jobs, classes=10, k=3))
    assert reading.variants.empty and reading.ceiling == noise_ceiling(sweep_jobs, k=3, n_boot=30)
    early = read_pool(sweep_jobs[sweep_jobs["training_set"] != "whole"], classes=10, candidates=40, n_boot=30)
    assert (early.whole_done, early.k, early.ceiling, early.spread) == (0, 10, {}, None) and early.sweep.empty
