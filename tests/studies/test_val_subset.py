"""The proxy rung validated on part of the split (scripts/studies/val_subset.py): the experiment repeats the stored
draws but for the validation, the comparison's Kendalls are scipy's, and the rule holds at its thresholds."""

import json

import pandas as pd
import pytest
from scipy import stats

from studies.val_subset import POOL, compare, decide, experiment, with_values


def test_the_experiment_repeats_the_pools_draws_validated_on_part_of_the_split(tmp_path):
    exp = experiment(tmp_path, draws=(0, 1), val_images=500)
    stored = json.loads((POOL / "experiment.json").read_text())
    assert list(exp.training_sets) == ["random-pc100-d0", "random-pc100-d1"] and exp.storage is None
    for name, s in exp.training_sets.items():
        assert s.train.val_images == 500 and s.seeds == stored["training_sets"][name]["seeds"]
        assert {k: v for k, v in vars(s.train).items() if k != "val_images"} == \
            {k: v for k, v in stored["training_sets"][name]["train"].items() if k != "val_images"}
        assert (tmp_path / s.proxy).read_bytes() == (POOL / s.proxy).read_bytes()
    assert exp.candidates == stored["candidates"]


def jobs(values, training_set, seed=0, loss=1.0):
    return pd.DataFrame([{"training_set": training_set, "candidate": f"c{i}", "seed": seed, "val_acc": v, "test_acc": v,
                          "train_loss": loss} for i, v in enumerate(values)])


def test_compare_reads_each_ranking_against_the_whole_split_and_the_truth():
    truth = [1, 2, 3, 4, 5]
    stored = pd.concat([jobs(truth, "whole", 0), jobs(truth, "whole", 1), jobs([5, 4, 3, 2, 1], "random-pc100-d0")])
    part = jobs([5, 4, 3, 1, 2], "random-pc100-d0", loss=1.0 + 1e-3)
    row = compare(part, stored, draws=(0,)).iloc[0]
    assert row["kendall_part_whole_split"] == pytest.approx(stats.kendalltau([5, 4, 3, 1, 2], [5, 4, 3, 2, 1])[0])
    assert row["kendall_whole_split_truth"] == pytest.approx(-1.0)
    assert row["kendall_part_truth"] == pytest.approx(stats.kendalltau([5, 4, 3, 1, 2], truth)[0])
    assert row["max_abs_diff"] == 1 and not row["same_training"]  # the losses differ: not the same training
    merged = with_values(stored, part)
    assert list(merged.loc[merged["training_set"] == "random-pc100-d0", "val_acc"]) == [5, 4, 3, 1, 2]
    assert list(merged.loc[merged["training_set"] == "whole", "val_acc"]) == truth * 2


def test_the_rule_needs_both_the_kendall_and_every_choice():
    k = pd.DataFrame({"kendall_part_truth": [0.40, 0.42], "kendall_whole_split_truth": [0.43, 0.41]})  # -0.01 mean
    ok = pd.DataFrame({"regret_part": [0.3, 0.0], "regret_whole_split": [0.1, 0.0]})  # +0.2: at the tolerance
    k = k.assign(candidates=24)
    assert decide(k, ok, 24) is True
    assert decide(k, ok.assign(regret_part=[0.31, 0.0]), 24) is False
    assert decide(k.assign(kendall_part_truth=[0.37, 0.42]), ok, 24) is False  # -0.025 mean
    assert decide(k.assign(candidates=[24, 23]), ok, 24) is None  # a job still missing: no verdict
    assert decide(k, ok.assign(regret_part=[0.0, float("nan")]), 24) is None
