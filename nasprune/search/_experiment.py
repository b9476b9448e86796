"""The experiment: dataset, candidates, training sets with their training configs, and seeds.

Typed and validated at construction (mappings, e.g. from ``experiment.json``, go through
:func:`nasprune.config.from_mapping`), so a bad experiment is refused before anything runs. Saved as
``DIR/experiment.json``; a different experiment is never written over a stored one unless asked, and
"different" is inequality of the dataclasses, so a file that spells a default out equals one that omits it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from nasprune import __version__
from nasprune.artifacts import changed_settings, show_changes
from nasprune.config import ConfigError, check_fields, check_name, from_mapping, read_json, to_mapping
from nasprune.data import DatasetSpec
from nasprune.errors import ExperimentError, ProxyError
from nasprune.proxies import ProxySet
from nasprune.training import TrainConfig
from search_spaces.convnet import ConvNetSpec, SpecError

__all__ = ["EXPERIMENT_FILE", "Experiment", "TrainingSet", "check_seeds"]

FORMAT = "nasprune.experiment/1"
#: The experiment's file in its directory.
EXPERIMENT_FILE = "experiment.json"


@dataclass(frozen=True)
class TrainingSet:
    """One training set: a proxy file, or None for the whole training split, and how to train on it.

    ``proxy`` is taken from the experiment directory when relative. ``train`` may not set ``seed`` (each
    job's seed is one of ``seeds``); its ``mean``/``std`` left None mean the dataset's, so every training
    set is normalised alike. ``seeds`` None trains the experiment's seeds; a list gives this set its own,
    e.g. two seeds of the whole set for its noise ceiling and one of each of 20 random draws. ``candidates`` None
    trains every candidate of the experiment; a list, some of them (a schedule's later rung trains those the
    previous rung kept).
    """

    proxy: str | None
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: list[int] | None = None
    candidates: list[str] | None = None

    def __post_init__(self) -> None:
        if self.train.seed != 0:
            raise ConfigError("is set by the experiment's seeds; remove it here", "train.seed")
        if self.seeds is not None:
            check_seeds(self.seeds, "seeds")

    def config(self, mean: tuple[float, ...], std: tuple[float, ...], seed: int = 0) -> TrainConfig:
        """The training config of one job: the dataset's normalisation unless set, and the job's seed."""
        t = self.train
        return dataclasses.replace(t, mean=t.mean if t.mean is not None else tuple(mean),
                                   std=t.std if t.std is not None else tuple(std), seed=seed)


@dataclass
class Experiment:
    """What to train and compare. Saved as ``DIR/experiment.json``.

    Attributes:
        name: names the Optuna studies (``"{name}:{training set}"``); letters, digits, ``._-``.
        dataset: the data and split (:class:`~nasprune.data.DatasetSpec`; a mapping of its fields is accepted).
        candidates: ConvNet spec ids, e.g. ``"w32-d3-relu-instancenorm-avgpooling"``.
        training_sets: name -> :class:`TrainingSet` (or a mapping ``{"proxy": ..., "train": {...}}``).
        seeds: one job per candidate, training set and seed; the seed drives initialisation and batches.
        max_retries: a job whose training raises is tried at most ``1 + max_retries`` times.
        storage: None for the journal file ``DIR/optuna.journal``, or an Optuna RDB URL.
    """

    name: str
    dataset: DatasetSpec
    candidates: list[str]
    training_sets: dict[str, TrainingSet]
    seeds: list[int] = field(default_factory=lambda: [0])
    max_retries: int = 2
    storage: str | None = None

    def __post_init__(self) -> None:
        try:
            check_fields(self)
        except ConfigError as e:
            raise ExperimentError(e.problem, e.key) from None
        check_name(self.name, "name", ExperimentError)
        self.dataset = dataclasses.replace(self.dataset, download=False)  # a stored experiment never downloads
        _check_candidates(self.candidates)
        if not self.training_sets:
            raise ExperimentError("must name at least one training set", "training_sets")
        for name in self.training_sets:
            check_name(name, f"training_sets.{name}", ExperimentError)
        check_seeds(self.seeds, "seeds")
        for name, ts in self.training_sets.items():
            if ts.candidates is not None:
                unknown = [c for c in ts.candidates if c not in self.candidates]
                if unknown or not ts.candidates or len(set(ts.candidates)) != len(ts.candidates):
                    raise ExperimentError(f"must be distinct candidates of the experiment, got {ts.candidates!r}"
                                          + (f" ({unknown[0]!r} is not one)" if unknown else ""),
                                          f"training_sets.{name}.candidates")
        if self.max_retries < 0:
            raise ExperimentError(f"must be an int >= 0, got {self.max_retries!r}", "max_retries")

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": __version__, **to_mapping(self)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> "Experiment":
        if not isinstance(d, dict):
            raise ExperimentError(f"expected a JSON object, got {type(d).__name__}", where)
        d = dict(d)
        if d.pop("format", FORMAT) != FORMAT:
            raise ExperimentError(f"not a nasprune experiment (format {FORMAT!r} expected)", where)
        d.pop("version", None)
        try:
            return from_mapping(cls, d)
        except ConfigError as e:
            raise ExperimentError(e.problem, f"{where}: {e.key}" if where and e.key else where or e.key) from None

    def save(self, directory: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``DIR/experiment.json``; a different experiment already there is refused unless ``overwrite``.

        Adding training sets is not a difference: the stored ones and everything else must be unchanged,
        so every finished job stays valid and only the new sets' jobs are queued.
        """
        path = Path(directory) / EXPERIMENT_FILE
        new = pretty(self.to_dict())
        if path.exists() and not overwrite:
            old = Experiment.load(directory)
            if not self._extends(old):  # the settings it changes, leaving out the training sets it adds
                kept = {k: v for k, v in self.training_sets.items() if k in old.training_sets}
                diff = changed_settings(to_mapping(old), to_mapping(dataclasses.replace(self, training_sets=kept)))
                raise ExperimentError(f"holds another experiment (setting stored -> new: {show_changes(diff)}); "
                                      "pass overwrite=True to replace it", str(path))
            if self.training_sets.keys() == old.training_sets.keys():
                return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(new + "\n")
        tmp.replace(path)
        return path

    def _extends(self, old: "Experiment") -> bool:
        """Whether this experiment is ``old`` itself, or ``old`` with training sets added."""
        kept = {k: v for k, v in self.training_sets.items() if k in old.training_sets}
        return kept.keys() == old.training_sets.keys() and dataclasses.replace(self, training_sets=kept) == old

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Experiment":
        path = Path(directory) / EXPERIMENT_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no {EXPERIMENT_FILE} in {directory}: `nasprune run CONFIG --out {directory}` makes one, or write it "
                "by hand (README.md, 'Run a search')")
        try:
            doc = read_json(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ExperimentError(f"not valid JSON ({e})", str(path)) from None
        except ConfigError as e:  # a key given twice
            raise ExperimentError(e.problem, str(path)) from None
        return cls.from_dict(doc, str(path))

    def seeds_of(self, training_set: str) -> list[int]:
        """The seeds training set ``training_set`` is trained with: its own, else the experiment's."""
        own = self.training_sets[training_set].seeds
        return list(self.seeds if own is None else own)

    def candidates_of(self, training_set: str) -> list[str]:
        """The candidates training set ``training_set`` trains: its own, else the experiment's, in the experiment's
        order."""
        own = self.training_sets[training_set].candidates
        return list(self.candidates) if own is None else [c for c in self.candidates if c in own]

    def seed_order(self) -> list[int]:
        """Every seed of any training set, the experiment's first, each once: the order jobs are taken in."""
        return list(dict.fromkeys([*self.seeds, *(s for t in self.training_sets for s in self.seeds_of(t))]))

    def jobs(self, first: Sequence[str] = ()) -> list[tuple[str, str, int]]:
        """Every (training set, candidate, seed), in the order workers take them: seed by seed, so a
        partial run already holds one complete seed of every training set. The training sets named in
        ``first`` come before all others, every seed of each, in the order given: a schedule (the ground
        truth's every seed, say, before any proxy), not part of the experiment."""
        return [(t, c, s) for t, s in self.set_order(first) for c in self.candidates_of(t)]

    def set_order(self, first: Sequence[str] = ()) -> list[tuple[str, int]]:
        """The (training set, seed) pairs in the order of :meth:`jobs` (a name given twice counts once);
        :class:`ExperimentError` for a name the experiment does not have, or a string instead of a list."""
        if isinstance(first, str):
            raise ExperimentError(f"must be a list of training-set names, got the string {first!r}", "first")
        unknown = [t for t in first if t not in self.training_sets]
        if unknown:
            raise ExperimentError(f"no training set {unknown[0]!r}; the experiment has {list(self.training_sets)}",
                                  "first")
        pairs = [(t, s) for s in self.seed_order() for t in self.training_sets if s in self.seeds_of(t)]
        rank = {t: i for i, t in enumerate(dict.fromkeys(first))}
        return sorted(pairs, key=lambda p: rank.get(p[0], len(rank)))  # stable: seed by seed within each rank

    def study_name(self, training_set: str) -> str:
        return f"{self.name}:{training_set}"

    def proxy_path(self, training_set: str, directory: str | os.PathLike) -> Path | None:
        proxy = self.training_sets[training_set].proxy
        return None if proxy is None else Path(directory) / proxy  # an absolute path stays as it is

    def steps_per_job(self, training_set: str, directory: str | os.PathLike) -> int | None:
        """SGD steps of one job of ``training_set``: its training config on its proxy file's images. None for
        the whole training split (its size needs the dataset) and for a proxy file not readable (yet)."""
        path = self.proxy_path(training_set, directory)
        try:
            images = None if path is None else len(ProxySet.load(path))
        except ProxyError:
            return None
        return None if images is None else self.training_sets[training_set].train.steps(images)


def check_seeds(seeds, key: str) -> None:
    """Refuse seeds that are not distinct ints in [0, 2**31), naming ``key``."""
    if not seeds or any(not 0 <= s < 2**31 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ExperimentError(f"must be distinct ints in [0, 2**31), got {list(seeds)!r}", key)


def _check_candidates(candidates: list[str]) -> None:
    if not candidates:
        raise ExperimentError("must be a non-empty list of spec ids", "candidates")
    for i, c in enumerate(candidates):
        try:
            spec = ConvNetSpec.from_id(c)
        except SpecError as e:
            raise ExperimentError(f"unknown candidate id {c!r}: {e}", f"candidates[{i}]") from None
        if spec.id != c:
            raise ExperimentError(f"{c!r} is not canonical; write {spec.id!r}", f"candidates[{i}]")
    if len(set(candidates)) != len(candidates):
        raise ExperimentError("holds duplicate ids", "candidates")


def pretty(d: dict) -> str:
    return json.dumps(d, indent=2, sort_keys=False)
