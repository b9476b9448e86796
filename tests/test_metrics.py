"""Metrics against independent computations on small hand-built jobs tables."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nasprune.metrics import (NULL_COLUMNS, candidate_means, compare, costs, draw_metrics, noise_ceiling,
                              paired_difference, place_among, point_metrics, random_null, ranking_by_epoch,
                              seed_agreement, table1)


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


# --- the noise ceiling ----------------------------------------------------------------------------------------------


def _three_seed_whole(n: int = 16, seed: int = 5) -> pd.DataFrame:
    """Whole-set jobs with three seeds that disagree a little (independent noise per seed)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(40, 90, n)
    rows = [{"training_set": "whole", "candidate": f"c{i:02d}", "seed": s, "val_acc": truth[i] + rng.normal(0, 4),
             "test_acc": truth[i] + rng.normal(0, 4)} for s in (0, 1, 2) for i in range(n)]
    return pd.DataFrame(rows)


def test_noise_ceiling_is_the_mean_over_ordered_seed_pairs():
    jobs = _three_seed_whole()
    val = jobs.pivot(index="candidate", columns="seed", values="val_acc")
    test = jobs.pivot(index="candidate", columns="seed", values="test_acc")
    pairs = seed_agreement(jobs, n_boot=20)
    assert len(pairs) == 6 and set(zip(pairs["seed_a"], pairs["seed_b"])) == {(a, b) for a in range(3)
                                                                               for b in range(3) if a != b}
    row = pairs[(pairs["seed_a"] == 2) & (pairs["seed_b"] == 0)].iloc[0]
    assert row["kendall_all"] == pytest.approx(stats.kendalltau(val[2], val[0])[0])
    assert row["regret"] == pytest.approx(test[0].max() - test[0].iloc[int(np.argmax(val[2]))])
    ceiling = noise_ceiling(jobs, n_boot=100)
    for m in ("kendall_all", "spearman_top10", "kendall_top25pct", "ndcg_top10", "regret"):
        assert ceiling[m] == pytest.approx(pairs[m].mean()), m
        assert ceiling[f"{m}_lo"] <= ceiling[m] + 1e-9 <= ceiling[f"{m}_hi"] + 2e-9, m
    assert ceiling["seeds"] == [0, 1, 2] and ceiling["pairs"] == 6 and ceiling["candidates"] == 16
    assert noise_ceiling(jobs, n_boot=100) == ceiling  # seeded
    assert noise_ceiling(jobs, n_boot=100, seed=1)["kendall_all_lo"] != ceiling["kendall_all_lo"]


def test_noise_ceiling_needs_two_seeds_and_every_seed_finished():
    jobs = _three_seed_whole()
    one = noise_ceiling(jobs[jobs["seed"] == 0], n_boot=10)
    assert one["pairs"] == 0 and np.isnan(one["kendall_all"]) and np.isnan(one["kendall_all_lo"])
    assert seed_agreement(jobs[jobs["seed"] == 0], n_boot=10).empty
    partial = jobs.drop(jobs.index[(jobs["seed"] == 2) & (jobs["candidate"] == "c03")])
    assert noise_ceiling(partial, n_boot=10)["candidates"] == 15  # c03 lacks seed 2


# --- the random null --------------------------------------------------------------------------------------------


@pytest.fixture()
def drawn_jobs():
    """Twenty random-draw proxies, one good proxy and one bad one, on 24 candidates."""
    rng = np.random.default_rng(11)
    whole = rng.uniform(40, 90, 24)
    sets = {f"random-s{i}": whole + rng.normal(0, 8, 24) for i in range(20)}
    sets["good"], sets["bad"] = whole + rng.normal(0, 2, 24), whole + rng.normal(0, 25, 24)
    return _jobs(sets, whole, whole + rng.normal(0, 1, 24), seeds=(0, 1))


def test_random_null_matches_direct_counting(drawn_jobs):
    draws = [f"random-s{i}" for i in range(20)]
    null = random_null(drawn_jobs, "random-s", n_boot=50)
    assert list(null.columns) == NULL_COLUMNS
    assert set(null["proxy"]) == {"good", "bad"} and (null["draws"] == 20).all() and (null["candidates"] == 24).all()
    pd.testing.assert_frame_equal(null, random_null(drawn_jobs, draws, ["good", "bad"], n_boot=50))
    for proxy in ("good", "bad"):
        ours = compare(drawn_jobs, proxy, n_boot=50)
        for metric in ("kendall_all", "ndcg_top10", "kendall_top25pct", "spearman_top10", "regret"):
            d = np.array([compare(drawn_jobs, t, n_boot=1)[metric] for t in draws])
            r = null[(null["proxy"] == proxy) & (null["metric"] == metric)].iloc[0]
            assert (r["value"], r["lo"], r["hi"]) == pytest.approx((ours[metric], ours[f"{metric}_lo"],
                                                                    ours[f"{metric}_hi"]))
            if metric == "regret":  # lower is better: the share of draws with a higher regret, ties half
                beaten = np.mean(d > r["value"]) + 0.5 * np.mean(d == r["value"])
                assert r["draws_as_good"] == np.mean(d <= r["value"])
            else:
                beaten = stats.percentileofscore(d, r["value"], kind="mean") / 100
                assert r["draws_as_good"] == np.mean(d >= r["value"])
            assert r["percentile"] == pytest.approx(100 * beaten), (proxy, metric)
            assert (r["band_lo"], r["band_hi"]) == pytest.approx(tuple(np.percentile(d, [5, 95])))
            assert r["draw_median"] == pytest.approx(np.median(d))
    kendall = null.set_index(["proxy", "metric"])["percentile"]
    assert kendall["good", "kendall_all"] == 100 and kendall["bad", "kendall_all"] == 0


