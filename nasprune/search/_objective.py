"""Run your own Optuna search (any sampler, any pruner) over the ConvNet space on a proxy set.

:func:`make_objective` returns an objective that trains the suggested ConvNet on the proxy (or any given
images) with :func:`nasprune.training.train_candidate`, as the runner trains its jobs, reports the validation
accuracy after every ``report_every`` epochs with ``trial.report`` so that Optuna pruners can stop weak
trials, and returns the final validation accuracy in percent (to be maximised). :func:`search_on_proxy`
wraps it in a study.

Example:
    >>> import optuna
    >>> from nasprune.data import load_dataset
    >>> from nasprune.proxies import ProxySet
    >>> from nasprune.search import search_on_proxy
    >>> from nasprune.training import TrainConfig
    >>> data = load_dataset("fashion-mnist")
    >>> proxy = ProxySet.load("proxies/ours.json", data)
    >>> study = search_on_proxy(data, proxy, n_trials=50, train_config=TrainConfig(epochs=20),
    ...                         sampler=optuna.samplers.TPESampler(seed=0),
    ...                         pruner=optuna.pruners.MedianPruner(n_warmup_steps=5))
    >>> study.best_trial.user_attrs["candidate"]
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import optuna
import torch

from nasprune.data import Dataset
from nasprune.proxies import ProxySet
from nasprune.training import TrainConfig, train_candidate
from search_spaces.convnet import ACTIVATIONS, DEPTHS, NORMS, POOLINGS, WIDTHS, ConvNetSpec, SpecError, block_shapes

__all__ = ["enqueue_candidates", "make_objective", "pool_space", "search_on_proxy"]

#: The factors a trial suggests, each a categorical over its choices: make_objective's keyword arguments.
FACTORS = {"width": "widths", "depth": "depths", "act": "acts", "norm": "norms", "pool": "pools"}


def make_objective(dataset: Dataset, proxy: ProxySet | tuple[torch.Tensor, torch.Tensor] | None = None,
                   train_config: TrainConfig | None = None, *, widths: Sequence[int] = WIDTHS,
                   depths: Sequence[int] = DEPTHS, acts: Sequence[str] = ACTIVATIONS, norms: Sequence[str] = NORMS,
                   pools: Sequence[str] = POOLINGS, seed: int = 0, report_every: int = 1,
                   val: tuple[torch.Tensor, torch.Tensor] | None = None) -> Callable[[optuna.Trial], float]:
    """An Optuna objective over the ConvNet space, trained on ``proxy``.

    Args:
        dataset: gives the validation and test splits (unless ``val``), shapes and normalisation (the
            dataset's statistics wherever ``train_config`` leaves ``mean``/``std`` None).
        proxy: a :class:`ProxySet` of ``dataset`` (checked against its fingerprint), ``(images, labels)``,
            or None for the whole training split.
        train_config: how to train each candidate (its ``seed`` is replaced by ``seed``).
        widths, depths, acts, norms, pools: the choices offered to the sampler (categorical).
        seed: initialisation and batch-order seed of every trial, so trials differ only by architecture.
        report_every: report (and ask the pruner) every this many epochs; each report evaluates ``val``.
        val: validation images and labels to use instead of the dataset's validation split.

    The trial's user attrs get ``candidate`` (the spec id), ``test_acc`` and ``seconds``. A suggested
    combination that cannot be built (groupnorm on a width not divisible by 4, a map pooled to nothing)
    is pruned.
    """
    if report_every < 1:
        raise ValueError(f"report_every must be >= 1, got {report_every}")
    if isinstance(proxy, ProxySet):
        x, y = proxy.tensors(dataset)
    elif proxy is None:
        x, y = dataset.train_x, dataset.train_y
    else:
        x, y = proxy
    config = dataclasses.replace(train_config or TrainConfig(), seed=seed)
    if val is not None:  # train_candidate evaluates on the dataset's val split: this one, here
        dataset = dataclasses.replace(dataset, val_x=val[0], val_y=val[1])
    choices = {"width": list(widths), "depth": list(depths), "act": list(acts), "norm": list(norms),
               "pool": list(pools)}

    def objective(trial: optuna.Trial) -> float:
        spec = suggest_spec(trial, choices)
        try:
            block_shapes(spec, dataset.in_channels, dataset.image_size)  # a feature map pooled to nothing
        except SpecError as e:
            raise optuna.TrialPruned(f"cannot build {spec.id}: {e}") from None

        def on_epoch(epoch: int, _model, val_acc: Callable[[], float | None]) -> None:
            if epoch % report_every == 0 and epoch < config.epochs:  # the last epoch's value is the result
                trial.report(val_acc(), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        result = train_candidate(spec, dataset, x, y, config, on_epoch=on_epoch)
        trial.set_user_attr("test_acc", result.test_acc)
        trial.set_user_attr("seconds", result.seconds)
        if result.epochs == config.epochs or result.epochs % report_every:  # not reported yet
            trial.report(result.val_acc, result.epochs)
        return result.val_acc

    return objective


def suggest_spec(trial: optuna.Trial, choices: dict[str, Sequence]) -> ConvNetSpec:
    """The ConvNet the trial suggests, a categorical per factor over ``choices``; a combination that cannot be built
    (groupnorm on a width not divisible by 4) prunes the trial. Its id goes into the user attr ``candidate``."""
    params = {name: trial.suggest_categorical(name, list(values)) for name, values in choices.items()}
    try:
        spec = ConvNetSpec(**params)
    except SpecError as e:
        raise optuna.TrialPruned(f"cannot build {params}: {e}") from None
    trial.set_user_attr("candidate", spec.id)
    return spec


def pool_space(candidates: Sequence[str]) -> dict[str, tuple]:
    """The smallest space (:func:`make_objective`'s ``widths``, ``depths``, ...) that holds every candidate."""
    specs = [ConvNetSpec.from_id(c) for c in candidates]
    return {plural: tuple(dict.fromkeys(getattr(s, factor) for s in specs)) for factor, plural in FACTORS.items()}


def enqueue_candidates(study: optuna.Study, candidates: Sequence[str]) -> None:
    """Queue a trial of each candidate, in this order, its factors as the trial's params: a fixed pool tried once
    each (one already queued or tried is not queued again), as an Optuna user searches a pool with a pruner."""
    for c in candidates:
        spec = ConvNetSpec.from_id(c)
        study.enqueue_trial({factor: getattr(spec, factor) for factor in FACTORS}, skip_if_exists=True)


def search_on_proxy(dataset: Dataset, proxy: ProxySet | tuple[torch.Tensor, torch.Tensor] | None, n_trials: int, *,
                    train_config: TrainConfig | None = None, sampler: optuna.samplers.BaseSampler | None = None,
                    pruner: optuna.pruners.BasePruner | None = None, storage: str | None = None,
                    study_name: str | None = None, candidates: Sequence[str] | None = None,
                    **space) -> optuna.Study:
    """Create (or load) a maximising study and run ``n_trials`` trials of :func:`make_objective`.

    ``space`` takes the keyword arguments of :func:`make_objective` (widths, depths, acts, norms, pools,
    seed, report_every, val). ``candidates`` (ConvNet ids) are queued first, in their order, over a space of
    their factors unless ``space`` gives one: ``n_trials=len(candidates)`` tries a fixed pool once each, a pruner
    stopping the weak (successive halving or Hyperband over epochs, as ``results/budget-search/`` compares).
    """
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, storage=storage,
                                study_name=study_name, load_if_exists=study_name is not None)
    if candidates is not None:
        space = {**pool_space(candidates), **space}
        enqueue_candidates(study, candidates)
    study.optimize(make_objective(dataset, proxy, train_config, **space), n_trials=n_trials)
    return study
