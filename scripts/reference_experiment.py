"""Writes results/fmnist-ref/: the reference NAS experiment (the study: scripts/studies/reference.py).

    python scripts/reference_experiment.py              # run what is missing, then write up
    python scripts/reference_experiment.py --analyse    # write up the jobs finished so far
    python scripts/reference_experiment.py --analyse --dir COPY   # write up a copy (results/README.md untouched)
"""

from __future__ import annotations

from studies.reference import main

if __name__ == "__main__":
    main()
