"""The paper's Theorem 1 (section 5; Fig. 2, section 6.2) at CPU scale: the test-loss gap after pruning against
epsilon/n.

Theorem 1 says pruning a set whose summed parameter influence has norm <= epsilon changes the expected
test loss by O(epsilon/n + m/n^2). Its setting is a convex model at its minimiser, so it is measured
where that holds exactly: the last layer (multinomial logistic regression, L2 ``l2``) on the features of
the scoring run's pruning network.

* The 50,000 training features are split, stratified and seeded, into a fit half A (the theorem's
  training set, n = 25,000) and an evaluation half B that stands in for the test distribution. B was
  seen by the feature extractor, never by the last layer whose loss is measured.
* For each epsilon, Eq. 3 (``epsilon_prune``, the paper's target) prunes as many examples of A as it
  can with ||sum_pruned S_i|| <= epsilon; random pruning removes as many. Each pruned set is refit
  exactly (Newton), and its loss on B is compared with the full fit's.
* Besides the paper's bound we record the first-order prediction of the parameter change for a *mean*
  loss, n/(n-m) ||sum_pruned (S_i - T/n)|| (see ``nasprune.proxies.leave_group_out_check``), and the
  measured change ||theta_pruned - theta_hat||.

    python scripts/claim_theorem1.py [--scores results/fmnist-ref/scoring.pt]   # writes results/theorem1/
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from nasprune.analysis import markdown_table, write_readme
from nasprune.data import stratified_split
from nasprune.provenance import provenance
from nasprune.proxies import InfluenceConfig, ScoringRun, flatten_params, last_layer_influence, refit_last_layer
from nasprune.proxies.selection import epsilon_prune


OUT = Path("results/theorem1")
EPS_FRACTIONS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.2)  # epsilon as a fraction of ||T||, T = sum of all S_i


def loss(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    """Mean cross-entropy (no regulariser): the theorem's test loss."""
    return float(F.cross_entropy(features @ weight.T + bias, labels))


def gap_curve(fit_x: torch.Tensor, fit_y: torch.Tensor, eval_x: torch.Tensor, eval_y: torch.Tensor,
              weight: torch.Tensor, bias: torch.Tensor, *, l2: float, eps_fractions=EPS_FRACTIONS,
              random_draws: int = 3, seed: int = 0, time_limit: float = 60.0) -> tuple[pd.DataFrame, dict]:
    """One row per (epsilon, method, draw): pruned count, achieved bound, predicted and measured change, gap."""
    fit_x, eval_x = fit_x.double(), eval_x.double()
    full = refit_last_layer(fit_x, fit_y, weight.double(), bias.double(), l2=l2)
    theta_hat = flatten_params(full.weight, full.bias)
    base = loss(eval_x, eval_y, full.weight, full.bias)
    S = last_layer_influence(fit_x, fit_y, full.weight, full.bias, l2=l2)
    n, T = len(S), S.sum(0)
    rng = np.random.default_rng(seed)

    def measure(pruned: np.ndarray, method: str, eps: float, draw: int) -> dict:
        keep = np.setdiff1d(np.arange(n), pruned)
        fit = refit_last_layer(fit_x[keep], fit_y[keep], full.weight, full.bias, l2=l2)
        m, after = len(pruned), loss(eval_x, eval_y, fit.weight, fit.bias)
        return {"eps_fraction": eps / float(T.norm()), "epsilon": eps, "method": method, "draw": draw, "n": n,
                "pruned": m, "bound_paper": float(S[pruned].sum(0).norm()),
                "predicted_change": float((S[pruned] - T / n).sum(0).norm()) * n / (n - m),
                "measured_change": float((flatten_params(fit.weight, fit.bias) - theta_hat).norm()),
                "eval_loss": after, "eval_loss_full": base, "gap": after - base,
                "refit_grad_norm": fit.grad_norm}

    rows = []
    for frac in eps_fractions:
        eps = frac * float(T.norm())
        started = time.perf_counter()
        result = epsilon_prune(S, eps, labels=fit_y, target="paper", time_limit=time_limit)
        pruned = np.setdiff1d(np.arange(n), result.kept)
        rows.append({**measure(pruned, "eq3", eps, 0), "select_seconds": time.perf_counter() - started})
        for d in range(random_draws):
            rows.append(measure(np.sort(rng.choice(n, len(pruned), replace=False)), "random", eps, d))
        print(f"eps {frac:.2f}||T||: pruned {len(pruned)}, gap eq3 {rows[-1 - random_draws]['gap']:+.5f}, "
              f"random {np.mean([r['gap'] for r in rows[-random_draws:]]):+.5f}", flush=True)
    info = {"n": n, "t_norm": float(T.norm()), "l2": l2, "eval_loss_full": base,
            "full_refit_grad_norm": full.grad_norm}
    return pd.DataFrame(rows), info


