"""The Optuna helper: any sampler over the ConvNet space on a proxy, with per-epoch reports for pruners."""

import numpy as np
import optuna
import pytest

from nasprune.data import load_dataset
from nasprune.errors import ProxyError
from nasprune.proxies import ProxySet
from nasprune.search import enqueue_candidates, make_objective, search_on_proxy
from nasprune.training import TrainConfig

SPACE = {"widths": (4, 8), "depths": (1,), "acts": ("relu", "leakyrelu"), "norms": ("none", "instancenorm"),
         "pools": ("avgpooling",)}


@pytest.fixture(scope="module")
def proxy(synthetic):
    return ProxySet.from_selection(synthetic, np.arange(0, 1000, 5), "random")


@pytest.mark.slow
def test_tpe_search_on_a_proxy_reports_every_epoch(synthetic, proxy):
    study = search_on_proxy(synthetic, proxy, n_trials=3, train_config=TrainConfig(epochs=3),
                            sampler=optuna.samplers.TPESampler(seed=0), **SPACE)
    assert len(study.trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert sorted(t.intermediate_values) == [1, 2, 3] and t.intermediate_values[3] == t.value
        assert t.user_attrs["candidate"].startswith(("w4-d1-", "w8-d1-")) and 0 <= t.user_attrs["test_acc"] <= 100
    # same seed, same architecture: same number
    again = search_on_proxy(synthetic, proxy, n_trials=1, train_config=TrainConfig(epochs=3),
                            sampler=optuna.samplers.TPESampler(seed=0), **SPACE)
    assert again.trials[0].params == study.trials[0].params and again.trials[0].value == study.trials[0].value


def test_pruner_stops_trials_and_unbuildable_specs_are_pruned(synthetic, proxy):
    study = search_on_proxy(synthetic, proxy, n_trials=2, train_config=TrainConfig(epochs=3),
                            pruner=optuna.pruners.ThresholdPruner(lower=101.0), **SPACE)
    assert all(t.state == optuna.trial.TrialState.PRUNED and list(t.intermediate_values) == [1] for t in study.trials)
    bad = optuna.create_study(direction="maximize")
    bad.optimize(make_objective(synthetic, proxy, TrainConfig(epochs=1), widths=(6,), depths=(1,),
                                norms=("groupnorm",)), n_trials=1)  # groupnorm needs width % 4 == 0
    assert bad.trials[0].state == optuna.trial.TrialState.PRUNED


def test_proxy_of_other_data_is_refused(synthetic, proxy):
    with pytest.raises(ProxyError, match=r"the split differs in seed 0 -> 1 .* --split-seed 1"):
        make_objective(load_dataset("synthetic", seed=1), proxy)


def test_a_trial_trains_the_candidate_as_the_runner_would(synthetic, proxy):
    """The objective's value is train() of the suggested ConvNet, initialised as torch.manual_seed(seed) would,
    on the proxy, normalised with the dataset's statistics (checked without train_candidate)."""
    import torch

    from nasprune.training import train
    from search_spaces import ConvNetSpec, build_convnet

    params = {"width": 8, "depth": 1, "act": "relu", "norm": "instancenorm", "pool": "avgpooling"}
    value = make_objective(synthetic, proxy, TrainConfig(epochs=2), seed=3, **SPACE)(optuna.trial.FixedTrial(params))
    torch.manual_seed(3)
    model = build_convnet(ConvNetSpec(**params), synthetic.in_channels, synthetic.image_size, synthetic.num_classes)
    x, y = proxy.tensors(synthetic)
    expected = train(model, x, y, TrainConfig(epochs=2, seed=3, mean=synthetic.mean, std=synthetic.std),
                     val=(synthetic.val_x, synthetic.val_y))
    assert value == expected.val_acc
    # a validation split of the caller's own is used instead of the dataset's
    val = (synthetic.val_x[:40], synthetic.val_y[:40])
    own = make_objective(synthetic, proxy, TrainConfig(epochs=2), seed=3, val=val, **SPACE)(
        optuna.trial.FixedTrial(params))
    torch.manual_seed(3)
    model = build_convnet(ConvNetSpec(**params), synthetic.in_channels, synthetic.image_size, synthetic.num_classes)
    assert own == train(model, x, y, TrainConfig(epochs=2, seed=3, mean=synthetic.mean, std=synthetic.std),
                        val=val).val_acc


POOL = ["w4-d1-relu-none-avgpooling", "w8-d1-relu-none-avgpooling", "w4-d1-leakyrelu-instancenorm-avgpooling",
        "w8-d1-leakyrelu-instancenorm-avgpooling", "w8-d1-relu-instancenorm-avgpooling",
        "w4-d1-leakyrelu-none-avgpooling"]


@pytest.mark.parametrize("pruner", [
    optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    optuna.pruners.HyperbandPruner(min_resource=1, max_resource=6, reduction_factor=3)], ids=["asha", "hyperband"])
def test_optuna_pruners_search_a_pool_on_journal_storage_as_their_replay_does(synthetic, proxy, tmp_path, pruner):
    """The whole-set baselines an Optuna user writes: the pool queued, one trial each, a pruner over epochs, on the
    journal storage. Each candidate is tried once, the weak stop at a rung, and a replay of the full curves (the same
    pool trained without a pruner) makes the same decisions at the same epochs."""
    import pandas as pd

    from nasprune.search import replay_objective

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    config = TrainConfig(epochs=6, lr=0.05)
    study = search_on_proxy(synthetic, proxy, n_trials=len(POOL), train_config=config, pruner=pruner,
                            storage=storage, study_name="pool", candidates=POOL)
    assert [t.user_attrs["candidate"] for t in study.trials] == POOL  # each once, in the queued order
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.PRUNED in states and optuna.trial.TrialState.COMPLETE in states
    assert study.best_trial.user_attrs["candidate"] in POOL
    # the same pool trained to the end: every candidate's full curve, as a finished job's history
    full = search_on_proxy(synthetic, proxy, n_trials=len(POOL), train_config=config, candidates=POOL,
                           pruner=optuna.pruners.NopPruner())
    history = pd.DataFrame([{"training_set": "whole", "seed": 0, "candidate": t.user_attrs["candidate"],
                             "epoch": e, "val_acc": v} for t in full.trials for e, v in t.intermediate_values.items()])
    assert {t.state for t in full.trials} == {optuna.trial.TrialState.COMPLETE}
    for live, done in zip(study.trials, full.trials):  # a pruned trial's curve is the full one's start
        assert all(done.intermediate_values[e] == v for e, v in live.intermediate_values.items())
    replay = optuna.create_study(direction="maximize", pruner=pruner, study_name="pool")
    enqueue_candidates(replay, POOL)
    replay.optimize(replay_objective(history, POOL), n_trials=len(POOL))
    assert [t.state for t in replay.trials] == states
    assert [max(t.intermediate_values) for t in replay.trials] == [max(t.intermediate_values) for t in study.trials]
    assert [t.user_attrs["epochs"] for t in replay.trials] == [max(t.intermediate_values) for t in study.trials]
