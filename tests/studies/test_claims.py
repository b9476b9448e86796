"""The smaller studies: Theorem 1's gap against exact refits (results/theorem1), the reference experiment's table
embedded in its README (results/fmnist-ref), and the competitive pool's screen (results/competitive-pool)."""

from pathlib import Path

import numpy as np
import pytest

from nasprune.data import DatasetSpec, stratified_split
from nasprune.proxies import ScoringConfig, run_scoring
from nasprune.training import TrainConfig
from studies import competitive_pool, theorem1
from studies import reference as ref


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_theorem1_gap_is_measured_against_exact_refits():
    dataset = DatasetSpec("fashion-mnist", val_size=2000, train_size=1000).load()
    run = run_scoring(dataset, ScoringConfig(spec="w8-d2-relu-instancenorm-avgpooling",
                                             train=TrainConfig(epochs=2, batch_size=256)))
    fit, ev = stratified_split(run.labels, 500, seed=0)
    rows, info = theorem1.gap_curve(run.features[fit], run.labels[fit], run.features[ev], run.labels[ev],
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
    (tmp_path / "table1.md").write_text("# Table 1\n\n| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n<!-- begin {ref.BLOCK} -->\nstale table\n<!-- end {ref.BLOCK} -->\noutro\n")
    ref.embed_table(readme, tmp_path)
    text = readme.read_text()
    assert "stale table" not in text and "| 1 |" in text and "table1.png" in text
    assert text.startswith("intro\n") and text.endswith("\noutro\n")
    ref.embed_table(readme, tmp_path)  # idempotent
    assert readme.read_text() == text
    readme.write_text("no markers\n")  # a README without the block is left alone
    ref.embed_table(readme, tmp_path)
    assert readme.read_text() == "no markers\n"


def test_competitive_pool_screen_leaves_out_the_pools_already_spent(monkeypatch):
    """scripts/competitive_pool.py screens the strong corner of the grid minus the development pool and fmnist-ref's
    candidates (the held-out pool must be new), trained like the benchmark's proxies."""
    monkeypatch.chdir(Path(__file__).parents[2])
    exp = competitive_pool.screen_experiment()
    spent = {c for d in competitive_pool.USED for c in competitive_pool.Experiment.load(d).candidates}
    grid = {s.id for s in competitive_pool.convnet_720(**competitive_pool.GRID)}
    assert len(grid) == 64 and set(exp.candidates) == grid - spent and len(exp.candidates) == 59
    assert exp.training_sets["screen"].train.epochs == 50 and exp.seeds == [0]
