"""Writes results/theorem1/: the paper's Theorem 1 at CPU scale (the study: scripts/studies/theorem1.py).

    python scripts/claim_theorem1.py [--scores results/fmnist-ref/scoring.pt]   # writes results/theorem1/
"""

from __future__ import annotations

from studies.theorem1 import main

if __name__ == "__main__":
    main()
