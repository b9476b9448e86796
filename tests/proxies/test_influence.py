"""Tests for the last-layer influence (nasprune/proxies/_influence.py): exact influence against autograd, refit
against scipy, approximations against exact, the leave-group-out check, and input validation. Tiny float64 problems
throughout."""
import numpy as np
import pytest
import torch
from scipy import optimize, special

from nasprune.proxies import (RefitResult, flatten_params, influence_error, last_layer_influence, leave_group_out_check,
                              refit_last_layer, unflatten_params)


def make_problem(n=40, d=3, C=3, weight_scale=0.5, seed=1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=gen, dtype=dtype)
    labels = torch.randint(C, (n,), generator=gen)
    weight = weight_scale * torch.randn(C, d, generator=gen, dtype=dtype)
    bias = 0.1 * torch.randn(C, generator=gen, dtype=dtype)
    return features, labels, weight, bias


def make_blobs(n=2000, d=8, C=4, seed=0, spread=1.0):
    gen = torch.Generator().manual_seed(seed)
    centers = spread * torch.randn(C, d, generator=gen, dtype=torch.float64)
    labels = torch.randint(C, (n,), generator=gen)
    features = centers[labels] + torch.randn(n, d, generator=gen, dtype=torch.float64)
    return features, labels, torch.zeros(C, d, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)


def autograd_influence(features, labels, weight, bias, l2, damping):
    """Independent reference: autograd Hessian of the regularised loss and per-example CE gradients."""
    n, d = features.shape
    C = weight.shape[0]
    xt = torch.cat([features, torch.ones(n, 1, dtype=features.dtype)], dim=1)

    def ce(theta, x, y):
        return torch.nn.functional.cross_entropy(x @ theta.reshape(C, d + 1).T, y)

    theta = torch.cat([weight, bias[:, None]], dim=1).reshape(-1)
    hess = torch.autograd.functional.hessian(lambda t: ce(t, xt, labels) + 0.5 * l2 * t @ t, theta)
    hess = hess + damping * torch.eye(len(theta), dtype=theta.dtype)
    grads = []
    for i in range(n):
        t = theta.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(ce(t, xt[i:i + 1], labels[i:i + 1]), t)[0])
    return torch.linalg.solve(hess, torch.stack(grads).T).T / n


def test_flatten_orders_class_by_class_and_round_trips():
    weight = torch.arange(6.0).reshape(2, 3)
    bias = torch.tensor([10.0, 20.0])
    theta = flatten_params(weight, bias)
    assert theta.tolist() == [0, 1, 2, 10, 3, 4, 5, 20]
    w, b = unflatten_params(theta, 2, 3)
    assert torch.equal(w, weight) and torch.equal(b, bias)


@pytest.mark.parametrize("l2,damping", [(0.1, 0.0), (0.0, 0.05), (0.03, 0.02)])
def test_exact_matches_autograd(l2, damping):
    problem = make_problem()
    S = last_layer_influence(*problem, l2=l2, damping=damping, chunk_size=7)  # chunks not dividing n
    S_ref = autograd_influence(*problem, l2=l2, damping=damping)
    assert S.shape == (40, 3 * 4) and S.dtype == torch.float64
    assert (S - S_ref).norm() / S_ref.norm() < 1e-6


def test_float32_input_gives_float32_output_close_to_float64():
    problem = make_problem()
    S64 = last_layer_influence(*problem, l2=0.1)
    S32 = last_layer_influence(*(t.float() if t.is_floating_point() else t for t in problem), l2=0.1)
    assert S32.dtype == torch.float32
    assert influence_error(S32, S64)["rel_frobenius"] < 1e-5


def numpy_objective(theta, x, y, C, l2):
    n = len(x)
    xt = np.hstack([x, np.ones((n, 1))])
    logits = xt @ theta.reshape(C, -1).T
    lse = special.logsumexp(logits, axis=1)
    loss = (lse - logits[np.arange(n), y]).mean() + 0.5 * l2 * theta @ theta
    resid = np.exp(logits - lse[:, None])
    resid[np.arange(n), y] -= 1
    return loss, (resid.T @ xt).reshape(-1) / n + l2 * theta


