"""Tests for the selection registry (nasprune/proxies/selection/_registry.py), its conformance check
(nasprune/proxies/selection/testing.py) and the NAS-proxy methods (nasprune/proxies/selection/_nasproxy.py): every
registered method passes every check; the check catches broken methods; CCS's allocation, entropy's weights and
moderate's band agree with independent computations on tiny cases."""

import itertools

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import softmax
from scipy.stats import chisquare
from scipy.stats import entropy as scipy_entropy

import nasprune.proxies
from nasprune.data import load_dataset
from nasprune.proxies import build_proxy, needs_scoring_run, uses_influence
from nasprune.proxies._build import RUN_INPUTS
from nasprune.proxies.selection import (INPUTS, METHODS, SelectionResult, entropy_weights, get_method, register_method,
                                        select, stratum_budgets)
from nasprune.proxies.selection import _registry
from nasprune.proxies.selection._common import make_result
from nasprune.proxies.selection.testing import CHECKS, check_method, synthetic_inputs

NEW_METHODS = ("entropy", "ccs", "moderate", "easy")


@pytest.fixture(scope="module")
def problem():
    return synthetic_inputs()


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry for tests that register methods; the real one is restored afterwards."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))


# ------------------------------------------------------------------------------------------ conformance

@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("method", METHODS)
def test_every_registered_method_conforms(problem, method, check):
    labels, inputs = problem
    CHECKS[check](method, labels, inputs)


def test_registry_lists_every_method_once_with_its_inputs_and_end():
    assert METHODS[0] == "influence"  # one list, the registry's: nasprune.proxies does not re-export it
    assert not hasattr(nasprune.proxies, "METHODS") and "METHODS" not in nasprune.proxies.__all__
    assert set(METHODS) == {"influence", "random", "herding", "kcenter", "forgetting", "grand", "el2n",
                            "influence_score", *NEW_METHODS}
    assert len(set(METHODS)) == len(METHODS)
    expected = {"random": ((), "uniform", True), "herding": (("features",), "representative", False),
                "influence": (("S",), "representative", False), "influence_score": (("S",), "hardest", False),
                "el2n": (("el2n",), "hardest", False), "entropy": (("logits",), "both tails", True),
                "ccs": (("el2n",), "coverage", True), "moderate": (("features",), "moderate", False),
                "easy": (("el2n",), "easiest", False)}
    for name, (inputs, keeps, stochastic) in expected.items():
        spec = get_method(name)
        assert (spec.inputs, spec.keeps, spec.stochastic) == (inputs, keeps, stochastic), name
    assert get_method("ccs").options == ("score", "beta", "strata")
    assert "Zheng et al., ICLR 2023" in get_method("ccs").summary
    # every input a method can declare is one the pipeline can provide from a scoring run
    assert set(RUN_INPUTS) | {"S"} == set(INPUTS)
    assert [m for m in METHODS if not needs_scoring_run(m)] == ["random"]
    assert [m for m in METHODS if uses_influence(m)] == ["influence", "influence_score"]


def test_registering_refuses_duplicates_and_malformed_methods(scratch_registry):
    def first(labels, keep_per_class, *, seed=0):
        return None

    with pytest.raises(ValueError, match="'random' is already registered .*_baselines.random.*another name"):
        register_method("random", inputs=(), keeps="uniform", stochastic=True)(first)
    with pytest.raises(ValueError, match="lower-case letters"):
        register_method("My Method", inputs=(), keeps="x", stochastic=False)
    with pytest.raises(ValueError, match=r"unknown input\(s\) \['loss'\]"):
        register_method("lossy", inputs=("loss",), keeps="x", stochastic=False)
    with pytest.raises(ValueError, match=r"must take \['features'\] as keyword-only"):
        register_method("featureless", inputs=("features",), keeps="x", stochastic=False)(first)
    with pytest.raises(ValueError, match="stochastic must be True or False"):
        register_method("maybe", inputs=(), keeps="x", stochastic="sometimes")
    with pytest.raises(ValueError, match="unknown method 'magic'; choose one of influence, random"):
        get_method("magic")


