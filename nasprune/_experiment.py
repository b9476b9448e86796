"""The experiment config: dataset, candidates, training sets with their training configs, and seeds.

Validated at construction, so a bad config is refused before anything runs; saved as
``DIR/experiment.json``, and a different config is never written over an existing one unless asked.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from nasprune import __version__
from nasprune.data import DATASETS
from nasprune.train import TrainConfig
from search_spaces.convnet import ConvNetSpec, SpecError

FORMAT = "nasprune.experiment/1"
CONFIG_FILE = "experiment.json"


class ExperimentError(ValueError):
    """An experiment config that is invalid, or that differs from the one already stored."""


@dataclass
class Experiment:
    """What to train and compare. Saved as ``DIR/experiment.json``.

    Attributes:
        name: names the Optuna studies (``"{name}:{training set}"``); letters, digits, ``._-``.
        dataset: ``load_dataset`` arguments: ``name``, ``root`` (None: default), ``val_size`` (None:
            default), ``seed`` (of the validation split).
        candidates: ConvNet spec ids, e.g. ``"w32-d3-relu-instancenorm-avgpooling"``.
        training_sets: name -> ``{"proxy": path or None, "train": TrainConfig kwargs}``. ``proxy`` None
            means the whole training split; a relative path is taken from the experiment directory.
            ``train`` may not set ``seed`` (the job's seed is used); ``mean``/``std`` default to the
            dataset's, so every training set is normalised alike.
        seeds: one job per candidate, training set and seed; the seed drives initialisation and batches.
        max_retries: a job whose training raises is tried at most ``1 + max_retries`` times.
        storage: None for the journal file ``DIR/optuna.journal``, or an Optuna RDB URL.
    """

    name: str
    dataset: dict
    candidates: list[str]
    training_sets: dict[str, dict]
    seeds: list[int] = field(default_factory=lambda: [0])
    max_retries: int = 2
    storage: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ExperimentError(f"name must be letters, digits, '.', '_' or '-', got {self.name!r}")
        self.dataset = _check_dataset(self.dataset)
        self.candidates = _check_candidates(self.candidates)
        self.training_sets = _check_training_sets(self.training_sets)
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < 2**31
                                 for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ExperimentError(f"seeds must be distinct ints in [0, 2**31), got {self.seeds!r}")
        self.seeds = list(self.seeds)
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ExperimentError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.storage is not None and not isinstance(self.storage, str):
            raise ExperimentError(f"storage must be None or an Optuna RDB URL, got {self.storage!r}")

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": __version__, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Experiment":
        d = dict(d)
        if d.pop("format", FORMAT) != FORMAT:
            raise ExperimentError(f"not a nasprune experiment (format {FORMAT!r} expected)")
        d.pop("version", None)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ExperimentError(f"unknown experiment keys {sorted(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:  # a required key is missing
            raise ExperimentError(f"experiment config: {e}") from None

    def save(self, directory: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``DIR/experiment.json``; a different config already there is refused unless ``overwrite``.

        Adding training sets is not a difference: the stored ones and everything else must be unchanged,
        so every finished job stays valid and only the new sets' jobs are queued.
        """
        path = Path(directory) / CONFIG_FILE
        new = pretty(self.to_dict())
        if path.exists() and not overwrite:
            old = Experiment.load(directory)
            if not self._extends(old):
                raise ExperimentError(f"{path} holds another experiment; pass overwrite=True to replace it "
                                      f"(- stored, + new):\n{diff(pretty(old.to_dict()), new)}")
            if self.training_sets.keys() == old.training_sets.keys():
                return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(new + "\n")
        tmp.replace(path)
        return path

    def _extends(self, old: "Experiment") -> bool:
        """Whether this config is ``old`` itself, or ``old`` with training sets added."""
        kept = {k: v for k, v in self.training_sets.items() if k in old.training_sets}
        return (dataclasses.replace(self, training_sets=kept).to_dict() | {"version": None}
                == old.to_dict() | {"version": None})

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Experiment":
        path = Path(directory) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {CONFIG_FILE} in {directory}; create one with Experiment(...).save(DIR)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ExperimentError(f"{path}: {e}") from None

    def jobs(self) -> list[tuple[str, str, int]]:
        """Every (training set, candidate, seed), in the order workers take them: seed by seed, so a
        partial run already holds one complete seed of every training set."""
        return [(t, c, s) for s in self.seeds for t in self.training_sets for c in self.candidates]

    def study_name(self, training_set: str) -> str:
        return f"{self.name}:{training_set}"

    def proxy_path(self, training_set: str, directory: str | os.PathLike) -> Path | None:
        proxy = self.training_sets[training_set]["proxy"]
        return None if proxy is None else Path(directory) / proxy  # an absolute path stays as it is


_DATASET_KEYS = ("name", "root", "val_size", "seed", "train_size")  # load_dataset's arguments


def _check_dataset(d: dict) -> dict:
    if not isinstance(d, dict) or set(d) - set(_DATASET_KEYS) or d.get("name") not in DATASETS:
        raise ExperimentError(f"dataset must be a dict with name (one of {', '.join(DATASETS)}) and optional "
                              f"{', '.join(_DATASET_KEYS[1:])}; got {d!r}")
    return {**{k: d.get(k) for k in _DATASET_KEYS}, "seed": int(d.get("seed") or 0)}


def _check_candidates(candidates: list[str]) -> list[str]:
    if isinstance(candidates, str) or not candidates:
        raise ExperimentError(f"candidates must be a non-empty list of spec ids, got {candidates!r}")
    for i, c in enumerate(candidates):
        try:
            spec = ConvNetSpec.from_id(c)
        except SpecError as e:
            raise ExperimentError(f"unknown candidate id {c!r} (candidates[{i}]): {e}") from None
        if spec.id != c:
            raise ExperimentError(f"candidate {c!r} (candidates[{i}]) is not canonical; write {spec.id!r}")
    if len(set(candidates)) != len(candidates):
        raise ExperimentError("candidates holds duplicate ids")
    return list(candidates)


def _check_training_sets(sets: dict[str, dict]) -> dict[str, dict]:
    if not isinstance(sets, dict) or not sets:
        raise ExperimentError(f"training_sets must be a non-empty dict name -> {{proxy, train}}, got {sets!r}")
    out = {}
    for name, entry in sets.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
            raise ExperimentError(f"training set name must be letters, digits, '.', '_' or '-', got {name!r}")
        if not isinstance(entry, dict) or set(entry) - {"proxy", "train"}:
            raise ExperimentError(f"training_sets[{name!r}] must be {{'proxy': path or None, 'train': {{...}}}}, "
                                  f"got {entry!r}")
        train_kwargs = dict(entry.get("train") or {})
        if "seed" in train_kwargs:
            raise ExperimentError(f"training_sets[{name!r}].train sets seed; use the experiment's seeds instead")
        try:
            TrainConfig(**train_kwargs)
        except (TypeError, ValueError) as e:  # an unknown key, or a bad value
            raise ExperimentError(f"training_sets[{name!r}].train: {e}") from None
        proxy = entry.get("proxy")
        out[str(name)] = {"proxy": None if proxy is None else str(proxy), "train": train_kwargs}
    return out


def pretty(d: dict) -> str:
    return json.dumps(d, indent=2, sort_keys=False)


def diff(old: str, new: str) -> str:
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "stored", "new", lineterm="", n=1)
    return "\n".join(list(lines)[2:])
