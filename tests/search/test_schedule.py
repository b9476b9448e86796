"""Schedules (nasprune/search/_schedule.py) and their replay from finished jobs (nasprune/search/_replay.py):
promotions, Hyperband's brackets against Li et al.'s table, and the cost a continued run pays, on hand-built jobs."""

import math

import numpy as np
import pandas as pd
import pytest

from nasprune.errors import ConfigError
from nasprune.search import (Measurement, ReplaySource, Rung, Schedule, hyperband, promote, run_brackets,
                             run_schedule, successive_halving)
from nasprune.training import TrainConfig

CANDIDATES = ["a", "b", "c", "d", "e", "f"]


def test_a_rung_refuses_what_it_cannot_mean():
    with pytest.raises(ConfigError, match="keep: keep \\(2\\) and eta \\(3\\) both set"):
        Rung("whole", keep=2, eta=3)
    with pytest.raises(ConfigError, match="eta: must be a number > 1, got 1"):
        Rung("whole", eta=1)
    with pytest.raises(ConfigError, match="signal: unknown signal 'loss'; choose one of val_acc, tse"):
        Rung("whole", signal="loss")
    with pytest.raises(ConfigError, match="source: a zero-cost rung trains nothing"):
        Rung("zerocost:naswot", epochs=3)
    with pytest.raises(ConfigError, match="rungs: a schedule needs at least one rung"):
        Schedule("empty", ())
    assert [Rung("x", eta=3).kept(n) for n in (1, 3, 4, 16)] == [1, 1, 2, 6]
    assert [Rung("x", keep=5).kept(n) for n in (3, 9)] == [3, 5] and Rung("x").kept(7) == 7


def test_promotion_breaks_ties_by_id_and_puts_diverged_last():
    values = pd.Series({"c": 1.0, "a": 2.0, "b": 2.0, "d": float("nan"), "e": 0.5})
    assert promote(values, 5) == ["a", "b", "c", "e", "d"]
    assert promote(values, 2) == ["a", "b"]


def test_hyperband_brackets_are_li_et_als_table():
    """R = 81, eta = 3 (Li et al., JMLR 2018, Table 1): brackets of 81, 34, 15, 8 and 5 candidates starting at 1, 3,
    9, 27 and 81 epochs."""
    brackets = hyperband("whole", 81, 3)
    assert [n for n, _ in brackets] == [81, 34, 15, 8, 5]
    assert [[r.epochs for r in b.rungs] for _, b in brackets] == [[1, 3, 9, 27, 81], [3, 9, 27, 81], [9, 27, 81],
                                                                  [27, 81], [81]]
    assert all(r.eta == 3 for _, b in brackets for r in b.rungs[:-1]) and all(b.rungs[-1].eta is None
                                                                             for _, b in brackets)
    with pytest.raises(ConfigError, match="must be ascending and distinct"):
        successive_halving("whole", [3, 1], 3)


class FakeSource:
    """Values by rung source: each candidate's letter position times the rung's epochs (b always diverges); one SGD
    step per candidate and epoch."""

    def __init__(self):
        self.asked = []

    def measure(self, rung, candidates):
        self.asked.append((rung.source, rung.epochs, list(candidates)))
        epochs = rung.epochs or 1
        values = pd.Series({c: np.nan if c == "b" else (ord(c) - ord("a")) * epochs for c in candidates}, dtype=float)
        return Measurement(values, steps=float(epochs * len(candidates)), seconds=1.0, scoring_seconds=0.5,
                           whole_steps={c: float(epochs) for c in candidates} if rung.source == "whole" else {})


def test_a_schedule_runs_its_rungs_on_what_each_kept_and_records_them():
    schedule = Schedule("t", (Rung("zerocost:flops", eta=2), Rung("proxy", keep=2), Rung("whole", epochs=3)))
    source = FakeSource()
    result = run_schedule(schedule, CANDIDATES, source)
    assert source.asked == [("zerocost:flops", None, CANDIDATES), ("proxy", None, ["f", "e", "d"]),
                            ("whole", 3, ["f", "e"])]
    assert [r.kept for r in result.rungs] == [["f", "e", "d"], ["f", "e"], ["f", "e"]]
    assert result.chosen == "f" and result.ranking == ["f", "e", "d", "c", "a", "b"]  # b diverged: last
    assert result.steps == 6 + 3 + 6 and result.seconds == 3.0 and result.scoring_seconds == 1.5
    assert result.whole_steps == {"f": 3.0, "e": 3.0}
    with pytest.raises(ValueError, match="no candidates"):
        run_schedule(schedule, [], FakeSource())


def test_hyperband_runs_each_bracket_on_a_draw_of_its_own_and_keeps_the_best_winner():
    brackets = hyperband("whole", 9, 3)  # (9 at 1, 3, 9), (5 at 3, 9), (3 at 9)
    sources = []

    def source_of():
        sources.append(FakeSource())
        return sources[-1]

    chosen, runs = run_brackets(brackets, CANDIDATES, source_of, np.random.default_rng(0))
    assert len(runs) == 3 and len(sources) == 3  # a source per bracket: each trains its candidates afresh
    assert [len(r.rungs[0].candidates) for r in runs] == [6, 5, 3]  # the pool has 6: all of them, then draws
    assert chosen == max((r.chosen for r in runs), key=lambda c: ord(c))


