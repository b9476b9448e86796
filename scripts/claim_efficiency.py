"""The paper's training-efficiency claim (Fig. 4, section 6.5) at CPU scale: prune 20-60% of the training set
with the epsilon (Eq. 3) and cardinality (Eq. 4) formulations, train on the rest, and report test accuracy
and wall time against the whole set.

Scale-down: a 10,000-image stratified subset of Fashion-MNIST's training split (not 50,000 CIFAR-10
images), the scoring network w16-d3 (6 epochs), and the same ConvNet trained for 5 epochs on every
training set (not ResNet-18 for 200), two seeds. Random pruning at the same per-class rates is the
baseline; every method selects once per rate, and the seeds vary the training.

    python scripts/claim_efficiency.py     # resumes from results/efficiency/; writes jobs.csv, README.md, plot
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from _pruning_rates import Grid, main

OUT = Path("results/efficiency")
GRID = Grid(name="efficiency", methods=("random", "cardinality", "cardinality-paper", "epsilon"),
            rates=(0.2, 0.4, 0.6), seeds=(0, 1))


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, g in summary[summary.method != "whole"].groupby("method"):
        axes[0].errorbar(g.pruned_fraction * 100, g.test_acc, yerr=g.test_acc_sd, marker="o", capsize=3, label=method)
        axes[1].plot(g.pruned_fraction * 100, g.train_seconds, marker="o", label=method)
    whole = summary[summary.method == "whole"].iloc[0]
    for ax, col in zip(axes, ("test_acc", "train_seconds")):
        ax.axhline(whole[col], color="k", ls=":", label="whole set")
        ax.set_xlabel("pruned (% of training images)")
        ax.legend()
    axes[0].set(ylabel="test accuracy (%)", title="accuracy after pruning")
    axes[1].set(ylabel="training wall time (s)", title="training time")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(GRID, title="Training efficiency (the paper's Fig. 4) at CPU scale", script="claim_efficiency.py",
         doc=__doc__, out=OUT, plot=plot, plot_name="efficiency.png")