def test_a_new_method_is_known_everywhere_and_checked(scratch_registry, synthetic):
    @register_method("lowest_index", inputs=(), keeps="lowest indices", stochastic=False)
    def lowest_index(labels, keep_per_class, *, seed=0):
        """The first k_c examples of each class, in index order."""
        labels = np.asarray(labels)
        quota = keep_per_class if isinstance(keep_per_class, dict) else {int(c): keep_per_class
                                                                          for c in np.unique(labels)}
        from nasprune.proxies.selection import resolve_quota
        quota = resolve_quota(labels, quota)
        kept = np.concatenate([np.flatnonzero(labels == c)[:k] for c, k in quota.items()])
        return make_result(kept, labels, len(labels), started=0.0)

    assert "lowest_index" in METHODS and METHODS[-1] == "lowest_index"
    check_method("lowest_index")
    labels = np.array([0, 1, 0, 1, 0])
    assert select("lowest_index", labels, 1).kept.tolist() == [0, 1]
    assert not needs_scoring_run("lowest_index")
    # the proxies use the registry itself: a proxy of the new method is built with no scoring run
    proxy = build_proxy(synthetic, method="lowest_index", per_class=2)
    first = sorted(i for c in range(synthetic.num_classes) for i in np.flatnonzero(synthetic.train_y.numpy() == c)[:2])
    assert proxy.method == "lowest_index" and proxy.indices.tolist() == first


def _registered_broken(name, fn, stochastic=False, inputs=()):
    register_method(name, inputs=inputs, keeps="broken", stochastic=stochastic)(fn)


def test_the_check_catches_broken_methods(scratch_registry):
    """A deliberately wrong method for each rule: the conformance check must name the rule it breaks."""
    def ignores_quota(labels, keep_per_class, *, seed=0):
        return make_result(np.arange(3), np.asarray(labels), len(labels), started=0.0)

    def unseeded(labels, keep_per_class, *, seed=0):  # draws from global state: not reproducible
        return select("random", labels, keep_per_class, seed=int(np.random.default_rng().integers(1 << 30)))

    def seed_ignored(labels, keep_per_class, *, seed=0):
        return select("random", labels, keep_per_class, seed=0)

    def random_draw(labels, keep_per_class, *, seed=0):
        return select("random", labels, keep_per_class, seed=seed)

    def unsorted(labels, keep_per_class, *, seed=0):
        result = select("random", labels, keep_per_class, seed=seed)
        return SelectionResult(kept=result.kept[::-1].copy(), pruned_count=result.pruned_count,
                               per_class=result.per_class)

    def silent_input(labels, keep_per_class, *, features, seed=0):  # never looks at features' shape
        return select("random", labels, keep_per_class, seed=seed)

    cases = [("ignores_quota", ignores_quota, False, (), r"keep exactly"),
             ("unseeded", unseeded, True, (), "same selection twice"),
             ("seed_ignored", seed_ignored, True, (), r"\(registered stochastic\) differ between seeds"),
             ("random_called_deterministic", random_draw, False, (), r"\(registered deterministic\) not depend"),
             ("unsorted", unsorted, True, (), "sorted, unique"),
             ("silent_input", silent_input, True, ("features",), "input 'features' of the wrong length")]
    for name, fn, stochastic, inputs, message in cases:
        _registered_broken(name, fn, stochastic, inputs)
        with pytest.raises(AssertionError, match=f"selection method '{name}' breaks the rule: .*{message}"):
            check_method(name)


def test_select_refuses_missing_inputs_unknown_inputs_and_unknown_options(problem):
    labels, inputs = problem
    with pytest.raises(ValueError, match=r"'herding' needs input\(s\) \['features'\] from the scoring run"):
        select("herding", labels, 2)
    with pytest.raises(ValueError, match=r"unknown input\(s\) \['featurs'\] for method 'herding'"):
        select("herding", labels, 2, featurs=inputs["features"])
    with pytest.raises(ValueError, match=r"'ccs' takes no option\(s\) \['alpha'\]; its options are "
                                         r"\['score', 'beta', 'strata'\]"):
        select("ccs", labels, 2, options={"alpha": 0.1}, **inputs)
    with pytest.raises(ValueError, match=r"beta \(the hardest fraction dropped\) must be in \[0, 1\), got 1.5"):
        select("ccs", labels, 2, options={"beta": 1.5}, **inputs)
    with pytest.raises(ValueError, match="weighting must be one of"):
        select("entropy", labels, 2, options={"weighting": "p4"}, **inputs)
    with pytest.raises(ValueError, match="ccs with score='forgetting_counts' needs the forgetting_counts input"):
        select("ccs", labels, 2, options={"score": "forgetting_counts"}, el2n=inputs["el2n"])
    # one dict of inputs serves every method, and an option reaches the function
    a = select("ccs", labels, 3, options={"beta": 0.5}, **inputs)
    assert a.stats["beta"] == 0.5 and a.stats["dropped"] == sum(int(0.5 * n) for n in (24, 18, 12))


