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

from studies.pruning_rates import EFFICIENCY, main, plot_efficiency

if __name__ == "__main__":
    main(EFFICIENCY, title="Training efficiency (the paper's Fig. 4) at CPU scale", script="claim_efficiency.py", doc=__doc__,
         out=Path("results/efficiency"), plot=plot_efficiency, plot_name="efficiency.png")
