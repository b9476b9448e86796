"""The selection registry: every method's name, the scoring-run inputs it reads, the end it keeps, its function.

A method is a plain function ``fn(labels, keep_per_class, *, seed=0, <inputs>..., <options>...)`` returning a
:class:`~nasprune.proxies.selection.SelectionResult`. It registers once, with :func:`register_method`; everything else
(``nasprune.proxies.build_proxy``, the CLI's ``--method`` choices, the conformance check in
``nasprune/proxies/selection/testing.py``) looks it up here. ``METHODS`` is a live view of the registered names, so a
method registered later is known everywhere at once.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from ._common import SelectionResult

#: Every input a method may read, and where it comes from (``nasprune.proxies.ScoringRun`` and
#: ``nasprune.proxies.influence_vectors``). A method declares the ones it needs by these names.
INPUTS: dict[str, str] = {
    "features": "(n, d) penultimate-layer features of the trained pruning network",
    "logits": "(n, C) final logits of the trained pruning network",
    "forgetting_counts": "(n,) forgetting events (never-learned examples count as the epochs)",
    "el2n": "(n,) EL2N score early in training",
    "grand": "(n,) GraNd score early in training",
    "S": "(n, P) last-layer influence vectors",
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class MethodSpec:
    """One registered selection method.

    Attributes:
        name: the method's name (``build_proxy(method=name)``, ``nasprune prune --method name``).
        fn: the selection function, ``fn(labels, keep_per_class, *, seed, <inputs>, <options>)``.
        inputs: names (keys of ``INPUTS``) of what it reads from the scoring run; ``()`` needs no scoring run.
        keeps: which end of the data it keeps, in a few words ("uniform", "hardest", "both tails", ...).
        stochastic: whether the seed changes the selection beyond breaking ties.
    """

    name: str
    fn: Callable[..., SelectionResult]
    inputs: tuple[str, ...]
    keeps: str
    stochastic: bool

    @property
    def summary(self) -> str:
        """The first paragraph of the function's docstring, on one line."""
        return " ".join((inspect.getdoc(self.fn) or "").split("\n\n", 1)[0].split())

    @property
    def options(self) -> tuple[str, ...]:
        """Keyword parameters beyond the inputs and ``seed`` (e.g. ``beta``), each with a default."""
        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in (*self.inputs, "seed")
                     and p.name not in INPUTS)


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(name: str, *, inputs: Sequence[str], keeps: str,
                    stochastic: bool) -> Callable[[Callable[..., SelectionResult]], Callable[..., SelectionResult]]:
    """Decorator that registers a selection function under ``name``; a name is registered once.

    Example:
        >>> @register_method("first", inputs=(), keeps="lowest indices", stochastic=False)  # doctest: +SKIP
        ... def first(labels, keep_per_class, *, seed=0): ...
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"method name must be lower-case letters, digits and '_', starting with a letter, "
                         f"got {name!r}")
    inputs = tuple(inputs)
    unknown = [i for i in inputs if i not in INPUTS]
    if unknown:
        raise ValueError(f"method {name!r} declares unknown input(s) {unknown}; inputs are {list(INPUTS)}")
    if not isinstance(keeps, str) or not keeps:
        raise ValueError(f"method {name!r}: keeps must be a short non-empty description, got {keeps!r}")
    if not isinstance(stochastic, bool):
        raise ValueError(f"method {name!r}: stochastic must be True or False, got {stochastic!r}")

    def decorator(fn: Callable[..., SelectionResult]) -> Callable[..., SelectionResult]:
        if name in _REGISTRY:
            other = _REGISTRY[name].fn
            raise ValueError(f"selection method {name!r} is already registered (by {other.__module__}."
                             f"{other.__qualname__}); choose another name")
        params = inspect.signature(fn).parameters
        missing = [p for p in ("seed", *inputs) if p not in params or params[p].kind is not params[p].KEYWORD_ONLY]
        if missing:
            raise ValueError(f"method {name!r}: {fn.__qualname__} must take {missing} as keyword-only "
                             "parameters, as fn(labels, keep_per_class, *, seed=0, <inputs>) does")
        _REGISTRY[name] = MethodSpec(name=name, fn=fn, inputs=inputs, keeps=keeps, stochastic=stochastic)
        return fn

    return decorator


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; a ValueError lists the known names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


class _MethodNames(Sequence):
    """The registered names, in registration order: a read-only view that always reflects the registry."""

    def __getitem__(self, i):
        return tuple(_REGISTRY)[i]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __contains__(self, name) -> bool:
        return name in _REGISTRY

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


#: Names of every registered method (a live view of the registry; ``tuple(METHODS)`` for a snapshot).
METHODS: Sequence[str] = _MethodNames()


def select(method: str, labels, keep_per_class, *, seed=0, options: Mapping | None = None,
           **inputs) -> SelectionResult:
    """Run registered ``method`` on ``labels`` with exact per-class quotas.

    One dict of inputs serves every method: each gets the inputs it declared, plus any other input it
    accepts as a keyword (e.g. ``ccs``'s ``forgetting_counts``). ``options`` are the method's own keyword
    parameters (``MethodSpec.options``, e.g. ``{"beta": 0.5}`` for ``ccs``); their defaults apply otherwise.

    Raises:
        ValueError: unknown method or input name, a declared input missing, or an option the method does not
            take.
    """
    spec = get_method(method)
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown:
        raise ValueError(f"unknown input(s) {unknown} for method {method!r}; inputs are {list(INPUTS)}")
    missing = [key for key in spec.inputs if inputs.get(key) is None]
    if missing:
        raise ValueError(f"method {method!r} needs input(s) {missing} from the scoring run; pass them as "
                         "keyword arguments")
    accepted = inspect.signature(spec.fn).parameters
    options = dict(options or {})
    bad = sorted(set(options) - set(spec.options))
    if bad:
        raise ValueError(f"method {method!r} takes no option(s) {bad}; its options are {list(spec.options)}")
    kwargs = {key: value for key, value in inputs.items() if key in accepted and key in INPUTS}
    return spec.fn(labels, keep_per_class, seed=seed, **kwargs, **options)