# ------------------------------------------------------------------------------------------ CCS

def _leximin(sizes, budget):
    """Brute force: the per-stratum counts (<= sizes, summing to budget) whose sorted vector is
    lexicographically largest, i.e. the most even allocation (max-min fair)."""
    best = None
    for alloc in itertools.product(*(range(s + 1) for s in sizes)):
        if sum(alloc) == budget and (best is None or sorted(alloc) > sorted(best)):
            best = alloc
    return sorted(best)


def test_stratum_budgets_are_exact_and_as_even_as_possible():
    for sizes in itertools.product(range(5), repeat=3):
        for budget in range(sum(sizes) + 1):
            for seed in (None, 0):
                got = stratum_budgets(sizes, budget, seed)
                assert got.sum() == budget and (got <= np.array(sizes)).all()
                assert sorted(got) == _leximin(sizes, budget), (sizes, budget, got)
    # the odd example goes to a seeded one of several equal strata
    assert {tuple(stratum_budgets([4, 4, 4], 7, s)) for s in range(10)} == {(2, 2, 3), (2, 3, 2), (3, 2, 2)}
    with pytest.raises(ValueError, match=r"budget must be in \[0, 6\]"):
        stratum_budgets([3, 3], 7)


def test_ccs_drops_the_hardest_and_samples_strata_by_the_ccs_allocation():
    gen = np.random.default_rng(3)
    labels = np.repeat([0, 1], [40, 30])
    el2n = gen.random(70) ** 2  # skewed, so strata sizes differ
    quota, beta, strata = {0: 9, 1: 7}, 0.25, 4
    for seed in range(5):
        result = select("ccs", labels, quota, seed=seed, el2n=el2n, options={"beta": beta, "strata": strata})
        for c, k in quota.items():
            idx = np.flatnonzero(labels == c)
            hardest = idx[np.argsort(-el2n[idx])[:int(beta * len(idx))]]
            kept = result.kept[labels[result.kept] == c]
            assert not set(kept) & set(hardest)
            rest = np.setdiff1d(idx, hardest)
            sizes, edges = np.histogram(el2n[rest], bins=strata)
            kept_per_stratum, _ = np.histogram(el2n[kept], bins=edges)
            assert sorted(kept_per_stratum) == _leximin(sizes, k)
            assert (kept_per_stratum <= sizes).all()
    # beta never drops so many that the quota cannot be met: a whole class is kept whole
    whole = select("ccs", labels, {0: 40, 1: 0}, el2n=el2n, options={"beta": 0.5})
    assert whole.kept.tolist() == list(range(40))


def test_ccs_can_stratify_forgetting_counts(problem):
    labels, inputs = problem
    result = select("ccs", labels, 4, options={"score": "forgetting_counts"}, **inputs)
    counts = inputs["forgetting_counts"].numpy()
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        threshold = np.sort(counts[idx])[::-1][int(0.3 * len(idx)) - 1]  # the smallest dropped count
        assert counts[result.kept[labels[result.kept] == c]].max() < threshold


# ------------------------------------------------------------------------------------------ entropy

