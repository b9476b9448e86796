"""The scripts behind results/theorem1, results/efficiency and results/cross-arch, on tiny real runs."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

import _pruning_rates as pr  # noqa: E402
import claim_efficiency  # noqa: E402
import claim_theorem1  # noqa: E402

from nasprune.data import stratified_split  # noqa: E402

TINY = pr.Setup(train_size=1000, scoring_spec="w8-d2-relu-instancenorm-avgpooling", scoring_epochs=2, epochs=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("rates")
    dataset = TINY.dataset()
    return dataset, TINY.scoring(dataset, out / "scoring.pt"), out


@pytest.mark.parametrize("method", ["random", "cardinality", "cardinality-paper", "epsilon"])
def test_select_at_rate_prunes_the_asked_fraction(tiny, method):
    dataset, run, _ = tiny
    kept, info = pr.select_at_rate(run, method, 0.4)
    n = len(run.labels)
    assert len(np.unique(kept)) == len(kept) and kept.min() >= 0 and kept.max() < n
    if method == "epsilon":  # Eq. 3 prunes what epsilon allows; the bisection lands within 1% of the rate
        assert abs(1 - len(kept) / n - 0.4) <= 0.01 and info["epsilon"] > 0
    else:  # per-class quotas: 60% of every class kept
        counts = torch.bincount(run.labels[torch.as_tensor(kept)], minlength=10)
        assert counts.tolist() == [round(0.6 * c) for c in torch.bincount(run.labels).tolist()]


def test_run_grid_trains_every_job_once_and_resumes(tiny):
    dataset, _, out = tiny
    rows = pr.run_grid(TINY, out, ["w8-d1-relu-none-avgpooling"], [0.5], ["random", "cardinality"], [0])
    assert len(rows) == 3 and set(rows.method) == {"whole", "random", "cardinality"}
    assert rows.set_index("method").images.to_dict() == {"whole": 1000, "random": 500, "cardinality": 500}
    again = pr.run_grid(TINY, out, ["w8-d1-relu-none-avgpooling"], [0.5], ["random", "cardinality"], [0])
    pd.testing.assert_frame_equal(rows, again)  # nothing retrained
    summary = pr.summarise(again)
    assert summary.set_index("method").time_fraction["whole"] == 1.0
    claim_efficiency.plot(summary, out / "efficiency.png")
    pr.write_readme(out / "README.md", "title", "claim_efficiency.py", claim_efficiency.__doc__, summary,
                    "efficiency.png", {"seed": 0})
    readme = (out / "README.md").read_text()
    assert (out / "efficiency.png").stat().st_size > 0
    assert "| w8-d1-relu-none-avgpooling | cardinality | 50% |" in readme


def test_theorem1_gap_is_measured_against_exact_refits(tiny):
    dataset, run, _ = tiny
    fit, ev = stratified_split(run.labels, 500, seed=0)
    rows, info = claim_theorem1.gap_curve(run.features[fit], run.labels[fit], run.features[ev], run.labels[ev],
                                          run.weight, run.bias, l2=1e-3, eps_fractions=(0.05, 0.3), random_draws=2)
    assert len(rows) == 2 * 3 and info["n"] == 500
    eq3 = rows[rows.method == "eq3"]
    assert (eq3.bound_paper <= eq3.epsilon * (1 + 1e-9)).all()  # Eq. 3's constraint holds
    assert eq3.pruned.is_monotonic_increasing and eq3.pruned.iloc[-1] > 0
    # the first-order prediction tracks the exact refit's parameter change (here up to half of n is pruned,
    # so only roughly: within a factor of 2, and strongly correlated)
    ratio = rows.measured_change / rows.predicted_change
    assert ratio.between(0.5, 2).all() and np.corrcoef(rows.measured_change, rows.predicted_change)[0, 1] > 0.9


def test_reference_table_replaces_only_its_block_in_the_readme(tmp_path):
    import reference_experiment as ref

    (tmp_path / "table1.md").write_text("# Table 1\n\n| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ref.BEGIN}\nstale table\n{ref.END}\noutro\n")
    ref.embed_table(readme, tmp_path)
    text = readme.read_text()
    assert "stale table" not in text and "| 1 |" in text and "table1.png" in text
    assert text.startswith("intro\n") and text.endswith("\noutro\n")
    ref.embed_table(readme, tmp_path)  # idempotent
    assert readme.read_text() == text
    readme.write_text("no markers\n")  # a README without the block is left alone
    ref.embed_table(readme, tmp_path)
    assert readme.read_text() == "no markers\n"
