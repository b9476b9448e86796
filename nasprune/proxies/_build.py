"""From a scoring run to a proxy set: influence vectors, one registered selection method, a ``ProxySet``.

This is the selection stage of the pipeline; it reads a :class:`~nasprune.proxies.ScoringRun` (none for a
method that needs no inputs, such as random) and never trains anything. The methods and their names are the
selection registry's (``nasprune.proxies.selection.METHODS``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F

from nasprune.artifacts import changed_settings, show_changes
from nasprune.config import migrate
from nasprune.data import Dataset
from nasprune.errors import ProxyError

from ._influence import HESSIANS, last_layer_influence, refit_last_layer
from ._proxy_set import ProxySet
from ._scoring import ScoringConfig, ScoringRun, comparable_settings
from .selection import TARGETS, SelectionResult, fraction_quota, get_method, resolve_quota, select

__all__ = ["ONE_SECTION_KEYS", "InfluenceConfig", "ObjectiveConfig", "build_proxy", "check_reuse", "check_selection",
           "epsilon_for_rate",
           "influence_vectors", "kept_set_profile", "needs_scoring_run", "proxy_settings", "recorded_settings",
           "select_from_run", "uses_influence"]


@dataclass
class InfluenceConfig:
    """How the influence vectors S = (1/n) H^-1 grad L(z_i) of the last layer are computed
    (``nasprune/proxies/_influence.py``): the l2 of the refit and of H, extra damping of H, how H^-1 is applied
    (``hessian``: exact, kfac or lissa), and whether the last layer is first refit to its minimiser."""

    #: Keys of the one-section form before ObjectiveConfig (and ``method``, now ``hessian``) -> their new place.
    MOVED: ClassVar[dict[str, str]] = {"method": "hessian"}

    l2: float = 1e-5
    damping: float = 0.0
    hessian: str = "exact"
    refit: bool = True

    def __post_init__(self) -> None:
        if self.hessian not in HESSIANS:
            raise ValueError(f"unknown hessian {self.hessian!r}; choose one of {', '.join(HESSIANS)}")
        if self.l2 < 0 or self.damping < 0 or self.l2 + self.damping <= 0:
            raise ValueError("l2 and damping must be >= 0 with l2 + damping > 0: the last layer's Hessian is "
                             "singular without them")


@dataclass
class ObjectiveConfig:
    """What the influence method optimises over S, and how (``nasprune/proxies/selection/_cardinality.py``,
    ``_epsilon.py``).

    ``target`` names the kept-set target of Eq. 4 (see ``nasprune.proxies.selection.TARGETS``): "paper" is the
    literal Eq. 4, which at small keep rates fills the proxy with misclassified images; "scaled", the
    default, asks the kept set to carry the mean influence, the first-order parameter change for a mean
    loss. The default (scaled, with InfluenceConfig's l2 = 1e-5) is the best formulation of the objective
    study (results/objective-study/README.md), though not significantly better than random. ``epsilon`` set
    solves Eq. 3 instead (prune as many as the bound allows) of per-class quotas.
    """

    target: str = "scaled"
    solver: str = "swap"
    time_limit: float | None = 60.0
    bound: bool = True
    epsilon: float | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.epsilon is not None and (self.epsilon < 0 or self.target != "paper"):
            raise ValueError(f"epsilon needs epsilon >= 0 and target 'paper' (got {self.epsilon}, {self.target!r}): "
                             "with the scaled or classwise target, pruning everything meets any epsilon")


#: Where the settings of the one ``influence`` section of earlier versions (configs and proxy files) went:
#: ``config.migrate``'s old dotted key -> new dotted key.
ONE_SECTION_KEYS = {"influence.method": "influence.hessian",
                    **{f"influence.{f.name}": f"objective.{f.name}" for f in fields(ObjectiveConfig)}}


def proxy_settings(method: str, per_class, seed: int, influence: InfluenceConfig | None = None,
                   objective: ObjectiveConfig | None = None, scoring: ScoringConfig | Mapping | None = None) -> dict:
    """What a proxy's selection depends on, as compared (:func:`check_reuse`): the method, its quotas and seed,
    for a method that reads a scoring run that run's settings (``scoring.comparable_settings``; None: the
    default), for a method that reads S its InfluenceConfig, and for the influence method its ObjectiveConfig."""
    settings = {"method": method, "per_class": per_class, "seed": seed}
    if needs_scoring_run(method):
        settings["scoring"] = comparable_settings(ScoringConfig() if scoring is None else scoring)
    if uses_influence(method):
        settings["influence"] = asdict(influence or InfluenceConfig())
    if method == "influence":  # the objective is that method's own (influence_score reads S, not the objective)
        settings["objective"] = asdict(objective or ObjectiveConfig())
    return settings


def recorded_settings(config: Mapping) -> dict:
    """:func:`proxy_settings` of a proxy file's ``config``, in today's form (its scoring run's settings as
    ``scoring.comparable_settings`` reads them, whatever version wrote them): files written before
    ObjectiveConfig hold its settings (and ``method`` for ``hessian``) in the one ``influence`` section, and
    settings added since a file was written count at their defaults."""
    settings = {k: config.get(k) for k in ("method", "per_class", "seed")}
    if needs_scoring_run(settings["method"]) and config.get("scoring") is not None:
        settings["scoring"] = comparable_settings(config["scoring"])
    if isinstance(config.get("influence"), Mapping):
        with warnings.catch_warnings():  # a file is not the user's config: nothing to rewrite
            warnings.simplefilter("ignore", FutureWarning)
            sections = migrate(ONE_SECTION_KEYS, {"influence": config["influence"],
                                                  "objective": config.get("objective") or {}})
        settings["influence"] = asdict(InfluenceConfig(**sections["influence"]))
        if settings["method"] == "influence":
            settings["objective"] = asdict(ObjectiveConfig(**sections["objective"]))
    return settings


def check_reuse(proxy: ProxySet, asked: Mapping, path, *, ignore: tuple[str, ...] = ()) -> None:
    """Refuse to reuse the proxy file at ``path`` when it was built with other settings than ``asked``
    (:func:`proxy_settings`), naming each one; settings in ``ignore`` (dotted, e.g. ``objective.epsilon``) are
    not compared."""
    diff = {k: v for k, v in changed_settings(recorded_settings(proxy.config), dict(asked)).items()
            if k not in ignore}
    if diff:
        raise ProxyError(f"{path}: was built with other settings than asked (setting built -> asked: "
                         f"{show_changes(diff)}); delete the file to rebuild it")


def influence_vectors(run: ScoringRun, config: InfluenceConfig) -> tuple[torch.Tensor, dict]:
    """S (n, C*(d+1)) for the run's final layer, refit to the minimiser first when ``config.refit``."""
    info: dict = {}
    weight, bias = run.weight, run.bias
    start = time.perf_counter()
    if config.refit:
        fit = refit_last_layer(run.features, run.labels, weight, bias, l2=config.l2)
        weight, bias = fit.weight, fit.bias
        info.update(refit_grad_norm=fit.grad_norm, refit_iterations=fit.iterations, refit_converged=fit.converged)
    info["refit_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    S = last_layer_influence(run.features, run.labels, weight, bias, l2=config.l2, damping=config.damping,
                             hessian=config.hessian)
    info["influence_seconds"] = time.perf_counter() - start
    return S, info


