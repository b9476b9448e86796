"""A schedule's rungs answered from finished jobs instead of training: the same scheduler, at the cost of a table
look-up, so that many schedules can be compared over every random draw and seed of a pool.

A training-set rung reads the set's finished jobs (``jobs.csv``); one that stops the whole set at an earlier epoch
reads that epoch of its per-epoch history (``history.csv``: what an asynchronous successive halving sees, since a
promoted candidate continues its run); a zero-cost rung reads a table of scores. The cost is what a live search
would have spent: each job's SGD steps, and for a run continued across rungs only the epochs not yet trained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import optuna
import pandas as pd

from nasprune.errors import MissingJobsError
from nasprune.proxies import draw_name
from nasprune.training import TrainConfig

from ._objective import FACTORS, pool_space, suggest_spec
from ._schedule import Measurement, Rung

__all__ = ["ReplaySource", "replay_objective"]


class ReplaySource:
    """Rungs answered by one repetition of a pool's finished jobs.

    Args:
        jobs: the pool's finished jobs (:func:`nasprune.search.load_jobs`, or ``jobs.csv``).
        history: their per-epoch history (:func:`nasprune.search.load_history`, or ``history.csv``); needed for a
            rung that stops a run early or ranks by TSE.
        trains: each training set's :class:`~nasprune.training.TrainConfig` (an experiment's training sets'), for
            the SGD steps of its jobs.
        draw: which random draw a rung's source means when it names an entry with draws (``random-pc100`` is
            ``random-pc100-d<draw>``); a set without draws is read as it is.
        seed: the training seed whose jobs are read where a set has several (the whole set's two seeds).
        zero_cost: zero-cost scores (:func:`nasprune.zerocost.score_candidates`: a column per score and
            ``seconds_<score>``), for ``zerocost:<score>`` rungs; ``zerocost:ensemble`` aggregates every score.
    """

    def __init__(self, jobs: pd.DataFrame, history: pd.DataFrame | None, trains: Mapping[str, TrainConfig], *,
                 draw: int | None = None, seed: int = 0, zero_cost: pd.DataFrame | None = None):
        self.jobs, self.history, self.trains = jobs, history, trains
        self.draw, self.seed, self.zero_cost = draw, seed, zero_cost
        self.trained: dict[str, dict[str, int]] = {}  # training set -> candidate -> epochs trained so far

    # --- what a rung names ----------------------------------------------------------------------------------

    def training_set(self, source: str) -> str:
        """The training set a rung's source means in this repetition."""
        names = set(self.jobs["training_set"])
        if self.draw is not None and draw_name(source, self.draw) in names:
            return draw_name(source, self.draw)
        if source in names:
            return source
        raise MissingJobsError(f"no finished jobs of {source!r}; training sets with jobs: {sorted(names)[:12]} ...")

    def _rows(self, training_set: str) -> pd.DataFrame:
        rows = self.jobs[self.jobs["training_set"] == training_set]
        seeds = set(rows["seed"])
        return rows[rows["seed"] == (self.seed if self.seed in seeds else min(seeds))].set_index("candidate")

    def _steps_per_epoch(self, training_set: str, rows: pd.DataFrame) -> int:
        images = int(rows["images"].iloc[0])
        return self.trains[training_set].steps(images, epochs=1)

    # --- measuring ------------------------------------------------------------------------------------------

    def measure(self, rung: Rung, candidates: Sequence[str]) -> Measurement:
        if rung.zero_cost:
            return self._zero_cost(rung.source.split(":", 1)[1], candidates)
        training_set = self.training_set(rung.source)
        rows = self._rows(training_set).reindex(list(candidates))
        if rows["val_acc"].isna().any():
            missing = list(rows.index[rows["val_acc"].isna()])
            raise MissingJobsError(f"{training_set} has no finished job of {missing[:3]} (seed {self.seed})")
        full = int(rows["epochs"].max())
        epochs = full if rung.epochs is None else rung.epochs
        if epochs > full:
            raise ValueError(f"{training_set} was trained {full} epochs; a rung cannot read epoch {epochs}")
        if epochs == full and rung.signal == "val_acc":
            values = rows["val_acc"].astype(float)
        else:
            values = self._from_history(training_set, candidates, epochs, rung.signal)
        per_epoch = self._steps_per_epoch(training_set, rows)
        done = self.trained.setdefault(training_set, {})
        new_epochs = {c: max(0, epochs - done.get(c, 0)) for c in candidates}
        for c in candidates:
            done[c] = max(done.get(c, 0), epochs)
        seconds = float(sum(rows.loc[c, "seconds"] * new_epochs[c] / int(rows.loc[c, "epochs"]) for c in candidates))
        whole = {c: float(done[c] * per_epoch) for c in candidates} if training_set == "whole" else {}
        values.iloc[:] = np.where(rows["diverged"].astype(bool), np.nan, values.to_numpy(float))
        return Measurement(values, steps=float(sum(new_epochs.values()) * per_epoch), seconds=seconds,
                           whole_steps=whole)

    def _from_history(self, training_set: str, candidates: Sequence[str], epoch: int, signal: str) -> pd.Series:
        """Each candidate's validation accuracy after ``epoch``, or its TSE up to it (negated: lower ranks higher)."""
        if self.history is None:
            raise MissingJobsError(f"a rung at epoch {epoch} of {training_set} or by TSE needs its per-epoch history")
        h = self.history[(self.history["training_set"] == training_set) & (self.history["seed"] == self.seed)]
        if h.empty:
            raise MissingJobsError(f"no per-epoch history of {training_set} (seed {self.seed})")
        if signal == "val_acc":
            at = h[h["epoch"] == epoch].set_index("candidate")["val_acc"]
        else:
            at = -h[h["epoch"] <= epoch].groupby("candidate")["train_loss"].sum()
        return at.reindex(list(candidates)).astype(float)

    def _zero_cost(self, score: str, candidates: Sequence[str]) -> Measurement:
        if self.zero_cost is None:
            raise ValueError(f"a zero-cost rung ({score}) needs a table of zero-cost scores")
        from nasprune.zerocost import SCORES, ranking_score

        table = self.zero_cost.reindex(list(candidates))
        values = ranking_score(table, score)
        names = [s for s in SCORES if s in table] if score == "ensemble" else [score]
        seconds = float(table[[f"seconds_{s}" for s in names]].to_numpy().sum())
        return Measurement(values.astype(float), seconds=seconds, scoring_seconds=seconds)


def replay_objective(history: pd.DataFrame, candidates: Sequence[str], training_set: str = "whole", seed: int = 0,
                     ) -> Callable[[optuna.Trial], float]:
    """An Optuna objective that trains nothing: the trial's candidate (suggested over the pool's factors, as
    :func:`nasprune.search.make_objective` suggests them) reports the validation accuracy its finished job recorded
    after each epoch, where ``make_objective`` would have reported it while training, and returns the last. A pruner
    stops it where it would have stopped the live run; the user attr ``epochs`` says how many epochs it trained."""
    h = history[(history["training_set"] == training_set) & (history["seed"] == seed)]
    curves = {c: g.set_index("epoch")["val_acc"].sort_index() for c, g in h.groupby("candidate")}
    missing = [c for c in candidates if c not in curves]
    if missing:
        raise ValueError(f"no per-epoch history of {training_set} (seed {seed}) for {missing[:3]}")
    space = pool_space(candidates)
    choices = {factor: space[plural] for factor, plural in FACTORS.items()}

    def objective(trial: optuna.Trial) -> float:
        curve = curves[suggest_spec(trial, choices).id]
        last = int(curve.index.max())
        for epoch in range(1, last):
            trial.set_user_attr("epochs", epoch)
            trial.report(float(curve.loc[epoch]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        trial.set_user_attr("epochs", last)
        trial.report(float(curve.loc[last]), last)
        return float(curve.loc[last])

    return objective
