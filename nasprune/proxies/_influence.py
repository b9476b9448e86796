"""Last-layer parameter influence for dataset pruning (Yang et al., ICLR 2023, section 4.1).

The paper scores a training example by the parameter change its removal would cause,
S_i = (1/n) H^{-1} g_i, computed for the final linear layer only. On fixed features that layer is
multinomial logistic regression, so everything here is closed form and small: with P = C*(d+1)
parameters (650 for d=64, C=10) the Hessian is a dense P x P matrix.

Conventions used throughout:
  * theta is ordered class by class, [W_c (d values), b_c]: ``cat([weight, bias[:, None]], 1).reshape(-1)``;
  * x~ = [x, 1], so logits = x~ Theta^T with Theta = [weight | bias] of shape (C, d+1);
  * g_i = (p_i - onehot_i) (x) x~_i is the plain cross-entropy gradient (no l2 term);
  * H = (1/n) sum_i (diag(p_i) - p_i p_i^T) (x) x~_i x~_i^T + (l2 + damping) I.
Without l2 or damping H is singular (adding one vector to every row of Theta leaves the softmax
unchanged), so the "exact" and "kfac" Hessians need l2 + damping > 0. Arithmetic is float64.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from nasprune.config import check_random_state

#: How H^-1 is applied (``last_layer_influence(hessian=...)``).
HESSIANS = ("exact", "kfac", "lissa")


@dataclass
class RefitResult:
    """Outcome of `refit_last_layer`; weight and bias come back in the dtype of the input weight."""

    weight: torch.Tensor
    bias: torch.Tensor
    loss: float  # regularised objective at the returned parameters
    grad_norm: float  # 2-norm of the regularised objective's gradient there
    iterations: int  # Newton steps taken
    converged: bool  # grad_norm <= tol
    seconds: float
    message: str  # why the loop stopped
    ridge: float = 0.0  # largest ridge added to a Newton system (0 unless l2 == 0 or it failed to factor)


# ---------------------------------------------------------------- parameters and validation

def flatten_params(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Stack weight (C, d) and bias (C,) into theta of length C*(d+1), class by class [W_c, b_c]."""
    if weight.dim() != 2 or tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"need weight (C, d) and bias (C,), got {tuple(weight.shape)} and "
                         f"{tuple(bias.shape)}.")
    return torch.cat([weight, bias.to(weight.dtype)[:, None]], dim=1).reshape(-1)