def kept_set_profile(run: ScoringRun | None, kept) -> dict:
    """How the pruning network sees the kept images: accuracy (%) and mean true-class probability.

    Both are None without a scoring run (a random proxy built without one).
    """
    if run is None:
        return {"pruning_net_acc_on_kept": None, "pruning_net_p_true_on_kept": None}
    kept = torch.as_tensor(kept)
    logits, labels = run.logits[kept], run.labels[kept]
    return {
        "pruning_net_acc_on_kept": float((logits.argmax(1) == labels).float().mean() * 100),
        "pruning_net_p_true_on_kept": float(F.softmax(logits, 1).gather(1, labels[:, None]).mean()),
    }


#: Where each registered input (``nasprune.proxies.selection.INPUTS``) comes from in a scoring run; "S" is computed
#: from it by ``influence_vectors``.
RUN_INPUTS: dict[str, Callable[[ScoringRun], torch.Tensor]] = {
    "features": lambda run: run.features,
    "logits": lambda run: run.logits,
    "forgetting_counts": lambda run: run.forgetting,
    "el2n": lambda run: run.el2n,
    "grand": lambda run: run.grand,
}


def check_selection(dataset: Dataset, method: str, per_class) -> None:
    """Refuse, before any training, what selecting ``per_class`` images of each class with ``method`` would refuse
    after the scoring run: an unknown method, or a quota larger than a class (a one-line ValueError each)."""
    get_method(method)
    resolve_quota(dataset.train_y, per_class)


def needs_scoring_run(method: str) -> bool:
    """Whether ``method`` reads anything from a scoring run (random does not, so it needs no training)."""
    return bool(get_method(method).inputs)


def uses_influence(method: str) -> bool:
    """Whether ``method`` reads the influence vectors S, so that ``InfluenceConfig`` and ``ObjectiveConfig``
    shape its result."""
    return "S" in get_method(method).inputs


def _selection_options(method: str, objective: ObjectiveConfig) -> dict:
    """The settings of the method itself: the objective's, for the influence method."""
    return asdict(objective) if method == "influence" else {}