def test_random_null_uses_the_candidates_every_set_finished_and_refuses_unknown_draws(drawn_jobs):
    jobs = drawn_jobs.drop(drawn_jobs.index[(drawn_jobs["training_set"] == "random-s3")
                                            & (drawn_jobs["candidate"] == "c05")])
    null = random_null(jobs, "random-s", ["good"], n_boot=10)
    assert (null["candidates"] == 23).all()
    kept = jobs[jobs["candidate"] != "c05"]
    assert null.loc[null["metric"] == "kendall_all", "value"].iloc[0] == pytest.approx(
        compare(kept, "good", n_boot=1)["kendall_all"])
    assert draw_metrics(jobs, ["random-s0", "random-s3"]).loc["random-s0", "kendall_all"] == pytest.approx(
        compare(kept, "random-s0", n_boot=1)["kendall_all"])
    with pytest.raises(ValueError, match=r"random draws \['random-s99'\] have no finished jobs"):
        random_null(jobs, ["random-s0", "random-s99"])
    with pytest.raises(ValueError, match="random draws 'nothing-' have no finished jobs"):
        random_null(jobs, "nothing-")


def test_place_among_leaves_nan_draws_out_and_keeps_the_band_for_a_nan_value():
    draws = [0.1, 0.2, float("nan"), 0.4, 0.4]
    placed = place_among(draws, 0.4)
    assert placed["draws"] == 4 and placed["percentile"] == pytest.approx(75)  # beats 2 of 4, ties 2 of 4 at half
    assert placed["draws_as_good"] == 0.5 and placed["draw_median"] == pytest.approx(0.3)
    lower = place_among(draws, 0.4, lower_is_better=True)  # regret: beaten by the two lower draws
    assert lower["percentile"] == pytest.approx(25) and lower["draws_as_good"] == 1.0
    missing = place_among(draws, float("nan"), band=0.5)
    assert np.isnan(missing["percentile"]) and np.isnan(missing["draws_as_good"])
    band = tuple(np.percentile([0.1, 0.2, 0.4, 0.4], [25, 75]))
    assert (missing["band_lo"], missing["band_hi"]) == pytest.approx(band)
    assert place_among([float("nan")], 0.3)["draws"] == 0 and np.isnan(place_among([], 0.3)["band_lo"])


# --- a settled ground truth -----------------------------------------------------------------------------------------


def test_ranking_by_epoch_against_the_last_epoch_and_across_seeds():
    rng = np.random.default_rng(2)
    final = rng.uniform(40, 90, 12)
    rows = []
    for seed in (0, 1):
        noise = rng.normal(0, 3, 12)
        for epoch, acc in ((1, -final), (2, final + noise), (3, final)):
            rows += [{"training_set": "whole", "candidate": f"c{i:02d}", "seed": seed, "epoch": epoch,
                      "val_acc": a, "train_loss": 1.0} for i, a in enumerate(acc)]
    history = pd.DataFrame(rows)
    out = ranking_by_epoch(history).set_index("epoch")
    assert out.loc[3, "kendall_vs_last"] == pytest.approx(1.0) and out.loc[1, "kendall_vs_last"] == pytest.approx(-1.0)
    mean2 = history[history["epoch"] == 2].groupby("candidate")["val_acc"].mean().to_numpy()
    assert out.loc[2, "kendall_vs_last"] == pytest.approx(stats.kendalltau(mean2, final)[0])
    assert out.loc[2, "spearman_vs_last"] == pytest.approx(stats.spearmanr(mean2, final)[0])
    at2 = history[history["epoch"] == 2].pivot(index="candidate", columns="seed", values="val_acc")
    assert out.loc[2, "seed_kendall"] == pytest.approx(stats.kendalltau(at2[0], at2[1])[0])
    assert out.loc[3, "seed_kendall"] == pytest.approx(1.0) and (out["candidates"] == 12).all()
    with pytest.raises(ValueError, match="no per-epoch validation accuracy for training set 'proxy'; train it with "
                                         "TrainConfig.eval_every > 0"):
        ranking_by_epoch(history, "proxy")
