"""Metrics against independent computations on small hand-built jobs tables."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nasprune.metrics import candidate_means, compare, costs, paired_difference, point_metrics, table1


def _jobs(proxy_val: dict[str, np.ndarray], whole_val: np.ndarray, whole_test: np.ndarray, seeds=(0,)) -> pd.DataFrame:
    """A jobs table: candidate c{i}; every seed gets the same numbers plus a seed-dependent zero-mean wiggle."""
    rows = []
    wiggle = {0: 0.0} if len(seeds) == 1 else {s: d for s, d in zip(seeds, np.linspace(-0.5, 0.5, len(seeds)))}
    for ts, vals in {**proxy_val, "whole": whole_val}.items():
        test = whole_test if ts == "whole" else vals - 1
        for i, (v, t) in enumerate(zip(vals, test)):
            for s in seeds:
                rows.append({"training_set": ts, "candidate": f"c{i:02d}", "seed": s, "val_acc": v + wiggle[s],
                             "test_acc": t + wiggle[s], "train_loss": 1.0, "seconds": 60.0 if ts == "whole" else 6.0,
                             "diverged": False, "images": 5000 if ts == "whole" else 100,
                             "bytes": 784 * (5000 if ts == "whole" else 100), "proxy_minutes": np.nan})
    return pd.DataFrame(rows)


@pytest.fixture()
def random_jobs():
    rng = np.random.default_rng(3)
    whole_val = rng.uniform(40, 90, 24)
    whole_test = whole_val + rng.normal(0, 1.5, 24)
    noisy = whole_val + rng.normal(0, 8, 24)
    return _jobs({"noisy": noisy}, whole_val, whole_test, seeds=(0, 1)), noisy, whole_val, whole_test


def test_identical_proxy_is_perfect_and_reversed_is_minus_one():
    whole = np.linspace(50, 80, 15)
    jobs = _jobs({"same": whole.copy(), "reversed": whole[::-1].copy()}, whole, whole + 1)
    same = compare(jobs, "same", n_boot=50)
    assert same["spearman_top10"] == pytest.approx(1.0) and same["spearman_all"] == pytest.approx(1.0)
    assert same["kendall_all"] == pytest.approx(1.0) and same["top10_overlap"] == 1.0
    assert same["regret"] == 0.0 and same["best_arch_test_acc"] == pytest.approx(81.0)
    assert same["regret_lo"] == same["regret_hi"] == 0.0
    rev = compare(jobs, "reversed", n_boot=50)
    assert rev["spearman_top10"] == pytest.approx(-1.0) and rev["spearman_all"] == pytest.approx(-1.0)
    assert rev["kendall_all"] == pytest.approx(-1.0)
    assert rev["regret"] == pytest.approx(30.0) and rev["chosen"] == "c00"


def test_metrics_match_direct_scipy_and_brute_force(random_jobs):
    jobs, noisy, whole_val, whole_test = random_jobs
    m = compare(jobs, "noisy", n_boot=100)
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


def test_seed_means_and_ties():
    jobs = _jobs({"p": np.array([70.0, 70.0, 60.0])}, np.array([50.0, 80.0, 60.0]), np.array([50.0, 80.0, 60.0]),
                 seeds=(0, 1, 2))
    means = candidate_means(jobs, "whole")
    assert means["val_acc"].tolist() == pytest.approx([50.0, 80.0, 60.0]) and means["seeds"].tolist() == [3, 3, 3]
    m = compare(jobs, "p", n_boot=10)
    assert m["chosen"] == "c00" and m["regret"] == pytest.approx(30.0)  # a tie goes to the first id


def test_bootstrap_is_seeded_both_ways(random_jobs):
    jobs = random_jobs[0]
    a, b, c = (compare(jobs, "noisy", n_boot=200, seed=s) for s in (0, 0, 1))
    assert a == b
    assert (a["spearman_all_lo"], a["spearman_all_hi"]) != (c["spearman_all_lo"], c["spearman_all_hi"])


def test_paired_difference(random_jobs):
    jobs = random_jobs[0]
    twin = jobs[jobs["training_set"] == "noisy"].assign(training_set="twin")
    jobs = pd.concat([jobs, twin])
    same = paired_difference(jobs, "noisy", "twin", "spearman_all", n_boot=100)
    assert same == {"estimate": 0.0, "lo": 0.0, "hi": 0.0, "candidates": 24}
    best = paired_difference(jobs, "whole", "noisy", "spearman_top10", n_boot=200)
    assert best["estimate"] == pytest.approx(1 - compare(jobs, "noisy", n_boot=1)["spearman_top10"])
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
    assert costs(jobs).loc["noisy", "bytes"] == 78400
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


def test_table1_with_six_candidates_marks_top_k_columns_nan():
    whole = np.linspace(50, 80, 6)
    t = table1(_jobs({"p": whole[::-1].copy()}, whole, whole), n_boot=20)
    for col in ("spearman_top10", "spearman_top10_lo", "spearman_top10_hi", "top10_overlap", "top10_overlap_lo"):
        assert t[col].isna().all(), col
    assert t.loc[0, "spearman_all"] == pytest.approx(-1.0) and (t["candidates"] == 6).all()
