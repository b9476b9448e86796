"""One ``nasprune run`` config, as typed dataclasses: the dataset, the scoring run, the proxies and the search.

:class:`PipelineConfig` is one config file (``nasprune/configs/quick.yaml`` is a commented example), validated as a
whole by :func:`nasprune.config.from_mapping` when the file is read, before any work starts; it makes the search's
:class:`~nasprune.search.Experiment`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml

from nasprune.artifacts import changed_settings
from nasprune.config import ConfigError, check_name, from_mapping, merged, migrate, read_yaml, to_mapping
from nasprune.configs import CONFIG_DIR, shipped
from nasprune.data import DatasetSpec
from nasprune.errors import ExperimentError
from nasprune.proxies import (ONE_SECTION_KEYS, InfluenceConfig, ObjectiveConfig, ScoringConfig, comparable_settings,
                              draw_name)
from nasprune.proxies.selection import METHODS, get_method
from nasprune.search import Experiment, Rung, TrainingSet, check_seeds
from nasprune.training import TrainConfig
from nasprune.zerocost import SCORES
from search_spaces import ConvNetSpec, convnet_720, stratified_subset
from search_spaces.convnet import ACTIVATIONS, DEPTHS, NORMS, POOLINGS, WIDTHS

__all__ = ["CandidateDraw", "Grid", "PipelineConfig", "ProxiesConfig", "ProxySpec", "SearchConfig"]


@dataclass(frozen=True)
class ProxySpec:
    """One proxy set to build (or ``draws`` of them): its name, selection method, seed, size, training
    epochs, and the influence method's settings (``influence``: how S is computed; ``objective``: what is
    optimised over it).

    ``per_class`` None is ``proxies.per_class``; ``epochs`` None trains it with ``search.proxy_train.epochs`` (set
    it to give every proxy size the same number of optimiser steps, say); ``batch_size`` and ``lr`` None likewise
    (:attr:`TRAIN_KEYS`: the settings an entry may override). ``draws`` N > 1 makes N sets of a stochastic method,
    ``<name>-d0`` .. ``<name>-d<N-1>`` with seeds ``seed`` .. ``seed + N - 1``: random as a distribution rather
    than one draw. ``seed`` seeds the selection; ``train_seeds`` (None: ``search.proxy_seeds``) are the training
    seeds, e.g. one the whole set's ground truth was not trained with, so that a proxy shares neither initial
    weights nor batch order with it. In YAML, ``influence`` and ``objective`` list only the settings that differ
    from ``proxies.influence`` and ``proxies.objective`` (which list those that differ from
    :class:`InfluenceConfig`'s and :class:`ObjectiveConfig`'s defaults); after :meth:`ProxiesConfig.resolved` they
    hold all of them and seed and per_class are filled in. Configs from before ``objective`` (its settings under
    ``influence``) still load, with a FutureWarning.
    ``scoring`` lists the settings of its scoring run that differ from the run's ``scoring``
    (:meth:`PipelineConfig.scoring_of`); to select with a cheaper network, say:
    ``{spec: w16-d3-relu-instancenorm-avgpooling, train: {epochs: 2}}``.
    """

    MOVED: ClassVar[dict[str, str]] = ONE_SECTION_KEYS
    TRAIN_KEYS: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "lr")  # overrides of search.proxy_train

    name: str
    method: str
    seed: int | None = None  # None: proxies.seed
    per_class: int | None = None  # None: proxies.per_class
    epochs: int | None = None  # None: search.proxy_train.epochs
    batch_size: int | None = None  # None: search.proxy_train.batch_size
    lr: float | None = None  # None: search.proxy_train.lr
    draws: int = 1
    train_seeds: tuple[int, ...] | None = None  # None: search.proxy_seeds
    influence: dict = field(default_factory=dict)
    objective: dict = field(default_factory=dict)
    scoring: dict = field(default_factory=dict)  # overrides of the run's scoring config, e.g. a cheaper network

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        if self.name == "whole":
            raise ConfigError("'whole' is the whole training set's name; give the proxy another", "name")
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}", "method")
        for key in ("per_class", "epochs", "batch_size", "draws"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"must be an int >= 1, got {value!r}", key)
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"must be a finite number > 0, got {self.lr!r}", "lr")
        if self.train_seeds is not None:
            check_seeds(self.train_seeds, "train_seeds")

    def names(self) -> list[str]:
        """The names of the sets this entry stands for: its own, or ``<name>-d0`` .. ``<name>-d<N-1>``."""
        return [self.name] if self.draws == 1 else [draw_name(self.name, k) for k in range(self.draws)]

    def expanded(self) -> list["ProxySpec"]:
        """The sets this entry stands for: itself, or its ``draws`` draws (needs a resolved seed)."""
        if self.draws == 1:
            return [self]
        return [dataclasses.replace(self, name=name, seed=self.seed + k, draws=1)
                for k, name in enumerate(self.names())]


@dataclass(frozen=True)
class ProxiesConfig:
    """The proxies of a run: ``methods`` is short for one set per method, named after it; ``sets`` lists
    them explicitly (several seeds, sizes or influence settings of one method)."""

    MOVED: ClassVar[dict[str, str]] = ProxySpec.MOVED

    per_class: int = 100
    seed: int = 0
    methods: tuple[str, ...] = ("random", "herding", "forgetting", "influence")
    influence: dict = field(default_factory=dict)
    objective: dict = field(default_factory=dict)
    sets: tuple[ProxySpec, ...] | None = None

    def __post_init__(self) -> None:
        if self.per_class < 1:
            raise ConfigError(f"must be an int >= 1, got {self.per_class!r}", "per_class")
        for i, m in enumerate(self.methods):
            if m not in METHODS:
                raise ConfigError(f"unknown method {m!r}; choose one of {', '.join(METHODS)}", f"methods[{i}]")
        from_mapping(InfluenceConfig, self.influence, "influence")
        from_mapping(ObjectiveConfig, self.objective, "objective")
        for i, s in enumerate(self.sets or ()):
            from_mapping(InfluenceConfig, {**self.influence, **s.influence}, f"sets[{i}].influence")
            from_mapping(ObjectiveConfig, {**self.objective, **s.objective}, f"sets[{i}].objective")
            if s.draws > 1 and not get_method(s.method).stochastic:
                raise ConfigError(f"method {s.method!r} is deterministic: its draws would all be one set",
                                  f"sets[{i}].draws")
        names = [s.name for s in self.resolved()]
        if len(set(names)) != len(names):
            raise ConfigError(f"proxy names must be distinct, got {names}", "sets")

    def entries(self) -> list[ProxySpec]:
        """The entries as written: ``sets``, else one per method, named after it."""
        return list(self.sets) if self.sets is not None else [ProxySpec(m, m) for m in self.methods]

    def resolved(self) -> list[ProxySpec]:
        """Every proxy to build, draws expanded, with its seed, size and full influence and objective settings."""
        return [d for s in self.entries() for d in dataclasses.replace(
            s, seed=self.seed if s.seed is None else s.seed,
            per_class=self.per_class if s.per_class is None else s.per_class,
            influence=dataclasses.asdict(from_mapping(InfluenceConfig, {**self.influence, **s.influence})),
            objective=dataclasses.asdict(from_mapping(ObjectiveConfig, {**self.objective, **s.objective}))
        ).expanded()]


@dataclass(frozen=True)
class Grid:
    """Factor levels of the ConvNet grid (``convnet_720``'s arguments); the defaults give the 720."""

    widths: tuple[int, ...] = WIDTHS
    depths: tuple[int, ...] = DEPTHS
    acts: tuple[str, ...] = ACTIVATIONS
    norms: tuple[str, ...] = NORMS
    pools: tuple[str, ...] = POOLINGS


@dataclass(frozen=True)
class CandidateDraw:
    """Candidates drawn from ``grid`` minus ``exclude`` (e.g. a development pool kept apart) by
    ``stratified_subset``: ``count`` of them, every level of every factor present; None keeps them all."""

    grid: Grid = field(default_factory=Grid)
    count: int | None = None
    seed: int = 0
    exclude: tuple[str, ...] = ()

    def ids(self) -> list[str]:
        g = self.grid
        specs = convnet_720(g.widths, g.depths, g.acts, g.norms, g.pools)
        excluded = {ConvNetSpec.from_id(c).id for c in self.exclude}  # an unknown id raises SpecError
        specs = [s for s in specs if s.id not in excluded]
        chosen = specs if self.count is None else stratified_subset(specs, self.count, seed=self.seed)
        return [s.id for s in chosen]


@dataclass(frozen=True)
class SearchConfig:
    """Which candidates to train, with which seeds and training configs, and how many workers."""

    candidates: tuple[str, ...] | CandidateDraw = field(default_factory=CandidateDraw)
    seeds: tuple[int, ...] = (0,)
    proxy_seeds: tuple[int, ...] | None = None  # None: seeds; e.g. (0,) when random draws supply the variation
    workers: int = 1
    # train up to this many jobs of one candidate as one network (nasprune/training/_fused.py); 1: off, the
    # default everywhere: on a CPU fusion measured slower (scripts/bench_fused.py); try 16 on a GPU
    fuse: int = 1
    max_retries: int = 2
    storage: str | None = None
    proxy_train: TrainConfig = field(default_factory=TrainConfig)
    whole_train: TrainConfig = field(default_factory=TrainConfig)
    # a schedule, not part of the experiment: training sets ('whole' or a proxies.sets name, which brings all
    # its draws) whose jobs run before any other's, every seed, in this order; by default jobs run seed by seed
    first: tuple[str, ...] = ()
    # a multi-fidelity schedule (nasprune.search.Rung): when set, `nasprune run` runs its rungs in turn, each on the
    # candidates the previous one kept, instead of training every candidate on every training set
    schedule: tuple[Rung, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"must be an int >= 0, got {self.workers!r}", "workers")
        if self.fuse < 1:
            raise ConfigError(f"must be an int >= 1 (1: no fusion), got {self.fuse!r}", "fuse")
        for key in ("seeds", "proxy_seeds"):
            if getattr(self, key) is not None:
                check_seeds(getattr(self, key), key)
        for key in ("proxy_train", "whole_train"):
            if getattr(self, key).seed != 0:
                raise ConfigError("the training seed comes from search.seeds; remove it here", f"{key}.seed")

    def candidate_ids(self) -> list[str]:
        return list(self.candidates) if isinstance(self.candidates, tuple) else self.candidates.ids()


@dataclass(frozen=True)
class PipelineConfig:
    """One ``nasprune run`` config: see ``nasprune/configs/quick.yaml`` for a commented example."""

    name: str
    dataset: DatasetSpec
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    proxies: ProxiesConfig = field(default_factory=ProxiesConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        for i, s in enumerate(self.proxies.sets or ()):
            if s.scoring:
                try:
                    self.scoring_of(s)
                except ConfigError as e:
                    raise e.under(f"proxies.sets[{i}].scoring") from None
        self.first_sets()
        sources = {"whole", *(n for entry in self.proxies.entries() for n in entry.names())}
        for i, rung in enumerate(self.search.schedule):
            if rung.zero_cost:
                score = rung.source.split(":", 1)[1]
                if score != "ensemble" and score not in SCORES:
                    raise ConfigError(f"unknown zero-cost score {score!r}; choose one of {', '.join(SCORES)} or "
                                      "ensemble", f"search.schedule[{i}].source")
            elif rung.source not in sources:
                raise ConfigError(f"no training set {rung.source!r}; choose 'whole', a proxy's name "
                                  f"({', '.join(sorted(sources - {'whole'}))}) or zerocost:<score>",
                                  f"search.schedule[{i}].source")

    def first_sets(self) -> list[str]:
        """``search.first`` as the experiment's training sets, an entry with draws standing for all of them."""
        entries = {"whole": ["whole"]}
        for s in self.proxies.entries():
            entries.update({s.name: s.names(), **{n: [n] for n in s.names()}})
        for i, name in enumerate(self.search.first):
            if name not in entries:
                raise ConfigError(f"no training set {name!r}; choose 'whole' or a proxy's name: "
                                  f"{', '.join(n for n in entries if n != 'whole')}", f"search.first[{i}]")
        return list(dict.fromkeys(n for name in self.search.first for n in entries[name]))

    def scoring_of(self, proxy: ProxySpec) -> tuple[ScoringConfig, str]:
        """The scoring run ``proxy`` selects from, and its file in the run directory: ``scoring.pt`` for the run's
        ``scoring``, ``scoring-<hash of its settings>.pt`` for one a proxy entry changes."""
        if not proxy.scoring:
            return self.scoring, "scoring.pt"
        override = migrate(ScoringConfig, proxy.scoring)  # the flat form of earlier versions, before the merge
        config = from_mapping(ScoringConfig, merged(to_mapping(self.scoring), override))
        if config == self.scoring:
            return config, "scoring.pt"
        # named by the settings that differ from ScoringConfig's defaults, so that a field added later (at its
        # default) leaves the name alone
        differ = {k: new for k, (_, new) in changed_settings(comparable_settings(ScoringConfig()),
                                                             comparable_settings(config)).items()}
        digest = hashlib.sha1(json.dumps(differ, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return config, f"scoring-{digest}.pt"

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> "PipelineConfig":
        """A shipped config by name (``quick``, ``paper``, ``fmnist-ref``) or a YAML file, fully validated:
        the candidates and the experiment it makes are checked too."""
        path = Path(name_or_path)
        if not path.is_file():
            path = CONFIG_DIR / f"{name_or_path}.yaml"
            if not path.is_file():
                raise FileNotFoundError(f"no config file {str(name_or_path)!r}; shipped configs: {', '.join(shipped())}")
        try:
            doc = read_yaml(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML: {e}", str(path)) from None
        except ConfigError as e:  # a key given twice
            raise ConfigError(e.problem, str(path)) from None
        except UnicodeDecodeError:
            raise ConfigError("not a text file", str(path)) from None
        try:
            config = from_mapping(cls, doc)
            config.experiment()  # candidates exist and fit the experiment format
        except ConfigError as e:
            raise ConfigError(e.problem, f"{path}: {e.key}" if e.key else str(path)) from None
        return config

    def experiment(self):
        """The search as an :class:`~nasprune.search.Experiment`: the whole set first (no proxy can be
        scored before it, so a partial run is informative), then one training set per proxy."""
        sets = {"whole": TrainingSet(None, self.search.whole_train)}
        seeds = None if self.search.proxy_seeds is None else list(self.search.proxy_seeds)
        for s in self.proxies.resolved():
            own_train = {k: getattr(s, k) for k in s.TRAIN_KEYS if getattr(s, k) is not None}
            train = dataclasses.replace(self.search.proxy_train, **own_train)
            own = seeds if s.train_seeds is None else list(s.train_seeds)
            sets[s.name] = TrainingSet(f"proxies/{s.name}.json", train, own)
        try:
            return Experiment(name=self.name, dataset=dataclasses.replace(self.dataset, download=False),
                              candidates=self.search.candidate_ids(), training_sets=sets,
                              seeds=list(self.search.seeds), max_retries=self.search.max_retries,
                              storage=self.search.storage)
        except (ExperimentError, ValueError) as e:
            raise ConfigError(str(e), "search") from None
