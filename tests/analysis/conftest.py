"""Fixtures of the analysis tests: small hand-built jobs tables."""

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def make_jobs():
    """``make_jobs(proxy_val, whole_val, whole_test, seeds=(0,)) -> jobs``: a jobs table of the training sets
    ``proxy_val`` ({name: validation accuracies}) and "whole", candidate c{i}; a proxy's test accuracy is its
    validation accuracy minus 1; every seed gets the same numbers plus a seed-dependent zero-mean wiggle."""

    def make(proxy_val: dict[str, np.ndarray], whole_val: np.ndarray, whole_test: np.ndarray,
             seeds=(0,)) -> pd.DataFrame:
        rows = []
        wiggle = {0: 0.0} if len(seeds) == 1 else {s: d for s, d in zip(seeds, np.linspace(-0.5, 0.5, len(seeds)))}
        for ts, vals in {**proxy_val, "whole": whole_val}.items():
            test = whole_test if ts == "whole" else vals - 1
            for i, (v, t) in enumerate(zip(vals, test)):
                for s in seeds:
                    rows.append({"training_set": ts, "candidate": f"c{i:02d}", "seed": s, "val_acc": v + wiggle[s],
                                 "test_acc": t + wiggle[s], "train_loss": 1.0,
                                 "seconds": 60.0 if ts == "whole" else 6.0, "diverged": False,
                                 "images": 5000 if ts == "whole" else 100,
                                 "bytes": 784 * (5000 if ts == "whole" else 100), "proxy_minutes": np.nan})
        return pd.DataFrame(rows)

    return make
