"""Tests for nasprune.proxies.selection's solvers and baselines: the right end of each score, Eq. 4 solvers against
brute force and random selection, the relaxation bound, Eq. 3, and input validation. Small synthetic float64
problems throughout. The conformance of every registered method (quotas, indices, seeds, errors) is checked in
tests/proxies/selection/test_registry.py."""
import itertools

import numpy as np
import pytest
import torch

from nasprune.proxies.selection import (SOLVERS, TARGETS, SelectionResult, cardinality_prune, epsilon_prune,
                                        influence_objective, relaxation_bound, resolve_quota, select)

QUOTA = {0: 5, 1: 7, 2: 3}


def make_problem(sizes=(40, 30, 25), P=12, seed=0, mean_scale=0.3, offset=0.0):
    """Influence vectors with class structure: a class mean plus noise (and an optional common offset)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=gen)]
    means = mean_scale * torch.randn(len(sizes), P, generator=gen, dtype=torch.float64)
    S = torch.randn(len(labels), P, generator=gen, dtype=torch.float64) + means[labels] + offset
    return S, labels


@pytest.fixture(scope="module")
def problem():
    S, labels = make_problem()
    gen = torch.Generator().manual_seed(1)
    n = len(labels)
    inputs = {
        "features": torch.randn(n, 6, generator=gen),
        "forgetting_counts": torch.randint(0, 4, (n,), generator=gen),  # many ties on purpose
        "grand": torch.rand(n, generator=gen),
        "el2n": torch.rand(n, generator=gen),
        "S": S,
    }
    return S, labels, inputs


def run_method(name, problem, seed=0, quota=QUOTA):
    _, labels, inputs = problem
    return select(name, labels, quota, seed=seed, **inputs)


def run_solver(S, labels, quota, target, solver, seed=0, **kw):
    return cardinality_prune(S, labels, quota, target=target, solver=solver, seed=seed, anneal_steps=5000,
                             bound=False, **kw)


def brute_force(S, labels, quota, target):
    """Optimal Eq. 4 objective for two classes by enumerating every kept set, with the targets written out
    independently of the package: T ("paper"), (k/n) T ("scaled"), (k_c/n_c) T_c per class ("classwise")."""
    S, lab = S.numpy(), labels.numpy()
    (ca, ka), (cb, kb) = quota.items()
    ia, ib = np.flatnonzero(lab == ca), np.flatnonzero(lab == cb)
    sums_a = np.array([S[list(c)].sum(0) for c in itertools.combinations(ia, ka)])  # (m_a, P)
    sums_b = np.array([S[list(c)].sum(0) for c in itertools.combinations(ib, kb)])
    if target == "classwise":
        ta, tb = ka / len(ia) * S[ia].sum(0), kb / len(ib) * S[ib].sum(0)
        f = ((ta - sums_a) ** 2).sum(1)[:, None] + ((tb - sums_b) ** 2).sum(1)[None, :]
    else:
        t = S.sum(0) * ((ka + kb) / len(S) if target == "scaled" else 1.0)
        f = ((t - sums_a[:, None, :] - sums_b[None, :, :]) ** 2).sum(-1)
    return float(np.sqrt(f.min()))


def assert_conforms(result: SelectionResult, labels, quota):
    kept = result.kept
    assert kept.dtype == np.int64
    assert np.all(np.diff(kept) > 0), "indices must be sorted and unique"
    counts = np.bincount(labels.numpy()[kept], minlength=len(quota))
    assert {c: int(counts[c]) for c in quota} == quota
    assert result.per_class == quota
    assert result.pruned_count == len(labels) - len(kept)


# ------------------------------------------------------------------------------------------ conformance

@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("solver", SOLVERS)
def test_every_target_and_solver_keeps_exact_quotas_and_is_deterministic(problem, target, solver):
    S, labels, _ = problem
    a, b = (run_solver(S, labels, QUOTA, target, solver, seed=5) for _ in range(2))
    assert_conforms(a, labels, QUOTA)
    assert np.array_equal(a.kept, b.kept)
    assert a.target == target and a.stats["solver"] == solver
    assert a.objective == pytest.approx(influence_objective(S, labels, a.kept, target=target), rel=1e-9)


def test_anneal_depends_on_the_seed(problem):
    S, labels, _ = problem
    a, b = (run_solver(S, labels, QUOTA, "paper", "anneal", seed=s, time_limit=None) for s in (0, 1))
    assert a.stats["initial_objective"] != b.stats["initial_objective"]


def test_solvers_keep_a_zero_quota_and_a_whole_class(problem):
    S, labels, _ = problem
    quota = {0: 0, 1: 30, 2: 2}  # class 1 has exactly 30 examples
    for solver in SOLVERS:
        assert_conforms(run_solver(S, labels, quota, "paper", solver), labels, quota)
    assert_conforms(run_solver(S, labels, quota, "classwise", "anneal"), labels, quota)


# ------------------------------------------------------------------------------------------ score ends

@pytest.mark.parametrize("name", ["grand", "el2n", "influence_score"])
def test_score_baselines_keep_the_largest_scores_per_class(problem, name):
    S, labels, inputs = problem
    score = S.norm(dim=1).numpy() if name == "influence_score" else inputs[name].numpy()
    kept = run_method(name, problem).kept
    for c, k in QUOTA.items():
        idx = np.flatnonzero(labels.numpy() == c)
        top = idx[np.argsort(-score[idx])[:k]]
        assert set(kept[labels.numpy()[kept] == c]) == set(top)


def test_forgetting_keeps_the_most_forgotten_with_seeded_ties(problem):
    _, labels, inputs = problem
    counts = inputs["forgetting_counts"].numpy()
    runs = [run_method("forgetting", problem, seed=s) for s in range(4)]
    for res in runs:
        for c in QUOTA:
            members = labels.numpy() == c
            kept_c = np.zeros_like(members)
            kept_c[res.kept] = True
            assert counts[kept_c & members].min() >= counts[~kept_c & members].max()
    assert len({tuple(r.kept) for r in runs}) > 1, "ties should be broken by the seed"


def test_herding_and_kcenter_follow_their_rule(problem):
    _, labels, inputs = problem
    X = inputs["features"].double().numpy()
    quota = {0: 1, 1: 0, 2: 0}
    idx = np.flatnonzero(labels.numpy() == 0)
    closest = idx[np.argmin(((X[idx] - X[idx].mean(0)) ** 2).sum(1))]
    assert run_method("herding", problem, quota=quota).kept.tolist() == [closest]
    assert run_method("kcenter", problem, quota=quota).kept.tolist() == [closest]
    two = run_method("kcenter", problem, quota={0: 2, 1: 0, 2: 0}).kept
    farthest = idx[np.argmax(((X[idx] - X[closest]) ** 2).sum(1))]
    assert set(two) == {closest, farthest}
    # herding's kept mean is closer to the class mean than a random subset's, on average
    mu = X[idx].mean(0)
    herd = run_method("herding", problem).kept
    herd_err = np.linalg.norm(X[herd[labels.numpy()[herd] == 0]].mean(0) - mu)
    rand_err = np.mean([np.linalg.norm(X[np.random.default_rng(s).choice(idx, 5, replace=False)].mean(0) - mu)
                        for s in range(20)])
    assert herd_err < rand_err


# ------------------------------------------------------------------------------------------ Eq. 4 solvers

@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("solver", SOLVERS)
def test_solvers_beat_random_on_their_own_target(target, solver):
    S, labels = make_problem(sizes=(80, 80, 80), P=10, seed=2, mean_scale=1.0, offset=0.2)
    quota = {0: 8, 1: 8, 2: 8}
    result = run_solver(S, labels, quota, target, solver, seed=0, time_limit=5)
    randoms = [influence_objective(S, labels, select("random", labels, quota, seed=s).kept,
                                   target=target) for s in range(10)]
    assert result.objective < np.mean(randoms)
    assert result.t_norm == pytest.approx(float(S.sum(0).norm()))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_swap_never_ends_above_its_greedy_start(target):
    S, labels = make_problem(sizes=(60, 50, 40), P=8, seed=4)
    result = run_solver(S, labels, {0: 6, 1: 5, 2: 4}, target, "swap")
    assert result.stats["greedy_objective"] >= result.objective
    assert result.stats["converged"]


def tiny(seed):
    S, labels = make_problem(sizes=(10, 10), P=4, seed=seed, mean_scale=0.5, offset=0.1)
    return S, labels, {0: 2, 1: 3}


@pytest.mark.parametrize("seed", [0, 1])
def test_swap_finds_the_brute_force_optimum_of_literal_eq4(seed):
    # plain greedy + 1-swap reaches the optimum on these fixed instances (7 of 10 seeds in general) ...
    S, labels, quota = tiny(seed)
    result = run_solver(S, labels, quota, "paper", "swap")
    assert result.objective == pytest.approx(brute_force(S, labels, quota, "paper"), rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_perturbed_swap_finds_the_brute_force_optimum_of_literal_eq4(seed):
    # ... and with iterated local search on every seed tried
    S, labels, quota = tiny(seed)
    result = run_solver(S, labels, quota, "paper", "swap", perturb_rounds=30)
    assert result.objective == pytest.approx(brute_force(S, labels, quota, "paper"), rel=1e-9)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("seed", range(3))
def test_tiny_instances_against_brute_force(target, seed):
    S, labels, quota = tiny(seed)
    best = brute_force(S, labels, quota, target)
    result = run_solver(S, labels, quota, target, "swap", perturb_rounds=30)
    assert best * (1 - 1e-9) <= result.objective
    # "scaled"/"classwise" on 4-d tiny problems have poor 1-swap local optima (seen up to 2.2x with kicks);
    # at realistic sizes the swap search beats annealing, see the timing notes in the module docs
    assert result.objective <= 2.5 * best
    bound = relaxation_bound(S, labels, quota, target=target)
    assert bound["lower_bound"] <= best * (1 + 1e-9) + 1e-12
    assert bound["lower_bound"] <= bound["upper_bound_relaxed"] + 1e-12


def test_anneal_reaches_the_brute_force_optimum_on_a_tiny_instance():
    S, labels, quota = tiny(0)
    best = brute_force(S, labels, quota, "paper")
    result = cardinality_prune(S, labels, quota, solver="anneal", anneal_steps=20_000, seed=0, bound=False)
    assert result.objective == pytest.approx(best, rel=1e-9)


def test_lower_bound_is_valid_and_positive_when_the_target_is_out_of_reach():
    # a large common offset makes T far longer than any k kept vectors can cover: the optimum is > 0
    S, labels = make_problem(sizes=(60, 60, 60), P=6, seed=3, offset=1.0)
    quota = {0: 4, 1: 4, 2: 4}
    result = cardinality_prune(S, labels, quota, target="paper", seed=0)
    assert 0 < result.lower_bound <= result.objective
    # the bound is certified for float32 S too (its rounding slack is subtracted)
    result32 = cardinality_prune(S.float(), labels, quota, target="paper", seed=0)
    assert 0 < result32.lower_bound <= result.objective
    bound = relaxation_bound(S, labels, quota, target="paper", max_iter=0)
    assert bound["iterations"] == 0 and bound["lower_bound"] == 0.0


def test_classwise_relaxation_is_met_by_uniform_weights(problem):
    S, labels, _ = problem
    bound = relaxation_bound(S, labels, QUOTA, target="classwise")
    assert bound["lower_bound"] == 0.0 and bound["upper_bound_relaxed"] < 1e-9
    assert bound["iterations"] == 0


def test_float32_input_matches_float64_closely(problem):
    S, labels, _ = problem
    a = cardinality_prune(S, labels, QUOTA, bound=False)
    b = cardinality_prune(S.float(), labels, QUOTA, bound=False)
    assert b.objective == pytest.approx(a.objective, rel=1e-4)


def test_time_limit_still_returns_a_feasible_selection(problem):
    S, labels, _ = problem
    for solver in SOLVERS:
        result = cardinality_prune(S, labels, QUOTA, solver=solver, time_limit=1e-3, anneal_steps=10**9,
                                   bound=False)
        assert_conforms(result, labels, QUOTA)


# ------------------------------------------------------------------------------------------ Eq. 3

def test_epsilon_prune_respects_epsilon_and_grows_with_it():
    S, labels = make_problem(sizes=(100, 100, 100), P=8, seed=5, offset=0.05)
    counts = []
    for eps in [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 1e6]:
        result = epsilon_prune(S, eps, labels=labels)
        pruned = np.setdiff1d(np.arange(len(labels)), result.kept)
        assert float(S[pruned].sum(0).norm()) <= eps + 1e-12
        assert result.objective == pytest.approx(float(S[pruned].sum(0).norm()), abs=1e-12)
        assert sum(result.per_class.values()) == len(result.kept)
        counts.append(result.pruned_count)
    assert counts == sorted(counts), counts  # observed on this instance; the heuristic does not guarantee it
    assert counts[-1] == len(labels)


@pytest.mark.parametrize("target", ["scaled", "classwise"])
def test_epsilon_prune_mean_matching_targets_are_met_by_pruning_everything(target):
    S, labels = make_problem(sizes=(50, 50), P=5, seed=6)
    result = epsilon_prune(S, 1e-6, labels=labels, target=target)
    assert result.stats["strategy"] == "all" and result.pruned_count == len(labels)
    assert result.objective <= 1e-6
    # the pruned-set form of the objective equals the kept-set form with the kept counts as quotas
    kept_form = influence_objective(S, labels, result.kept, target=target)
    assert kept_form == pytest.approx(result.objective, abs=1e-9)


def test_epsilon_prune_pruned_and_kept_forms_agree():
    S, labels = make_problem(sizes=(50, 50), P=5, seed=6)
    result = epsilon_prune(S, 3.0, labels=labels)
    assert 0 < result.pruned_count < len(labels)
    assert influence_objective(S, labels, result.kept) == pytest.approx(result.objective, rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_epsilon_prune_is_close_to_the_brute_force_maximum(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 14
    S = torch.randn(n, 3, generator=gen, dtype=torch.float64) + 0.3
    eps = 1.0
    masks = np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float64)
    norms = np.linalg.norm(masks @ S.numpy(), axis=1)
    best = int(masks[norms <= eps].sum(1).max())
    result = epsilon_prune(S, eps)
    assert result.objective <= eps
    assert best - 1 <= result.pruned_count <= best
    assert result.per_class == {}


def test_epsilon_prune_uses_the_backward_start_when_few_examples_must_stay():
    # small per-example vectors with a common drift (the literal Eq. 4's regime, results/objective-study/):
    # pruning most examples is feasible once a few examples along T are kept, which the forward greedy alone
    # does not find
    gen = torch.Generator().manual_seed(0)
    S = 1e-3 * torch.randn(2000, 30, generator=gen, dtype=torch.float64)
    S += 2e-4 * torch.randn(30, generator=gen, dtype=torch.float64)
    result = epsilon_prune(S, 0.01)
    assert result.stats["strategy"] == "backward"
    assert result.objective <= 0.01
    assert result.pruned_count > 550  # the plain one-at-a-time forward greedy prunes 424 here


# ------------------------------------------------------------------------------------------ validation

def test_resolve_quota():
    labels = np.array([0, 0, 1, 1, 1, 3])
    assert resolve_quota(labels, 1) == {0: 1, 1: 1, 3: 1}
    assert resolve_quota(labels, {1: 2}) == {0: 0, 1: 2, 3: 0}
    with pytest.raises(ValueError, match="class 3, which has only 1"):
        resolve_quota(labels, 2)
    with pytest.raises(ValueError, match=r"must be >= 0, got -1"):
        resolve_quota(labels, {0: -1})
    with pytest.raises(ValueError, match=r"unknown class\(es\) \[2\]"):
        resolve_quota(labels, {2: 1})
    with pytest.raises(ValueError, match="must be an int"):
        resolve_quota(labels, 1.5)


def test_bad_inputs_raise_value_errors(problem):
    S, labels, inputs = problem
    with pytest.raises(ValueError, match="which has only"):
        cardinality_prune(S, labels, 1000)
    with pytest.raises(ValueError, match="unknown target 'literal'"):
        cardinality_prune(S, labels, 2, target="literal")
    with pytest.raises(ValueError, match="unknown target"):
        relaxation_bound(S, labels, 2, target="literal")
    with pytest.raises(ValueError, match="unknown target"):
        epsilon_prune(S, 1.0, target="literal")
    with pytest.raises(ValueError, match="unknown solver 'cplex'"):
        cardinality_prune(S, labels, 2, solver="cplex")
    with pytest.raises(ValueError, match=r"S must have shape \(94, P\) to match labels"):
        cardinality_prune(S, labels[:-1], 2)
    with pytest.raises(ValueError, match="rows but labels has"):
        epsilon_prune(S, 1.0, labels=labels[:-1])
    with pytest.raises(ValueError, match="unknown method 'craig'; choose one of influence, random"):
        select("craig", labels, 2)
    with pytest.raises(ValueError, match=r"needs input\(s\) \['features'\]"):
        select("herding", labels, 2)
    with pytest.raises(ValueError, match=r"grand must have shape \(95,\)"):
        select("grand", labels, 2, grand=inputs["grand"][:-1])
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
        epsilon_prune(S, -1.0)
    with pytest.raises(ValueError, match="'classwise' needs labels"):
        epsilon_prune(S, 1.0, target="classwise")
    with pytest.raises(ValueError, match="NaN or inf"):
        cardinality_prune(torch.full_like(S, float("nan")), labels, 2)
    with pytest.raises(ValueError, match="time_limit must be None or > 0"):
        cardinality_prune(S, labels, 2, time_limit=0)


def test_fraction_quota_keeps_the_fraction_of_every_class():
    from nasprune.proxies.selection import fraction_quota

    labels = np.repeat([0, 1, 2], [10, 25, 7])
    assert fraction_quota(labels, 0.6) == {0: 6, 1: 15, 2: 4}  # 4.2 rounds to 4
    assert fraction_quota(labels, 1.0) == {0: 10, 1: 25, 2: 7}
    for bad in (0, 1.5, True, "half"):
        with pytest.raises(ValueError, match="keep must be a fraction in"):
            fraction_quota(labels, bad)