def test_refit_converges_and_agrees_with_scipy_lbfgs():
    features, labels, weight, bias = make_problem(n=60, d=4, C=3)
    l2 = 0.01
    result = refit_last_layer(features, labels, weight, bias, l2=l2)
    assert isinstance(result, RefitResult)
    assert result.converged and result.grad_norm < 1e-6 and result.message == "converged"
    assert result.weight.dtype == torch.float64 and result.iterations <= 20
    theta0 = flatten_params(weight, bias).numpy()
    ref = optimize.minimize(numpy_objective, theta0, args=(features.numpy(), labels.numpy(), 3, l2), jac=True,
                            method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000})
    theta = flatten_params(result.weight, result.bias).numpy()
    assert np.abs(theta - ref.x).max() < 1e-4
    assert result.loss == pytest.approx(ref.fun, abs=1e-10)


def test_refit_without_l2_on_separable_data_reports_what_happened():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    features[:20] -= 4
    features[20:] += 4
    labels = torch.tensor([0] * 20 + [1] * 20)
    zeros = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    result = refit_last_layer(features, labels, *zeros, l2=0.0, max_iter=5)
    assert not result.converged and result.message == "stopped at max_iter=5" and result.iterations == 5
    assert result.ridge > 0 and result.grad_norm > 1e-8
    assert result.loss < 0.01 and np.isfinite(result.weight.numpy()).all()


def test_trace_identity_at_the_optimum():
    features, labels, weight, bias = make_problem(n=50)
    l2 = 0.05
    fit = refit_last_layer(features, labels, weight, bias, l2=l2, tol=1e-12)
    S = last_layer_influence(features, labels, fit.weight, fit.bias, l2=l2)
    # at the optimum mean_i g_i = -l2 theta, so sum_i S_i = H^{-1} mean_i g_i = -l2 H^{-1} theta
    theta = flatten_params(fit.weight, fit.bias)
    xt = torch.cat([features, torch.ones(50, 1, dtype=torch.float64)], dim=1)
    hess = torch.autograd.functional.hessian(
        lambda t: torch.nn.functional.cross_entropy(xt @ t.reshape(3, 4).T, labels) + 0.5 * l2 * t @ t, theta)
    expected = -l2 * torch.linalg.solve(hess, theta)
    assert torch.allclose(S.sum(0), expected, rtol=1e-8, atol=1e-12)


def test_kfac_equals_exact_when_predictions_are_uniform():
    # with all-zero weights every p_i is uniform, so H = A (x) B exactly
    features, labels, weight, bias = make_problem()
    zero = torch.zeros_like(weight), torch.zeros_like(bias)
    S = last_layer_influence(features, labels, *zero, l2=0.01, hessian="kfac")
    S_ref = last_layer_influence(features, labels, *zero, l2=0.01)
    assert influence_error(S, S_ref)["rel_frobenius"] < 1e-10


def test_kfac_is_close_to_exact_on_a_well_conditioned_problem():
    problem = make_problem(weight_scale=0.2)
    S_ref = last_layer_influence(*problem, l2=0.05, damping=0.05)
    err = influence_error(last_layer_influence(*problem, l2=0.05, damping=0.05, hessian="kfac"), S_ref)
    assert err["mean_cosine"] > 0.98 and err["rel_frobenius"] < 0.2


@pytest.mark.parametrize("n", [40, 8])  # n > P runs the series on the identity, n <= P on the gradients
def test_full_batch_lissa_converges_to_exact(n):
    problem = make_problem(n=n)
    S_ref = last_layer_influence(*problem, l2=0.05, damping=0.05)
    S = last_layer_influence(*problem, l2=0.05, damping=0.05, hessian="lissa", lissa_scale=5.0,
                             lissa_depth=1000)
    assert influence_error(S, S_ref)["rel_frobenius"] < 1e-3


def test_minibatch_lissa_is_close_and_seeded():
    problem = make_problem()
    kwargs = dict(l2=0.05, damping=0.05, hessian="lissa", lissa_scale=5.0, lissa_depth=300, lissa_batch=10)
    S_ref = last_layer_influence(*problem, l2=0.05, damping=0.05)
    S = last_layer_influence(*problem, seed=0, **kwargs)
    assert influence_error(S, S_ref)["mean_cosine"] > 0.95
    assert torch.equal(S, last_layer_influence(*problem, seed=0, **kwargs))
    assert not torch.equal(S, last_layer_influence(*problem, seed=1, **kwargs))