def plot(rows: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, marker in (("eq3", "o"), ("random", "x")):
        r = rows[rows.method == method]
        axes[0].scatter(r.bound_paper / r.n, r.gap, marker=marker, label=method)
        axes[1].scatter(r.predicted_change, r.measured_change, marker=marker, label=method)
    lo, hi = rows.predicted_change.min() / 2, rows.predicted_change.max() * 2
    axes[1].plot([lo, hi], [lo, hi], "k:", lw=1, label="y = x")
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set_yscale("symlog", linthresh=1e-4)
    axes[0].set(xscale="log", xlabel="epsilon / n  (||sum of pruned S_i|| / n)",
                ylabel="eval loss after pruning - before", title="Theorem 1: loss gap against epsilon/n")
    axes[1].set(xscale="log", yscale="log", xlabel="first-order prediction n/(n-m)||sum (S_i - T/n)||",
                ylabel="||theta_pruned - theta_hat||", title="parameter change: predicted against measured")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_up(rows: pd.DataFrame, info: dict, prov: dict, path: Path) -> None:
    """README.md: the setting, one table row per epsilon, the bound-gap correlation, the plot, provenance."""
    eq3, rnd = rows[rows.method == "eq3"], rows[rows.method == "random"].groupby("eps_fraction")
    corr = float(np.corrcoef(eq3.bound_paper, eq3.gap.abs())[0, 1]) if len(eq3) > 2 else float("nan")
    table = []
    for r in eq3.itertuples():
        g = rnd.get_group(r.eps_fraction)
        table.append([f"{r.eps_fraction:.3g}", f"{r.pruned} ({r.pruned / r.n:.1%})", f"{r.bound_paper / r.n:.3g}",
                      f"{r.gap:+.2e}", f"{(g.bound_paper / g.n).mean():.3g}",
                      f"{g.gap.mean():+.2e} ({g.gap.min():+.1e}..{g.gap.max():+.1e})",
                      f"{r.measured_change:.3g} / {r.predicted_change:.3g}"])
    lines = [
        "Generated by `python scripts/claim_theorem1.py`; do not edit by hand. Setting: the last layer of the "
        "scoring run's pruning network (multinomial logistic regression on its 64-d features, "
        f"l2 = {info['l2']:g}), fit on a stratified half A of the 50,000 training features (n = {info['n']}) "
        "and evaluated on the other half B, which stands in for the test distribution. ||T|| = "
        f"{info['t_norm']:.4g}; the full fit's loss on B is {info['eval_loss_full']:.5f}.",
        "",
        *markdown_table(["epsilon / norm(T)", "pruned (of n)", "Eq. 3: norm(sum S) / n", "Eq. 3: loss gap",
                         "random: norm(sum S) / n (mean of draws)", "random: loss gap (mean, min..max)",
                         "Eq. 3: measured / predicted change"], table),
        "",
        f"Correlation between Eq. 3's achieved norm(sum S) and its |loss gap| over the epsilons: {corr:.3f}.",
        "",
        "![Theorem 1](theorem1.png)",
        "",
    ]
    write_readme(path, "Theorem 1 (the paper's Fig. 2) at CPU scale", lines, prov)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scores", default="results/fmnist-ref/scoring.pt", help="a scoring run (nasprune run fmnist-ref "
                    "makes one)")
    ap.add_argument("--l2", type=float, default=InfluenceConfig().l2)
    ap.add_argument("--random-draws", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--replot", action="store_true", help="only redraw the plot and README from the saved results")
    args = ap.parse_args()
    out = Path(args.out)
    if args.replot:  # redraw and rewrite from results.csv and run.json, without recomputing
        rows, saved = pd.read_csv(out / "results.csv"), json.loads((out / "run.json").read_text())
        plot(rows, out / "theorem1.png")
        write_up(rows, saved["info"], saved["provenance"], out / "README.md")
        return
    if not Path(args.scores).is_file():
        raise SystemExit(f"no scoring run at {args.scores}; run `nasprune run fmnist-ref --out results/fmnist-ref` "
                         "first or pass --scores FILE")
    start = time.perf_counter()
    run = ScoringRun.load(args.scores)
    fit_idx, eval_idx = stratified_split(run.labels, len(run.labels) // 2, seed=args.seed)
    rows, info = gap_curve(run.features[fit_idx], run.labels[fit_idx], run.features[eval_idx],
                           run.labels[eval_idx], run.weight, run.bias, l2=args.l2,
                           random_draws=args.random_draws, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "results.csv", index=False)
    plot(rows, out / "theorem1.png")
    prov = provenance(time.perf_counter() - start, seed=args.seed, scoring_config=run.config, **info)
    (out / "run.json").write_text(json.dumps({"info": info, "provenance": prov}, indent=2) + "\n")
    write_up(rows, info, prov, out / "README.md")
    print(f"wrote {out}/results.csv, theorem1.png, README.md")


if __name__ == "__main__":
    main()
