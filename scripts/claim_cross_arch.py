"""The paper's cross-architecture claim (Fig. 3, section 6.4) at CPU scale: prune with a small network, train
larger ones.

The scoring network is w16-d3 (about 1/16 of w64-d3's convolution cost); the pruned sets train w32-d3 and
w64-d3, each on a 10,000-image stratified subset of Fashion-MNIST for 5 epochs, against random pruning at
the same per-class rates and against the whole subset. (The paper prunes CIFAR-10 with SENet/ResNet-18
and trains ResNet-18/50.)

    python scripts/claim_cross_arch.py     # resumes from results/cross-arch/; writes jobs.csv, README.md, plot
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from _pruning_rates import Grid, main

OUT = Path("results/cross-arch")
SPECS = ("w32-d3-relu-instancenorm-avgpooling", "w64-d3-relu-instancenorm-avgpooling")
GRID = Grid(name="cross-arch", methods=("random", "cardinality", "epsilon"), rates=(0.2, 0.4, 0.6), seeds=(0,),
            specs=SPECS)


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(dict.fromkeys(summary.spec))
    fig, axes = plt.subplots(1, len(specs), figsize=(5 * len(specs), 4), squeeze=False)
    for ax, spec in zip(axes[0], specs):
        s = summary[summary.spec == spec]
        for method, g in s[s.method != "whole"].groupby("method"):
            ax.plot(g.pruned_fraction * 100, g.test_acc, marker="o", label=method)
        ax.axhline(s[s.method == "whole"].test_acc.iloc[0], color="k", ls=":", label="whole set")
        ax.set(xlabel="pruned (% of training images)", ylabel="test accuracy (%)",
               title=f"{spec}\n(selected by w16-d3)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(GRID, title="Cross-architecture generalisation (the paper's Fig. 3) at CPU scale",
         script="claim_cross_arch.py", doc=__doc__, out=OUT, plot=plot, plot_name="cross_arch.png")
