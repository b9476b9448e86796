"""Writes results/objective-study/: which Eq. 4 target ranks candidates best (the study: scripts/studies/objective.py).

    python scripts/study_objective.py              # run what is missing, then analyse
    python scripts/study_objective.py --analyse    # analyse what has finished so far
    python scripts/study_objective.py --analyse --config COPY/config.yaml   # analyse a copy of the study
"""

from __future__ import annotations

from studies.objective import main

if __name__ == "__main__":
    main()
