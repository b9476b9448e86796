"""The random null and what else a proxy's metrics are read against: the noise ceiling (the whole set against
itself across seeds), random draws of the proxy's size, and a settled ground truth (the ranking epoch by epoch).
Against independent computations on small hand-built jobs tables."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nasprune.analysis import (NULL_COLUMNS, draw_metrics, noise_ceiling, place_among, random_null, ranking_by_epoch,
                               ranking_metrics, seed_agreement)


# --- the noise ceiling ----------------------------------------------------------------------------------------------


def _three_seed_whole(n: int = 16, seed: int = 5) -> pd.DataFrame:
    """Whole-set jobs with three seeds that disagree a little (independent noise per seed)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(40, 90, n)
    rows = [{"training_set": "whole", "candidate": f"c{i:02d}", "seed": s, "val_acc": truth[i] + rng.normal(0, 4),
             "test_acc": truth[i] + rng.normal(0, 4)} for s in (0, 1, 2) for i in range(n)]
    return pd.DataFrame(rows)


@pytest.mark.slow
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
def drawn_jobs(make_jobs):
    """Twenty random-draw proxies, one good proxy and one bad one, on 24 candidates."""
    rng = np.random.default_rng(11)
    whole = rng.uniform(40, 90, 24)
    sets = {f"random-s{i}": whole + rng.normal(0, 8, 24) for i in range(20)}
    sets["good"], sets["bad"] = whole + rng.normal(0, 2, 24), whole + rng.normal(0, 25, 24)
    return make_jobs(sets, whole, whole + rng.normal(0, 1, 24), seeds=(0, 1))


@pytest.mark.slow
def test_random_null_matches_direct_counting(drawn_jobs):
    draws = [f"random-s{i}" for i in range(20)]
    null = random_null(drawn_jobs, "random-s", n_boot=50)
    assert list(null.columns) == NULL_COLUMNS
    assert set(null["proxy"]) == {"good", "bad"} and (null["draws"] == 20).all() and (null["candidates"] == 24).all()
    pd.testing.assert_frame_equal(null, random_null(drawn_jobs, draws, ["good", "bad"], n_boot=50))
    for proxy in ("good", "bad"):
        ours = ranking_metrics(drawn_jobs, proxy, n_boot=50)
        for metric in ("kendall_all", "ndcg_top10", "kendall_top25pct", "spearman_top10", "regret"):
            d = np.array([ranking_metrics(drawn_jobs, t, n_boot=1)[metric] for t in draws])
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
        ranking_metrics(kept, "good", n_boot=1)["kendall_all"])
    assert draw_metrics(jobs, ["random-s0", "random-s3"]).loc["random-s0", "kendall_all"] == pytest.approx(
        ranking_metrics(kept, "random-s0", n_boot=1)["kendall_all"])
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