# --- replay ----------------------------------------------------------------------------------------------------


def pool():
    """Four candidates: a proxy with two draws (``p-d0``, ``p-d1``; 800 images, 2 epochs: 14 steps a job at batch
    128) and the whole set (1,280 images, 4 epochs, seeds 0 and 1, per-epoch history). On the whole set z is best at
    the last epoch but worst at epoch 1, and y diverges on draw 1."""
    cands = ["w", "x", "y", "z"]
    jobs, history = [], []
    for d, order in ((0, [1, 2, 3, 4]), (1, [4, 3, 2, 1])):
        for c, v in zip(cands, order):
            jobs.append({"training_set": f"p-d{d}", "candidate": c, "seed": 0, "val_acc": 50.0 + v,
                         "test_acc": np.nan, "images": 800, "epochs": 2, "seconds": 2.0,
                         "diverged": d == 1 and c == "y", "train_loss": 1.0})
    final = {"w": 70.0, "x": 80.0, "y": 75.0, "z": 90.0}
    for seed in (0, 1):
        for c in cands:
            jobs.append({"training_set": "whole", "candidate": c, "seed": seed, "val_acc": final[c],
                         "test_acc": final[c] - 1, "images": 1280, "epochs": 4, "seconds": 40.0, "diverged": False,
                         "train_loss": 0.1})
            for e in range(1, 5):
                val = final[c] - (4 - e) * (10 if c == "z" else 1)
                history.append({"training_set": "whole", "candidate": c, "seed": seed, "epoch": e, "val_acc": val,
                                "train_loss": {"w": 1.0, "x": 0.5, "y": 0.8, "z": 0.9}[c] / e})
    trains = {"p-d0": TrainConfig(epochs=2), "p-d1": TrainConfig(epochs=2), "whole": TrainConfig(epochs=4)}
    return pd.DataFrame(jobs), pd.DataFrame(history), trains


def test_replay_reads_the_draw_and_pays_only_the_epochs_a_promoted_run_has_not_trained():
    jobs, history, trains = pool()
    sh = successive_halving("whole", [1, 2, 4], 2)
    result = run_schedule(sh, ["w", "x", "y", "z"], ReplaySource(jobs, history, trains, draw=0, seed=0))
    first, second, last = result.rungs
    assert list(first.values) == [67.0, 77.0, 72.0, 60.0] and first.kept == ["x", "y"]  # z is worst at epoch 1
    assert second.kept == ["x"] and result.chosen == "x"
    assert (first.steps, second.steps, last.steps) == (4 * 10, 2 * 10, 2 * 10)  # ceil(1,280/128) = 10 a epoch
    assert result.whole_steps == {"w": 10.0, "x": 40.0, "y": 20.0, "z": 10.0}
    flat = run_schedule(Schedule("p", (Rung("p"),)), ["w", "x", "y", "z"],
                        ReplaySource(jobs, history, trains, draw=1, seed=0))
    assert flat.chosen == "w" and flat.ranking[-1] == "y"  # draw 1's order; y diverged there
    assert flat.steps == 4 * 2 * math.ceil(800 / 128) and flat.seconds == 8.0


def test_replay_ranks_by_tse_lower_first_and_refuses_what_it_has_not():
    jobs, history, trains = pool()
    tse = run_schedule(Schedule("t", (Rung("whole", epochs=2, signal="tse"),)), ["w", "x", "y", "z"],
                       ReplaySource(jobs, history, trains, seed=1))
    assert tse.ranking == ["x", "y", "z", "w"]  # the sums of training losses over epochs 1-2, lowest first
    assert tse.rungs[0].values["x"] == pytest.approx(-(0.5 + 0.25))
    with pytest.raises(ValueError, match="no finished jobs of 'q'"):
        run_schedule(Schedule("q", (Rung("q"),)), ["w"], ReplaySource(jobs, history, trains))
    with pytest.raises(ValueError, match="whole was trained 4 epochs; a rung cannot read epoch 5"):
        run_schedule(Schedule("e", (Rung("whole", epochs=5),)), ["w"], ReplaySource(jobs, history, trains))
    with pytest.raises(ValueError, match="needs a table of zero-cost scores"):
        run_schedule(Schedule("z", (Rung("zerocost:flops"),)), ["w"], ReplaySource(jobs, history, trains))


def test_a_zero_cost_rung_reads_its_score_and_the_time_it_took():
    jobs, history, trains = pool()
    table = pd.DataFrame({"flops": [1.0, 4.0, 3.0, 2.0], "seconds_flops": [0.1] * 4,
                          "params": [4.0, 3.0, 2.0, 1.0], "seconds_params": [0.2] * 4}, index=["w", "x", "y", "z"])
    source = ReplaySource(jobs, history, trains, zero_cost=table)
    result = run_schedule(Schedule("z", (Rung("zerocost:flops", keep=2), Rung("whole"))), ["w", "x", "y", "z"],
                          source)
    assert result.rungs[0].kept == ["x", "y"] and result.chosen == "x"
    assert result.rungs[0].scoring_seconds == pytest.approx(0.4) and result.rungs[0].steps == 0