def _direct_entropy_weights(logits, labels, bin_width, weighting):
    """The authors' histogram rule written out with scipy and numpy.histogram, class by class."""
    p = softmax(logits.astype(np.float64), axis=1)
    log_entropy = np.log10(np.maximum(scipy_entropy(p, axis=1), 1e-12))
    out = np.zeros(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        x = log_entropy[idx]
        lo = np.floor(x.min() / bin_width) * bin_width
        edges = lo + bin_width * np.arange(int(np.ceil((x.max() - lo) / bin_width)) + 2)
        hist, _ = np.histogram(x, bins=edges)
        count = hist[np.digitize(x, edges) - 1].astype(float)
        per_bin = {"p1": hist.max() - count + 1, "p2": np.ones_like(count), "p3": 1 / count}[weighting]
        w = per_bin / count
        out[idx] = w / w.sum()
    return out


@pytest.mark.parametrize("weighting", ["p1", "p2", "p3"])
@pytest.mark.parametrize("bin_width", [0.5, 0.2])
def test_entropy_weights_match_a_direct_histogram(problem, weighting, bin_width):
    labels, inputs = problem
    logits = inputs["logits"].numpy()
    got = entropy_weights(inputs["logits"], labels, bin_width=bin_width, weighting=weighting)
    np.testing.assert_allclose(got, _direct_entropy_weights(logits, labels, bin_width, weighting), rtol=1e-12)
    for c in np.unique(labels):
        assert got[labels == c].sum() == pytest.approx(1.0)
    if weighting == "p2":  # every occupied bin equally likely: a sparse bin's members weigh more
        assert got.max() > 2 * got.min()


def test_entropy_draws_follow_its_weights():
    """One example drawn from one class, many seeds: frequencies match the weights (chi-square)."""
    labels, inputs = synthetic_inputs((10, 6), seed=2)
    w = entropy_weights(inputs["logits"], labels)
    members = np.flatnonzero(labels == 0)
    draws = [select("entropy", labels, {0: 1, 1: 0}, seed=s, logits=inputs["logits"]).kept[0] for s in range(800)]
    observed = np.array([draws.count(i) for i in members])
    expected = w[members] / w[members].sum() * len(draws)
    assert chisquare(observed, expected).pvalue > 1e-3
    assert not np.allclose(expected, expected.mean())  # the weights are not uniform here


def test_entropy_keeps_both_tails_more_often_than_random():
    """A class whose entropies are mostly in one crowded bin: entropy sampling keeps more of the sparse tails."""
    gen = torch.Generator().manual_seed(0)
    n = 400
    labels = np.zeros(n, dtype=np.int64)
    scale = torch.cat([torch.full((360,), 2.0), torch.linspace(0.01, 0.3, 20), torch.linspace(8, 20, 20)])
    logits = torch.randn(n, 10, generator=gen, dtype=torch.float64) * scale[:, None]
    tails = set(range(360, 400))
    ent = np.mean([len(tails & set(select("entropy", labels, 40, seed=s, logits=logits).kept)) for s in range(10)])
    rnd = np.mean([len(tails & set(select("random", labels, 40, seed=s).kept)) for s in range(10)])
    assert rnd < 6 and ent > 2 * rnd


# ------------------------------------------------------------------------------------------ moderate, easy

def test_moderate_keeps_the_middle_band_of_distances_to_the_median_feature(problem):
    labels, inputs = problem
    X = inputs["features"].numpy()
    quota = {0: 5, 1: 4, 2: 6}
    kept = select("moderate", labels, quota, features=inputs["features"]).kept
    for c, k in quota.items():
        idx = np.flatnonzero(labels == c)
        d = cdist(X[idx], np.median(X[idx], axis=0)[None]).ravel()
        ranks = np.argsort(np.argsort(d))
        lo = (len(idx) - k) // 2
        assert set(kept[labels[kept] == c]) == set(idx[(ranks >= lo) & (ranks < lo + k)])
        # neither the closest nor the farthest example is kept
        assert idx[d.argmin()] not in kept and idx[d.argmax()] not in kept


def test_easy_keeps_the_smallest_el2n_of_each_class(problem):
    labels, inputs = problem
    el2n = inputs["el2n"].numpy()
    easy = select("easy", labels, 4, **inputs).kept
    hard = select("el2n", labels, 4, **inputs).kept
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        assert set(easy[labels[easy] == c]) == set(idx[np.argsort(el2n[idx])[:4]])
    assert el2n[easy].max() < el2n[hard].min()


# ------------------------------------------------------------------------------------------ no scoring run

def test_random_proxy_needs_no_scoring_run():
    dataset = load_dataset("synthetic")
    proxy = build_proxy(dataset, method="random", per_class=5, seed=3)
    assert proxy.per_class == {c: 5 for c in range(dataset.num_classes)}
    assert np.array_equal(proxy.indices, select("random", dataset.train_y, 5, seed=3).kept)
    assert proxy.config["scoring"] is None and proxy.stats["scoring_seconds"] is None
    assert proxy.stats["pruning_net_acc_on_kept"] is None
    assert proxy.stats["proxy_seconds"] == proxy.stats["selection_seconds"]
    for method in ("ccs", "influence"):
        with pytest.raises(ValueError, match=f"method '{method}' selects from the scoring run's "
                                             f"{get_method(method).inputs[0]}, but no run was given"):
            build_proxy(dataset, method=method, per_class=5)
