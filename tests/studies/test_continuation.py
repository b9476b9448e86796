"""The fresh-or-continued study (scripts/studies/continuation.py): its rule at its threshold."""

import pandas as pd

from studies.continuation import TOLERANCE, decide


def _table(margins):
    """Per pool, continued at 0.5 (two seeds) and fresh at 0.5 + margin, at epoch 1; an epoch-3 row the rule ignores."""
    rows = []
    for i, margin in enumerate(margins):
        rows += [{"pool": f"p{i}", "way": "continued", "epochs": 1, "kendall": k} for k in (0.4, 0.6)]
        rows += [{"pool": f"p{i}", "way": "fresh", "epochs": 1, "kendall": 0.5 + margin},
                 {"pool": f"p{i}", "way": "fresh", "epochs": 3, "kendall": -1.0}]
    return pd.DataFrame(rows)


def test_fresh_is_kept_when_within_the_tolerance_on_two_pools_of_three():
    keep, at1 = decide(_table([-TOLERANCE, -0.2, 0.1]))  # exactly at the tolerance counts as within
    assert keep and list(at1["fresh_within"]) == [True, False, True]
    assert at1.loc["p0", "continued"] == 0.5  # the mean over the seeds
    keep, _ = decide(_table([-TOLERANCE - 0.01, -0.2, 0.1]))
    assert not keep