def unflatten_params(theta: torch.Tensor, C: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of `flatten_params`: split theta (C*(d+1),) into weight (C, d) and bias (C,)."""
    if tuple(theta.shape) != (C * (d + 1),):
        raise ValueError(f"theta must have shape ({C * (d + 1)},) for C={C}, d={d}, "
                         f"got {tuple(theta.shape)}.")
    block = theta.reshape(C, d + 1)
    return block[:, :d].clone(), block[:, d].clone()


def _check_nonneg(**values: float) -> None:
    for name, value in values.items():
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}.")


def _check_layer(features, labels, weight, bias):
    """Validate the layer inputs; return x~ (n, d+1) float64, labels long and Theta (C, d+1) float64."""
    if features.dim() != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty 2-D tensor (n, d), got shape "
                         f"{tuple(features.shape)}; flatten the penultimate-layer output first.")
    n, d = features.shape
    if tuple(labels.shape) != (n,):
        raise ValueError(f"labels must have shape ({n},) to match features, got {tuple(labels.shape)}.")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of class indices, got dtype {labels.dtype}.")
    if weight.dim() != 2 or weight.shape[1] != d:
        raise ValueError(f"weight must have shape (C, {d}) to match features (n, {d}), "
                         f"got {tuple(weight.shape)}.")
    C = weight.shape[0]
    if tuple(bias.shape) != (C,):
        raise ValueError(f"bias must have shape ({C},) to match weight, got {tuple(bias.shape)}.")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= C:
        raise ValueError(f"labels must lie in [0, {C}) for a weight with C={C} rows, "
                         f"got range [{low}, {high}].")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or inf; check the feature extractor.")
    x = features.to(torch.float64)
    xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64, device=x.device)], dim=1)
    theta = torch.cat([weight.to(x), bias.to(x)[:, None]], dim=1)
    return xt, labels.to(device=x.device, dtype=torch.long), theta


# ---------------------------------------------------------------- closed-form pieces

def _mean_hessian(xt: torch.Tensor, probs: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """(1/n) sum_i (diag(p_i) - p_i p_i^T) (x) x~_i x~_i^T as a dense (P, P) matrix, built by chunks."""
    (n, k), C = xt.shape, probs.shape[1]
    blocks = xt.new_zeros(C, k, k)  # diag(p_i) part: one (k, k) block per class
    outer = xt.new_zeros(C * k, C * k)  # p_i p_i^T part: (p_i (x) x~_i)(p_i (x) x~_i)^T
    for s in range(0, n, chunk_size):
        x, p = xt[s:s + chunk_size], probs[s:s + chunk_size]
        u = p[:, :, None] * x[:, None, :]
        blocks += torch.einsum("mcj,ml->cjl", u, x)
        u = u.reshape(len(x), -1)
        outer += u.T @ u
    return (torch.block_diag(*blocks) - outer) / n


def _grads(xt: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy gradients g_i = (p_i - onehot_i) (x) x~_i, shape (m, P)."""
    resid = probs.clone()
    resid[torch.arange(len(labels), device=labels.device), labels] -= 1.0
    return (resid[:, :, None] * xt[:, None, :]).reshape(len(xt), -1)


def _hvp_rows(xt: torch.Tensor, probs: torch.Tensor, rows: torch.Tensor, lam: float) -> torch.Tensor:
    """Damped mean Hessian of the examples (xt, probs) applied to each row of `rows` (r, P), as two GEMMs."""
    r, (m, C), k = len(rows), probs.shape, xt.shape[1]
    pt = probs.T
    z = (rows.reshape(r * C, k) @ xt.T).reshape(r, C, m)  # z[r, c, b] = <V_r[c], x~_b>
    z = pt * (z - (pt * z).sum(1, keepdim=True))  # (diag(p_b) - p_b p_b^T) z
    return (z.reshape(r * C, m) @ xt).reshape(r, -1) / m + lam * rows


def _lambda_max(xt, probs, lam, seed, steps=30) -> float:
    """Power-iteration estimate (a lower bound) of the largest eigenvalue of the damped Hessian."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(1, probs.shape[1] * xt.shape[1], generator=gen, dtype=torch.float64).to(xt.device)
    for _ in range(steps):
        v = _hvp_rows(xt, probs, v / v.norm(), lam)
    return v.norm().item()


def _lissa_rows(xt, probs, rhs, lam, scale, depth, repeats, batch, seed, chunk_size) -> torch.Tensor:
    """LiSSA (Agarwal et al. 2017) estimate of H^{-1} v for every row v of rhs, averaged over repeats.

    h_0 = v, h_t = v + (I - H_t / scale) h_{t-1}, estimate h_depth / scale, where H_t is the damped
    Hessian of a random minibatch (or of all examples when batch is None, which makes repeats identical).
    """
    n = len(xt)
    if batch is None:
        eye = torch.eye(rhs.shape[1], dtype=xt.dtype, device=xt.device)
        full = _mean_hessian(xt, probs, chunk_size) + lam * eye
        hvp, repeats = (lambda h: h @ full), 1
    else:
        gen = torch.Generator().manual_seed(seed)

        def hvp(h):
            idx = torch.randint(n, (batch,), generator=gen).to(xt.device)
            return _hvp_rows(xt[idx], probs[idx], h, lam)
    total = torch.zeros_like(rhs)
    for _ in range(repeats):
        h = rhs.clone()
        for _ in range(depth):
            h = rhs + h - hvp(h) / scale
        total += h / scale
    return total / repeats


# ---------------------------------------------------------------- public API

def refit_last_layer(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor, *, l2: float = 0.0, max_iter: int = 100,
                     tol: float = 1e-8) -> RefitResult:
    """Minimise mean cross-entropy + (l2/2)||theta||^2 over the last layer by Newton, from (weight, bias).

    The problem is convex, so Newton with the exact Hessian and an Armijo backtracking line search
    converges in a handful of steps; the influence function assumes theta-hat is this minimiser.
    With l2 == 0 the Hessian is singular, so a tiny ridge is added to the Newton system (never to the
    objective; `ridge` records it). On separable data no minimiser exists and the weights grow without
    bound: the loop stops at max_iter, or the gradient falls below tol anyway, so `converged` then means
    "small gradient", not "at a minimiser"; use l2 > 0 (the training weight decay) for influence.
    """
    _check_nonneg(l2=l2)
    if max_iter < 0 or not tol > 0:
        raise ValueError(f"need max_iter >= 0 and tol > 0, got max_iter={max_iter}, tol={tol}.")
    start = time.perf_counter()
    xt, y, theta_m = _check_layer(features, labels, weight, bias)
    C, k = theta_m.shape
    eye = torch.eye(C * k, dtype=xt.dtype, device=xt.device)

    def evaluate(theta, with_grad=True):
        logits = xt @ theta.reshape(C, k).T
        cross_entropy = torch.logsumexp(logits, 1) - logits.gather(1, y[:, None])[:, 0]
        loss = cross_entropy.mean() + 0.5 * l2 * theta @ theta
        if not with_grad:
            return loss.item(), None, None
        probs = torch.softmax(logits, 1)
        return loss.item(), _grads(xt, probs, y).mean(0) + l2 * theta, probs

    theta = theta_m.reshape(-1).clone()
    loss, grad, probs = evaluate(theta)
    iterations, max_ridge, message = 0, 0.0, ""
    while not message:
        if grad.norm().item() <= tol:
            message = "converged"
            break
        if iterations == max_iter:
            message = f"stopped at max_iter={max_iter}"
            break
        hess = _mean_hessian(xt, probs, 4096) + l2 * eye
        ridge = 1e-10 * (1.0 + hess.diagonal().mean().item()) if l2 == 0 else 0.0
        chol, info = torch.linalg.cholesky_ex(hess + ridge * eye)
        while info.item() != 0:  # only reached for a (numerically) singular system: raise the ridge
            ridge = max(100 * ridge, 1e-12 * (1.0 + hess.diagonal().abs().max().item()))
            chol, info = torch.linalg.cholesky_ex(hess + ridge * eye)
        max_ridge = max(max_ridge, ridge)
        step = -torch.cholesky_solve(grad[:, None], chol)[:, 0]
        slope, t = (grad @ step).item(), 1.0
        # Armijo backtracking; the 1e-15 slack tolerates round-off once the decrease nears machine precision
        while evaluate(theta + t * step, False)[0] > loss + 1e-4 * t * slope + 1e-15 * abs(loss):
            t *= 0.5
            if t < 1e-10:
                message = "line search found no decrease (precision limit or ill-conditioning)"
                break
        if not message:
            theta = theta + t * step
            loss, grad, probs = evaluate(theta)
            iterations += 1
    grad_norm = grad.norm().item()
    new_w, new_b = unflatten_params(theta, C, k - 1)
    return RefitResult(weight=new_w.to(weight.dtype), bias=new_b.to(weight.dtype), loss=loss,
                       grad_norm=grad_norm, iterations=iterations, converged=grad_norm <= tol,
                       seconds=time.perf_counter() - start, message=message, ridge=max_ridge)


def last_layer_influence(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor, *, l2: float = 0.0, damping: float = 0.0,
                         hessian: str = "exact", lissa_scale: float = 25.0, lissa_depth: int = 5000,
                         lissa_repeats: int = 3, lissa_batch: int | None = None, seed: int = 0,
                         chunk_size: int = 4096) -> torch.Tensor:
    """Per-example parameter influence S_i = (1/n) H^{-1} g_i of the last layer, shape (n, C*(d+1)).

    S_i approximates theta_{-i} - theta-hat, the change from removing example i (paper eq. 2), and the
    sum of S_i over a set approximates the change from removing the set. Hessians (how H^{-1} is applied):
      * "exact": dense H by chunked einsums, one Cholesky factorisation, all n solves at once;
      * "kfac": H ~ A (x) B + (l2 + damping) I with A = mean(diag(p) - p p^T), B = mean(x~ x~^T),
        inverted exactly through the eigendecompositions of A and B;
      * "lissa": the stochastic Neumann series used in the paper (see `_lissa_rows`); it converges to
        "exact" with lissa_batch=None once lissa_scale exceeds the largest eigenvalue of H (a warning
        says when it does not). Every right-hand side shares the same minibatches, so the series is run
        on the P x P identity (or on the gradients when n <= P) and then applied to all gradients.
    Returns float64 when features are float64, otherwise float32.
    """
    if hessian not in HESSIANS:
        raise ValueError(f"hessian must be one of {HESSIANS}, got {hessian!r}.")
    _check_nonneg(l2=l2, damping=damping)
    if hessian != "lissa" and l2 + damping == 0:
        raise ValueError(f"hessian={hessian!r} needs l2 + damping > 0 (got l2={l2}, damping={damping}): "
                         "the softmax Hessian is singular; pass e.g. damping=1e-3, or the training weight "
                         "decay as l2.")
    if not (lissa_scale > 0 and lissa_depth >= 1 and lissa_repeats >= 1 and chunk_size >= 1):
        raise ValueError(f"need lissa_scale > 0, lissa_depth >= 1, lissa_repeats >= 1, chunk_size >= 1; got "
                         f"{lissa_scale}, {lissa_depth}, {lissa_repeats}, {chunk_size}.")
    if lissa_batch is not None and lissa_batch < 1:
        raise ValueError(f"lissa_batch must be None (full batch) or >= 1, got {lissa_batch}.")
    xt, y, theta_m = _check_layer(features, labels, weight, bias)
    n, (C, k) = len(xt), theta_m.shape
    P, lam = C * k, l2 + damping
    probs = torch.softmax(xt @ theta_m.T, dim=1)
    out_dtype = torch.float64 if features.dtype == torch.float64 else torch.float32

    if hessian == "exact":
        hess = _mean_hessian(xt, probs, chunk_size) + lam * torch.eye(P, dtype=xt.dtype, device=xt.device)
        chol, info = torch.linalg.cholesky_ex(hess)
        if info.item() != 0:
            raise ValueError(f"the damped Hessian is not positive definite (l2={l2}, damping={damping}); "
                             "increase damping or l2.")

        def apply(g):
            return torch.cholesky_solve(g.T, chol).T
    elif hessian == "kfac":
        a_eig, a_vec = torch.linalg.eigh(torch.diag(probs.mean(0)) - probs.T @ probs / n)
        b_eig, b_vec = torch.linalg.eigh(xt.T @ xt / n)
        # eigenvalues of A (x) B + lam I; the clamp removes round-off below A's exact zero eigenvalue
        denom = a_eig.clamp_min(0)[:, None] * b_eig.clamp_min(0)[None, :] + lam

        def apply(g):  # (A (x) B) vec(V) = vec(A V B) for row-major V of shape (C, d+1)
            v = a_vec.T @ g.reshape(-1, C, k) @ b_vec
            return (a_vec @ (v / denom) @ b_vec.T).reshape(len(g), P)
    else:
        top = _lambda_max(xt, probs, lam, seed)
        if lissa_scale <= top:
            warnings.warn(f"lissa_scale={lissa_scale} is not above the estimated largest Hessian eigenvalue "
                          f"{top:.4g}, so LiSSA may diverge; use lissa_scale > {top:.4g}.", stacklevel=2)
        on_identity = n > P
        rhs = torch.eye(P, dtype=xt.dtype, device=xt.device) if on_identity else _grads(xt, probs, y)
        rows = _lissa_rows(xt, probs, rhs, lam, lissa_scale, lissa_depth, lissa_repeats, lissa_batch, seed,
                           chunk_size)
        if not torch.isfinite(rows).all():
            raise ValueError(f"LiSSA diverged with lissa_scale={lissa_scale}; raise it above the largest "
                             f"Hessian eigenvalue (estimated {top:.4g}), or add damping.")
        if not on_identity:
            return (rows / n).to(out_dtype)

        def apply(g):  # row j of `rows` is (M e_j)^T for the LiSSA operator M ~ H^{-1}, so g @ rows = (M g)^T
            return g @ rows

    out = torch.empty(n, P, dtype=out_dtype, device=xt.device)
    for s in range(0, n, chunk_size):
        e = min(s + chunk_size, n)
        out[s:e] = (apply(_grads(xt[s:e], probs[s:e], y[s:e])) / n).to(out_dtype)
    return out


def influence_error(S: torch.Tensor, S_ref: torch.Tensor) -> dict:
    """How far an approximate influence matrix S is from a reference (e.g. lissa/kfac vs exact).

    Returns rel_frobenius = ||S - S_ref||_F / ||S_ref||_F and the mean and minimum over rows of the
    cosine similarity between S_i and S_ref_i.
    """
    if S.shape != S_ref.shape:
        raise ValueError(f"S and S_ref must have the same shape, got {tuple(S.shape)} and "
                         f"{tuple(S_ref.shape)}.")
    S, S_ref = S.to(torch.float64), S_ref.to(S.device, torch.float64)
    ref_norm = S_ref.norm().item()
    if ref_norm == 0:
        raise ValueError("S_ref is all zeros, so a relative error is undefined.")
    cos = torch.nn.functional.cosine_similarity(S, S_ref, dim=1, eps=1e-300)
    return {"rel_frobenius": (S - S_ref).norm().item() / ref_norm, "mean_cosine": cos.mean().item(),
            "min_cosine": cos.min().item()}


def leave_group_out_check(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor, *, l2: float, groups: int = 20, group_size: int = 50,
                          seed: int = 0) -> dict:
    """Compare actual leave-group-out parameter changes with the influence prediction sum_{i in G} S_i.

    Refits the layer to theta-hat, computes exact S there, then for `groups` random groups G of
    m = `group_size` examples refits without G (warm start from theta-hat) and compares
    theta_{-G} - theta-hat with the paper's prediction sum_{i in G} S_i.
    Caveat: the refit averages over the n - m remaining examples, so its first-order change is
    (1/(n-m)) H^{-1} sum_G g_i + (m/(n-m)) l2 H^{-1} theta-hat. At the optimum l2 H^{-1} theta-hat equals
    -sum_j S_j, so this is n/(n-m) sum_{i in G} (S_i - mean_j S_j). The paper's sum drops the reweighting:
    norms scale by n/(n-m), and the shift shared by all groups, -m/(n-m) sum_j S_j, is missed, which
    lowers cosines when l2 is large or the data nearly separable. Both predictions are reported.
    Returns numpy arrays `actual`, `predicted`, `predicted_reweighted` (groups, P); `actual_norms`,
    `predicted_norms`, `cosines` (and their `_reweighted` twins); floats `pearson_r`, `pearson_p`
    (norms across groups), `mean_cosine` (and twins); and `all_converged` for the refits.
    """
    if not (l2 > 0 and math.isfinite(l2)):
        raise ValueError(f"l2 must be > 0 so that theta-hat and S are well defined, got {l2}.")
    n = len(_check_layer(features, labels, weight, bias)[0])
    if groups < 2 or not 1 <= group_size < n:
        raise ValueError(f"need groups >= 2 and 1 <= group_size < n={n}, got groups={groups}, "
                         f"group_size={group_size}.")
    x64 = features.to(torch.float64)
    full = refit_last_layer(x64, labels, weight.to(torch.float64), bias.to(torch.float64), l2=l2, tol=1e-10)
    S = last_layer_influence(x64, labels, full.weight, full.bias, l2=l2)
    theta_hat, S_mean = flatten_params(full.weight, full.bias), S.mean(0)
    rng = check_random_state(seed)
    actual, predicted, reweighted, converged = [], [], [], [full.converged]
    for _ in range(groups):
        drop = torch.as_tensor(rng.choice(n, size=group_size, replace=False), device=S.device)
        keep = torch.ones(n, dtype=torch.bool, device=S.device)
        keep[drop] = False
        part = refit_last_layer(x64[keep], labels[keep.to(labels.device)], full.weight, full.bias,
                                l2=l2, tol=1e-10)
        converged.append(part.converged)
        actual.append((flatten_params(part.weight, part.bias) - theta_hat).cpu().numpy())
        predicted.append(S[drop].sum(0).cpu().numpy())
        reweighted.append((n / (n - group_size) * (S[drop] - S_mean).sum(0)).cpu().numpy())
    report = {"actual": np.stack(actual), "all_converged": all(converged)}
    report["actual_norms"] = a_norm = np.linalg.norm(report["actual"], axis=1)
    for suffix, pred in (("", np.stack(predicted)), ("_reweighted", np.stack(reweighted))):
        p_norm = np.linalg.norm(pred, axis=1)
        cosines = (report["actual"] * pred).sum(1) / np.maximum(a_norm * p_norm, 1e-300)
        r, p_value = stats.pearsonr(a_norm, p_norm)
        report.update({"predicted" + suffix: pred, "predicted_norms" + suffix: p_norm,
                       "cosines" + suffix: cosines, "pearson_r" + suffix: float(r),
                       "pearson_p" + suffix: float(p_value),
                       "mean_cosine" + suffix: float(cosines.mean())})
    return report
