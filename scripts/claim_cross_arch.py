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

from studies.pruning_rates import CROSS_ARCH, main, plot_cross_arch

if __name__ == "__main__":
    main(CROSS_ARCH, title="Cross-architecture generalisation (the paper's Fig. 3) at CPU scale",
         script="claim_cross_arch.py", doc=__doc__, out=Path("results/cross-arch"), plot=plot_cross_arch,
         plot_name="cross_arch.png")