def test_lissa_warns_when_scale_is_below_the_top_eigenvalue():
    problem = make_problem()
    with pytest.warns(UserWarning, match=r"lissa_scale=0\.01 is not above"):
        last_layer_influence(*problem, l2=0.05, hessian="lissa", lissa_scale=0.01, lissa_depth=5)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="LiSSA diverged"):
        last_layer_influence(*problem, l2=0.05, hessian="lissa", lissa_scale=0.01, lissa_depth=1000)


def test_influence_error_reports_relative_error_and_cosine():
    S = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    err = influence_error(2 * S, S)
    assert err["rel_frobenius"] == pytest.approx(1.0) and err["mean_cosine"] == pytest.approx(1.0)
    assert influence_error(-S, S)["mean_cosine"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same shape"):
        influence_error(S, S[:1])


def test_leave_group_out_changes_follow_the_influence_prediction():
    report = leave_group_out_check(*make_blobs(), l2=1e-3, groups=20, group_size=50, seed=0)
    assert report["all_converged"]
    assert report["actual"].shape == report["predicted"].shape == (20, 4 * 9)
    assert report["pearson_r"] > 0.9 and report["mean_cosine"] > 0.9
    assert report["pearson_r_reweighted"] > 0.95 and report["mean_cosine_reweighted"] > 0.99


def test_reweighted_prediction_fixes_the_shift_missed_by_the_plain_sum():
    # well separated blobs with strong l2: the plain sum misses the shared m/(n-m) l2 H^-1 theta shift
    report = leave_group_out_check(*make_blobs(n=1000, spread=1.5), l2=1e-2, groups=5, group_size=50, seed=1)
    assert report["mean_cosine_reweighted"] > 0.99
    assert report["mean_cosine"] < report["mean_cosine_reweighted"] - 0.05


@pytest.mark.parametrize("change,match", [
    (dict(features=torch.zeros(40)), r"features must be a non-empty 2-D tensor"),
    (dict(labels=torch.zeros(39, dtype=torch.long)), r"labels must have shape \(40,\)"),
    (dict(labels=torch.zeros(40)), r"integer tensor of class indices, got dtype torch.float32"),
    (dict(labels=torch.full((40,), 3)), r"labels must lie in \[0, 3\).*range \[3, 3\]"),
    (dict(weight=torch.zeros(3, 4, dtype=torch.float64)), r"weight must have shape \(C, 3\).*\(3, 4\)"),
    (dict(bias=torch.zeros(2, dtype=torch.float64)), r"bias must have shape \(3,\)"),
    (dict(hessian="newton"), r"hessian must be one of .*got 'newton'"),
    (dict(l2=-1.0), r"l2 must be a finite number >= 0, got -1.0"),
    (dict(damping=float("nan")), r"damping must be a finite number >= 0, got nan"),
    (dict(l2=0.0, damping=0.0), r"needs l2 \+ damping > 0 .*pass e.g. damping=1e-3"),
    (dict(hessian="lissa", lissa_batch=0), r"lissa_batch must be None \(full batch\) or >= 1, got 0"),
])
def test_bad_inputs_raise_value_errors_that_name_the_value(change, match):
    features, labels, weight, bias = make_problem()
    args = dict(features=features, labels=labels, weight=weight, bias=bias, l2=0.1)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        last_layer_influence(**args)


def test_bad_refit_and_check_arguments_raise():
    problem = make_problem()
    with pytest.raises(ValueError, match=r"l2 must be a finite number >= 0, got -0.5"):
        refit_last_layer(*problem, l2=-0.5)
    with pytest.raises(ValueError, match=r"l2 must be > 0 .*got 0.0"):
        leave_group_out_check(*problem, l2=0.0)
    with pytest.raises(ValueError, match=r"1 <= group_size < n=40, got groups=20, group_size=50"):
        leave_group_out_check(*problem, l2=0.1)
    with pytest.raises(ValueError, match=r"theta must have shape \(12,\)"):
        unflatten_params(torch.zeros(10), 3, 3)
