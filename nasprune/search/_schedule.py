"""Multi-fidelity schedules: a list of rungs, each ranking the candidates still in the race by a signal from one
source (a zero-cost score, or a training set trained to a budget) and keeping the best of them.

One scheduler (:func:`run_schedule`) runs every schedule, whatever answers its rungs: a live search, or a replay of
finished jobs (``_replay.py``). A source measures the candidates a rung asks about and says what that cost; the
scheduler promotes, and records every rung with its inputs, so that the same inputs always give the same decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from nasprune.errors import ConfigError

__all__ = ["Measurement", "Rung", "RungRecord", "Schedule", "ScheduleResult", "Source", "hyperband", "promote",
           "run_brackets", "run_schedule", "successive_halving"]

#: The signals a training-set rung can rank by: validation accuracy, or the training speed estimate (lower TSE
#: ranks higher).
SIGNALS = ("val_acc", "tse")


@dataclass(frozen=True)
class Rung:
    """One rung: the candidates still in the race, ranked by ``signal`` on ``source``, the best kept.

    ``source`` is ``"zerocost:<score>"`` (a registered zero-cost score, or ``ensemble`` of all of them) or a training
    set's name (a proxy, or ``"whole"``); for a training set, ``epochs`` says how far it is trained (None: its full
    budget) and ``signal`` what ranks (:data:`SIGNALS`). It keeps the top ``keep``, or the top ``1/eta`` (rounded up,
    at least 1), of those it ranks; a rung that sets neither keeps them all (the last rung then names the choice:
    its best).
    """

    source: str
    epochs: int | None = None
    signal: str = "val_acc"
    keep: int | None = None
    eta: float | None = None

    def __post_init__(self) -> None:
        if self.keep is not None and self.eta is not None:
            raise ConfigError(f"keep ({self.keep}) and eta ({self.eta}) both set; a rung keeps by one of them", "keep")
        if self.keep is not None and self.keep < 1:
            raise ConfigError(f"must be an int >= 1, got {self.keep!r}", "keep")
        if self.eta is not None and not self.eta > 1:
            raise ConfigError(f"must be a number > 1, got {self.eta!r}", "eta")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"must be an int >= 1, got {self.epochs!r}", "epochs")
        if self.signal not in SIGNALS:
            raise ConfigError(f"unknown signal {self.signal!r}; choose one of {', '.join(SIGNALS)}", "signal")
        if self.zero_cost and (self.epochs is not None or self.signal != "val_acc"):
            raise ConfigError("a zero-cost rung trains nothing: it takes no epochs or signal", "source")

    @property
    def zero_cost(self) -> bool:
        return self.source.startswith("zerocost:")

    def kept(self, n: int) -> int:
        """How many of ``n`` candidates this rung keeps."""
        if self.keep is not None:
            return min(self.keep, n)
        if self.eta is not None:
            return max(1, math.ceil(n / self.eta))
        return n


@dataclass(frozen=True)
class Schedule:
    """A named list of rungs, run in order on the candidates the previous rung kept."""

    name: str
    rungs: tuple[Rung, ...]

    def __post_init__(self) -> None:
        if not self.rungs:
            raise ConfigError("a schedule needs at least one rung", "rungs")


@dataclass
class Measurement:
    """What a source measured at a rung: each candidate's value of the rung's signal, oriented so that higher ranks
    higher (NaN: it diverged), and what measuring them cost: the SGD ``steps`` trained beyond what earlier rungs had
    paid for, the wall ``seconds`` of it all, of which ``scoring_seconds`` trained nothing (zero-cost scores), and the
    whole-set steps each candidate measured has received so far (``whole_steps``)."""

    values: pd.Series
    steps: float = 0.0
    seconds: float = 0.0
    scoring_seconds: float = 0.0
    whole_steps: dict[str, float] = field(default_factory=dict)


class Source(Protocol):
    """Answers a schedule's rungs: :meth:`measure` the candidates at a rung. A source remembers what it has trained,
    so that a candidate promoted to a later epoch of the same run pays only for the epochs it had not trained."""

    def measure(self, rung: Rung, candidates: Sequence[str]) -> Measurement: ...


@dataclass
class RungRecord:
    """One rung as it was run: its candidates, their values, those it kept, and its cost."""

    index: int
    rung: Rung
    candidates: list[str]
    values: pd.Series
    kept: list[str]
    steps: float
    seconds: float
    scoring_seconds: float


@dataclass
class ScheduleResult:
    """A schedule's run: every rung's record, the chosen candidate (the last rung's best), the final ranking (the
    candidates ordered by the last rung they reached, then by their value there) and the whole-set steps each
    candidate received."""

    schedule: Schedule
    rungs: list[RungRecord]
    chosen: str
    ranking: list[str]
    whole_steps: dict[str, float]

    @property
    def steps(self) -> float:
        return float(sum(r.steps for r in self.rungs))

    @property
    def seconds(self) -> float:
        return float(sum(r.seconds for r in self.rungs))

    @property
    def scoring_seconds(self) -> float:
        return float(sum(r.scoring_seconds for r in self.rungs))


def promote(values: pd.Series, keep: int) -> list[str]:
    """The ``keep`` best candidates by value, best first: NaN (diverged) last, ties to the candidate id that sorts
    first, so that the same values always promote the same candidates."""
    frame = pd.DataFrame({"value": values.to_numpy(float), "candidate": values.index.astype(str)})
    frame["missing"] = frame["value"].isna()
    frame = frame.sort_values(["missing", "value", "candidate"], ascending=[True, False, True], kind="mergesort")
    return frame["candidate"].tolist()[:keep]


def run_schedule(schedule: Schedule, candidates: Sequence[str], source: Source) -> ScheduleResult:
    """Run ``schedule`` on ``candidates`` with the rungs answered by ``source``."""
    if not candidates:
        raise ValueError("no candidates to search")
    alive = list(dict.fromkeys(candidates))
    records: list[RungRecord] = []
    reached: dict[str, tuple[int, float]] = {}
    whole_steps: dict[str, float] = {}
    for i, rung in enumerate(schedule.rungs):
        measured = source.measure(rung, alive)
        values = measured.values.reindex(alive)
        kept = promote(values, rung.kept(len(alive)))
        records.append(RungRecord(i, rung, list(alive), values, kept, measured.steps, measured.seconds,
                                  measured.scoring_seconds))
        whole_steps.update(measured.whole_steps)
        for c in alive:
            reached[c] = (i, float(values[c]) if np.isfinite(values[c]) else -np.inf)
        alive = kept
    order = sorted(reached, key=lambda c: (-reached[c][0], -reached[c][1], c))
    return ScheduleResult(schedule, records, alive[0], order, whole_steps)


# --- the shipped families -------------------------------------------------------------------------------------


def successive_halving(source: str, epochs: Sequence[int], eta: float, *, signal: str = "val_acc",
                       name: str | None = None) -> Schedule:
    """Successive halving on one training set: rungs at ``epochs`` (ascending; the last is the choice), each keeping
    the top ``1/eta`` for the next (Li et al., JMLR 2018; ASHA's synchronous form, a promoted candidate continuing
    its run)."""
    if list(epochs) != sorted(set(epochs)):
        raise ConfigError(f"must be ascending and distinct, got {list(epochs)}", "epochs")
    rungs = [Rung(source, epochs=e, signal=signal, eta=eta) for e in epochs[:-1]]
    rungs.append(Rung(source, epochs=epochs[-1]))
    return Schedule(name or f"sh-{source}-{'-'.join(map(str, epochs))}-eta{eta:g}-{signal}", tuple(rungs))


def hyperband(source: str, max_epochs: int, eta: float = 3, *, min_epochs: int = 1,
              signal: str = "val_acc") -> list[tuple[int, Schedule]]:
    """Hyperband's brackets on one training set (Li et al., JMLR 2018; Optuna's ``HyperbandPruner``): for s = s_max
    .. 0, with s_max = floor(log_eta(max_epochs / min_epochs)), a successive-halving bracket that starts
    ceil((s_max + 1) / (s + 1) * eta^s) candidates at max_epochs * eta^-s epochs (rounded, at least ``min_epochs``)
    and multiplies the budget by eta up to ``max_epochs``. Returns (candidates drawn, bracket) pairs."""
    s_max = int(math.floor(math.log(max_epochs / min_epochs, eta) + 1e-9))
    brackets = []
    for s in range(s_max, -1, -1):
        n = math.ceil((s_max + 1) / (s + 1) * eta ** s)
        epochs = sorted({max(min_epochs, min(max_epochs, round(max_epochs * eta ** (i - s)))) for i in range(s + 1)})
        brackets.append((n, successive_halving(source, epochs, eta, signal=signal,
                                               name=f"hyperband-{source}-s{s}")))
    return brackets


def run_brackets(brackets: Sequence[tuple[int, Schedule]], candidates: Sequence[str], source_of,
                 rng: np.random.Generator) -> tuple[str, list[ScheduleResult]]:
    """Hyperband's brackets, each on ``n`` candidates drawn at random (without replacement, all of them when the pool
    has fewer) and answered by a source of its own (``source_of()``: a bracket trains its candidates from scratch);
    the choice is the bracket winner with the best value at its last rung. Returns it and every bracket's run."""
    results = []
    for n, bracket in brackets:
        picked = list(rng.choice(list(candidates), size=min(n, len(candidates)), replace=False))
        results.append(run_schedule(bracket, picked, source_of()))
    finals = pd.Series({r.chosen: r.rungs[-1].values[r.chosen] for r in results}, dtype=float)
    return promote(finals, 1)[0], results
