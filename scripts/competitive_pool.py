"""Writes results/competitive-pool/: the screen that picks the competitive pool (the study: scripts/studies/competitive_pool.py).

    python scripts/competitive_pool.py          # run what is missing, then write the pool
    python scripts/competitive_pool.py --analyse
"""

from __future__ import annotations

from studies.competitive_pool import main

if __name__ == "__main__":
    main()