def _missing_run(method: str) -> ValueError:
    inputs = get_method(method).inputs
    return ValueError(f"method {method!r} selects from the scoring run's {', '.join(inputs)}, but no run was "
                      "given; pass run=run_scoring(dataset) or ScoringRun.load(path) (random needs none)")


def select_from_run(run: ScoringRun | None, method: str, per_class, *, seed: int = 0,
           influence: InfluenceConfig | None = None, objective: ObjectiveConfig | None = None,
           labels=None) -> tuple[SelectionResult, dict]:
    """Run one registered selection method on a scoring run; returns the selection and timing/diagnostic info.

    ``run`` may be None for a method that needs no inputs (``needs_scoring_run``); ``labels`` are then
    required. Selection time includes the refit and influence computation a method needs.
    """
    spec = get_method(method)
    if run is None and spec.inputs:
        raise _missing_run(method)
    if run is not None:
        labels = run.labels
    elif labels is None:
        raise ValueError("select needs labels when run is None; pass labels=dataset.train_y")
    influence, objective = influence or InfluenceConfig(), objective or ObjectiveConfig()
    info: dict = {}
    start = time.perf_counter()
    inputs = {}
    for name in spec.inputs:
        if name == "S":
            inputs["S"], info = influence_vectors(run, influence)
        else:
            inputs[name] = RUN_INPUTS[name](run)
    result = select(method, labels, per_class, seed=seed, options=_selection_options(method, objective),
                           **inputs)
    info["selection_seconds"] = time.perf_counter() - start
    return result, info


def build_proxy(dataset: Dataset, run: ScoringRun | None = None, method: str = "random", per_class=100, *,
                keep: float | None = None, seed: int = 0, influence: InfluenceConfig | None = None,
                objective: ObjectiveConfig | None = None) -> ProxySet:
    """Select ``per_class`` images of each class (one count, or a mapping class -> count) with ``method``, or
    the fraction ``keep`` of every class when given, and package them as a ``ProxySet``.

    A method that needs no scoring run (``needs_scoring_run``: random) works with ``run=None``; the kept
    set's pruning-network profile is then None. With ``objective.epsilon`` set, the influence method solves
    Eq. 3 instead: it keeps whatever the largest pruned set within epsilon leaves, and ``per_class`` is
    ignored.
    """
    if run is not None:
        run.check_dataset(dataset)
    elif needs_scoring_run(method):
        raise _missing_run(method)
    if keep is not None:
        per_class = fraction_quota(dataset.train_y, keep)
    result, info = select_from_run(run, method, per_class, seed=seed, influence=influence, objective=objective,
                          labels=dataset.train_y)
    config = {**{k: v for k, v in proxy_settings(method, per_class, seed, influence, objective).items()
                 if k != "scoring"}, "scoring": None if run is None else run.config}
    # the scoring run's cost counts only for a method that reads it
    scoring_seconds = float(sum(run.seconds.values())) if run is not None and needs_scoring_run(method) else None
    stats = {
        **info,
        **kept_set_profile(run, result.kept),
        "scoring_seconds": scoring_seconds,
        # what building this proxy cost: the scoring run it used (if any) and the selection
        "proxy_seconds": info["selection_seconds"] + (scoring_seconds or 0.0),
        "t_norm": result.t_norm,
        "lower_bound": result.lower_bound,
        "target": result.target,
        "solver": {k: v for k, v in result.stats.items() if isinstance(v, (int, float, str, bool))},
    }
    return ProxySet.from_selection(dataset, result.kept, method, config=config, objective=result.objective,
                                   stats=stats)


def epsilon_for_rate(S: torch.Tensor, labels: torch.Tensor, rate: float, *, tol: float = 0.01, steps: int = 30,
                     time_limit: float = 60.0) -> float:
    """The epsilon of Eq. 3 (target 'paper') whose pruned fraction is nearest ``rate``, so that Eq. 3 can be set
    beside per-class quotas at the same pruning rate: bisected geometrically (the pruned fraction grows about with
    log epsilon) until it is within ``tol`` of ``rate``, or for ``steps`` tries."""
    if not 0 < rate < 1:
        raise ValueError(f"rate is a pruned fraction in (0, 1), got {rate}")
    n, hi = len(S), float(S.norm(dim=1).sum())
    lo, best = hi * 1e-7, None
    for _ in range(steps):
        eps = (lo * hi) ** 0.5
        kept = select("influence", labels, 1, S=S, options={"target": "paper", "epsilon": eps,
                                                            "time_limit": time_limit}).kept
        pruned = 1 - len(kept) / n
        if best is None or abs(pruned - rate) < abs(best[1] - rate):
            best = (eps, pruned)
        if abs(pruned - rate) <= tol:
            break
        lo, hi = (eps, hi) if pruned < rate else (lo, eps)
    return best[0]
