"""Metrics against independent computations on small hand-built jobs tables. What they are read against (the
noise ceiling, the random null, the ranking by epoch) is tested in tests/analysis/test_null.py."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nasprune.analysis import (candidate_means, paired_difference, point_metrics, ranking_metrics, table1,
                               time_and_storage)


@pytest.fixture()
def random_jobs(make_jobs):
    rng = np.random.default_rng(3)
    whole_val = rng.uniform(40, 90, 24)
    whole_test = whole_val + rng.normal(0, 1.5, 24)
    noisy = whole_val + rng.normal(0, 8, 24)
    return make_jobs({"noisy": noisy}, whole_val, whole_test, seeds=(0, 1)), noisy, whole_val, whole_test


def test_identical_proxy_is_perfect_and_reversed_is_minus_one(make_jobs):
    whole = np.linspace(50, 80, 15)
    jobs = make_jobs({"same": whole.copy(), "reversed": whole[::-1].copy()}, whole, whole + 1)
    same = ranking_metrics(jobs, "same", n_boot=50)
    assert same["spearman_top10"] == pytest.approx(1.0) and same["spearman_all"] == pytest.approx(1.0)
    assert same["kendall_all"] == pytest.approx(1.0) and same["top10_overlap"] == 1.0
    assert same["regret"] == 0.0 and same["best_arch_test_acc"] == pytest.approx(81.0)
    assert same["regret_lo"] == same["regret_hi"] == 0.0
    rev = ranking_metrics(jobs, "reversed", n_boot=50)
    assert rev["spearman_top10"] == pytest.approx(-1.0) and rev["spearman_all"] == pytest.approx(-1.0)
    assert rev["kendall_all"] == pytest.approx(-1.0)
    assert rev["regret"] == pytest.approx(30.0) and rev["chosen"] == "c00"


def test_metrics_match_direct_scipy_and_brute_force(random_jobs):
    jobs, noisy, whole_val, whole_test = random_jobs
    m = ranking_metrics(jobs, "noisy", n_boot=100)
    assert m["spearman_all"] == pytest.approx(stats.spearmanr(noisy, whole_val)[0])
    assert m["kendall_all"] == pytest.approx(stats.kendalltau(noisy, whole_val)[0])
    top = np.argsort(-noisy)[:10]  # no ties in this data
    assert m["spearman_top10"] == pytest.approx(stats.spearmanr(noisy[top], whole_val[top])[0])
    assert m["best_arch_test_acc"] == pytest.approx(whole_test[np.argmax(noisy)])
    assert m["regret"] == pytest.approx(whole_test.max() - whole_test[np.argmax(noisy)])
    assert m["top10_overlap"] == len(set(top) & set(np.argsort(-whole_val)[:10])) / 10
    assert m["candidates"] == 24 and m["chosen"] == f"c{np.argmax(noisy):02d}"
    for name in ("spearman_top10", "spearman_all", "kendall_all", "regret", "best_arch_test_acc"):
        assert m[f"{name}_lo"] <= m[name] + 1e-9 and m[name] <= m[f"{name}_hi"] + 1e-9, name


def test_seed_means_and_ties(make_jobs):
    jobs = make_jobs({"p": np.array([70.0, 70.0, 60.0])}, np.array([50.0, 80.0, 60.0]),
                     np.array([50.0, 80.0, 60.0]), seeds=(0, 1, 2))
    means = candidate_means(jobs, "whole")
    assert means["val_acc"].tolist() == pytest.approx([50.0, 80.0, 60.0]) and means["seeds"].tolist() == [3, 3, 3]
    m = ranking_metrics(jobs, "p", n_boot=10)
    assert m["chosen"] == "c00" and m["regret"] == pytest.approx(30.0)  # a tie goes to the first id


def test_bootstrap_is_seeded_both_ways(random_jobs):
    jobs = random_jobs[0]
    a, b, c = (ranking_metrics(jobs, "noisy", n_boot=200, seed=s) for s in (0, 0, 1))
    assert a == b
    assert (a["spearman_all_lo"], a["spearman_all_hi"]) != (c["spearman_all_lo"], c["spearman_all_hi"])


def test_paired_difference(random_jobs):
    jobs = random_jobs[0]
    twin = jobs[jobs["training_set"] == "noisy"].assign(training_set="twin")
    jobs = pd.concat([jobs, twin])
    same = paired_difference(jobs, "noisy", "twin", "spearman_all", n_boot=100)
    assert same == {"estimate": 0.0, "lo": 0.0, "hi": 0.0, "candidates": 24}
    best = paired_difference(jobs, "whole", "noisy", "spearman_top10", n_boot=200)
    assert best["estimate"] == pytest.approx(1 - ranking_metrics(jobs, "noisy", n_boot=1)["spearman_top10"])
    assert best["lo"] <= best["estimate"] <= best["hi"]


def test_point_metrics_handles_tiny_and_constant_inputs():
    m = point_metrics(np.array([1.0]), np.array([2.0]), np.array([3.0]))
    assert np.isnan(m["spearman_all"]) and m["regret"] == 0.0
    m = point_metrics(np.array([5.0, 5.0, 5.0]), np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert np.isnan(m["spearman_all"]) and m["regret"] == 2.0


def test_table1_rows_columns_and_costs(random_jobs):
    jobs = random_jobs[0]
    t = table1(jobs, n_boot=50)
    assert list(t.columns[:9]) == ["training_set", "images", "best_arch_test_acc", "spearman_top10", "spearman_all",
                                   "kendall_all", "regret", "search_minutes", "proxy_minutes"]
    assert t["training_set"].tolist() == ["noisy", "whole"]
    whole = t.iloc[1]
    assert whole["spearman_top10"] == pytest.approx(1.0) and whole["proxy_minutes"] == 0.0
    assert whole["search_minutes"] == pytest.approx(24 * 2 * 60 / 60) and whole["images"] == 5000
    assert t.iloc[0]["search_minutes"] == pytest.approx(24 * 2 * 6 / 60)
    assert time_and_storage(jobs).loc["noisy", "bytes"] == 78400
    t = table1(jobs, n_boot=10, proxy_info={"noisy": {"proxy_minutes": 2.5}})
    assert t.loc[0, "proxy_minutes"] == 2.5 and np.isnan(table1(jobs, n_boot=10).loc[0, "proxy_minutes"])
    with pytest.raises(ValueError, match="no finished jobs on the whole training set 'full'"):
        table1(jobs, whole="full")


@pytest.mark.parametrize("n", [6, 10, 11, 24])
def test_top_k_metrics_are_nan_with_too_few_candidates(n):
    rng = np.random.default_rng(n)
    whole = rng.uniform(40, 90, n)
    proxy = whole + rng.normal(0, 8, n)
    m = point_metrics(proxy, whole, whole)
    top, whole_top = np.argsort(-proxy)[:10], np.argsort(-whole)[:10]
    if n < 10:  # "top 10" would be every candidate
        assert np.isnan(m["spearman_top10"])
    else:
        assert m["spearman_top10"] == pytest.approx(stats.spearmanr(proxy[top], whole[top])[0])
    if n <= 10:  # both top 10s would hold every candidate: always 1
        assert np.isnan(m["top10_overlap"])
    else:
        assert m["top10_overlap"] == len(set(top) & set(whole_top)) / 10
    assert m["spearman_all"] == pytest.approx(stats.spearmanr(proxy, whole)[0])  # the rest is unaffected


def test_table1_with_six_candidates_marks_top_k_columns_nan(make_jobs):
    whole = np.linspace(50, 80, 6)
    t = table1(make_jobs({"p": whole[::-1].copy()}, whole, whole), n_boot=20)
    for col in ("spearman_top10", "spearman_top10_lo", "spearman_top10_hi", "top10_overlap", "top10_overlap_lo"):
        assert t[col].isna().all(), col
    assert t.loc[0, "spearman_all"] == pytest.approx(-1.0) and (t["candidates"] == 6).all()


# --- the top-quarter measures ---------------------------------------------------------------------------------------


def _brute_ndcg(proxy: np.ndarray, whole: np.ndarray, k: int) -> float:
    """NDCG@k written out: gain = whole minus the (k+1)-th best whole value, floored at 0."""
    floor = sorted(whole, reverse=True)[k]
    gain = [max(w - floor, 0.0) for w in whole]
    picked = sorted(range(len(proxy)), key=lambda i: (-proxy[i], i))[:k]
    dcg = sum(gain[i] / np.log2(pos + 2) for pos, i in enumerate(picked))
    ideal = sum(g / np.log2(pos + 2) for pos, g in enumerate(sorted(gain, reverse=True)[:k]))
    return dcg / ideal


@pytest.mark.parametrize("n", [11, 24, 36])
def test_top_quarter_kendall_and_ndcg_match_brute_force(n):
    rng = np.random.default_rng(n)
    whole = rng.uniform(40, 90, n)
    proxy = whole + rng.normal(0, 6, n)
    m = point_metrics(proxy, whole, whole)
    best = np.argsort(-whole)[:int(np.ceil(n / 4))]  # chosen by the whole set, not by the proxy
    assert m["kendall_top25pct"] == pytest.approx(stats.kendalltau(proxy[best], whole[best])[0])
    assert m["ndcg_top10"] == pytest.approx(_brute_ndcg(proxy, whole, 10))
    half = point_metrics(proxy, whole, whole, quarter=0.5, k=5)
    best = np.argsort(-whole)[:int(np.ceil(n / 2))]
    assert half["kendall_top50pct"] == pytest.approx(stats.kendalltau(proxy[best], whole[best])[0])
    assert half["ndcg_top5"] == pytest.approx(_brute_ndcg(proxy, whole, 5))


def test_ndcg_rewards_order_within_the_top_and_ignores_the_rest():
    whole = np.arange(20, dtype=float)  # candidate 19 is best
    assert point_metrics(whole.copy(), whole, whole)["ndcg_top10"] == pytest.approx(1.0)
    bottom_first = whole.copy()
    bottom_first[:10] += 100  # the proxy's top 10 is the whole set's bottom 10: no gain at all
    assert point_metrics(bottom_first, whole, whole)["ndcg_top10"] == 0.0
    below = whole.copy()
    below[:9] = -below[:9]  # reorders only candidates outside both top 10s
    assert point_metrics(below, whole, whole)["ndcg_top10"] == pytest.approx(1.0)
    swapped = whole.copy()
    swapped[[19, 18]] = swapped[[18, 19]]  # the two best swapped: a small loss
    assert 0.95 < point_metrics(swapped, whole, whole)["ndcg_top10"] < 1.0


def test_top_quarter_measures_are_nan_when_too_few_and_quarter_is_checked():
    whole = np.linspace(50, 80, 8)
    m = point_metrics(whole.copy(), whole, whole)
    assert np.isnan(m["kendall_top25pct"]) and np.isnan(m["ndcg_top10"])  # 2 in the quarter; not more than 10
    assert point_metrics(whole.copy(), whole, whole, quarter=0.5)["kendall_top50pct"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"quarter must be in \(0, 1\], got 1.5"):
        point_metrics(whole, whole, whole, quarter=1.5)


def test_table1_keeps_its_columns_and_adds_the_top_quarter_measures(random_jobs):
    jobs, noisy, whole_val, _ = random_jobs
    t = table1(jobs, n_boot=30)
    for col in ("kendall_top25pct", "ndcg_top10", "kendall_top25pct_lo", "ndcg_top10_hi", "top10_overlap_lo",
                "regret_hi", "chosen"):
        assert col in t.columns, col
    row = t.set_index("training_set").loc["noisy"]
    assert row["ndcg_top10"] == pytest.approx(_brute_ndcg(noisy, whole_val, 10))
    assert row["ndcg_top10_lo"] <= row["ndcg_top10"] <= row["ndcg_top10_hi"]
    assert list(t.columns).index("ndcg_top10") < list(t.columns).index("best_arch_test_acc_lo")
