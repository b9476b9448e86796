"""A rate grid (nasprune/workflows/_rate_grid.py) on a tiny real run: an experiment run by the runner, on proxies
built at a keep rate (Eq. 3 bisected to it), every set normalised with the dataset's statistics."""

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from nasprune.data import DatasetSpec
from nasprune.errors import ArtifactError
from nasprune.proxies import ProxySet, ScoringConfig, build_proxy
from nasprune.training import TrainConfig, train
from nasprune.workflows import RateGrid, run_rate_grid, summarise_rate_grid
from search_spaces import build_convnet

NET = "w8-d1-relu-none-avgpooling"
TINY = RateGrid(name="tiny", methods=("random", "cardinality", "cardinality-paper", "epsilon"), rates=(0.4,),
               seeds=(0,), specs=(NET,), dataset=DatasetSpec("fashion-mnist", val_size=2000, train_size=1000),
               scoring=ScoringConfig(spec="w8-d2-relu-instancenorm-avgpooling",
                                     train=TrainConfig(epochs=2, batch_size=256)),
               train=TrainConfig(epochs=1))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    jobs = run_rate_grid(TINY, out, workers=0, progress=False)
    return out, jobs, TINY.dataset.load()


def test_a_rate_grid_is_an_experiment_of_the_whole_set_and_one_proxy_per_method_and_rate():
    exp = RateGrid(name="g", methods=("random", "epsilon"), rates=(0.2, 0.6), seeds=(0, 1)).experiment()
    assert exp.dataset == DatasetSpec("fashion-mnist", val_size=10_000, seed=0, train_size=10_000)
    assert list(exp.training_sets) == ["whole", "random-20", "epsilon-20", "random-60", "epsilon-60"]
    assert all(t.train == TrainConfig(epochs=5) and t.train.mean is None for t in exp.training_sets.values())
    assert exp.candidates == ["w16-d3-relu-instancenorm-avgpooling"] and exp.seeds == [0, 1]  # the scoring network
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['cardinalty'\]"):
        RateGrid(name="x", methods=("cardinalty",), rates=(0.2,), seeds=(0,))
    with pytest.raises(ValueError, match=r"rates are pruned fractions in \(0, 1\)"):
        RateGrid(name="x", methods=("random",), rates=(1.0,), seeds=(0,))


@pytest.mark.slow
def test_every_proxy_prunes_the_asked_fraction(grid):
    out, _, dataset = grid
    n = len(dataset.train_y)
    counts = torch.bincount(dataset.train_y).tolist()
    for name, (method, rate) in TINY.proxies().items():
        proxy = ProxySet.load(out / "proxies" / f"{name}.json", dataset)
        assert len(np.unique(proxy.indices)) == len(proxy)
        if method == "epsilon":  # Eq. 3 prunes what epsilon allows; the bisection lands within 1% of the rate
            assert abs(1 - len(proxy) / n - rate) <= 0.01 and proxy.config["objective"]["epsilon"] > 0
        else:  # per-class quotas: 60% of every class kept
            assert proxy.per_class == {c: round(0.6 * k) for c, k in enumerate(counts)}


@pytest.mark.slow
def test_the_grid_trains_every_job_once_and_resumes(grid):
    out, jobs, _ = grid
    assert len(jobs) == 5 and set(jobs.training_set) == {"whole", *TINY.proxies()}
    images = jobs.set_index("training_set").images
    assert images.drop("epsilon-40").to_dict() == {"whole": 1000, "random-40": 600, "cardinality-40": 600,
                                                   "cardinality-paper-40": 600}
    assert 590 <= images["epsilon-40"] <= 610  # Eq. 3 at the bisected epsilon: within 1% of the rate
    again = run_rate_grid(TINY, out, workers=0, progress=False)
    key = ["training_set", "candidate", "seed", "completed", "val_acc"]
    pd.testing.assert_frame_equal(jobs[key].sort_values(key).reset_index(drop=True),
                                  again[key].sort_values(key).reset_index(drop=True))  # nothing retrained
    summary = summarise_rate_grid(TINY, again, out)
    assert summary.method.tolist() == ["whole", "random", "cardinality", "cardinality-paper", "epsilon"]
    s = summary.set_index("method")
    assert s.time_fraction["whole"] == 1.0 and s.pruned_fraction["random"] == pytest.approx(0.4)
    assert s.test_acc_drop["random"] == pytest.approx(s.test_acc["whole"] - s.test_acc["random"])


@pytest.mark.slow
def test_every_training_set_is_normalised_with_the_datasets_statistics(grid):
    """The job on a pruned set equals train() with the whole dataset's mean/std, not the pruned set's own."""
    out, jobs, dataset = grid
    x, y = ProxySet.load(out / "proxies" / "random-40.json").tensors(dataset)
    job = jobs[jobs.training_set == "random-40"].iloc[0]

    def train_loss(mean, std) -> float:
        torch.manual_seed(0)  # independent of build_convnet(seed=): the global RNG, as before
        model = build_convnet(NET, dataset.in_channels, dataset.image_size, dataset.num_classes)
        return train(model, x, y, TrainConfig(epochs=1, seed=0, mean=mean, std=std)).train_loss

    assert job.train_loss == train_loss(dataset.mean, dataset.std)
    assert job.train_loss != train_loss(None, None)  # the pruned set's own statistics: another run


@pytest.mark.slow
def test_a_proxy_or_scoring_run_made_with_other_settings_is_refused(grid, tmp_path):
    out, _, dataset = grid
    shutil.copytree(out / "proxies", tmp_path / "proxies")
    shutil.copy(out / "scoring.pt", tmp_path / "scoring.pt")
    build_proxy(dataset, method="random", per_class=10, seed=3).save(tmp_path / "proxies" / "random-40.json")
    with pytest.raises(ArtifactError, match=r"random-40.json: was built with other settings .*per_class 10 -> "
                                            r"\{0: 60, .*\}, seed 3 -> 0"):
        run_rate_grid(TINY, tmp_path, workers=0, progress=False)  # the scoring run is reused, the proxy refused
    assert not (tmp_path / "experiment.json").exists()  # refused before the search
    longer = dataclasses.replace(TINY, scoring=dataclasses.replace(
        TINY.scoring, train=dataclasses.replace(TINY.scoring.train, epochs=3)))
    with pytest.raises(ArtifactError, match=r"scoring.pt: a scoring run with other settings .*train.epochs 2 -> 3"):
        run_rate_grid(longer, tmp_path, workers=0, progress=False)


@pytest.mark.slow
def test_a_grid_whose_proxies_all_exist_trains_no_scoring_run(grid, tmp_path):
    """Regenerating a grid's write-up from its files needs no pruning network: the scoring run is trained only when
    a missing proxy needs it."""
    out, jobs, _ = grid
    shutil.copytree(out / "proxies", tmp_path / "proxies")
    again = run_rate_grid(TINY, tmp_path, workers=0, progress=False)
    assert not (tmp_path / "scoring.pt").exists() and not (tmp_path / "scoring.pt.ckpt").exists()
    key = ["training_set", "candidate", "seed", "val_acc"]
    pd.testing.assert_frame_equal(jobs[key].sort_values(key).reset_index(drop=True),
                                  again[key].sort_values(key).reset_index(drop=True))  # the same jobs, retrained
