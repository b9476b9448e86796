"""The conformance check every registered selection method passes (as Optuna ships ``optuna.testing``).

The rules: exact per-class quotas (an int quota, and a dict quota with a zero and a whole class), sorted
unique int64 indices within range, inputs left unchanged, the same selection under the same seed, a
different draw under another seed exactly when the method says it is stochastic, and clear ValueErrors for
a quota larger than a class, a negative quota, a missing input and an input of the wrong length.

Check a method of your own after registering it::

    from nasprune.proxies.selection.testing import check_method
    check_method("my_method")  # raises AssertionError naming the rule it breaks

or parametrise a pytest module over ``METHODS`` and ``CHECKS``, as ``tests/proxies/selection/test_registry.py`` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import torch

from ._common import SelectionResult
from ._registry import INPUTS, METHODS, get_method, select

__all__ = ["CHECKS", "check_all", "check_method", "synthetic_inputs"]

_SEEDS = (0, 1, 2, 3, 4)


def synthetic_inputs(sizes=(24, 18, 12), *, seed: int = 0) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """Shuffled labels with classes of the given sizes, and a value for every name in ``INPUTS``.

    Small, float64 and free of ties (forgetting counts are a permutation of 0..n-1), so that a deterministic
    method's selection does not depend on how it breaks ties. Features, logits and S carry class structure.
    """
    gen = torch.Generator().manual_seed(seed)
    n_classes = len(sizes)
    labels = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=gen)]
    n = len(labels)

    def with_class_means(width: int, scale: float) -> torch.Tensor:
        means = scale * torch.randn(n_classes, width, generator=gen, dtype=torch.float64)
        return means[labels] + torch.randn(n, width, generator=gen, dtype=torch.float64)

    el2n = torch.rand(n, generator=gen, dtype=torch.float64) * 2 ** 0.5
    inputs = {
        "features": with_class_means(5, 1.5),
        "logits": with_class_means(n_classes, 1.0) * torch.rand(n, 1, generator=gen, dtype=torch.float64) * 6,
        "forgetting_counts": torch.randperm(n, generator=gen),
        "el2n": el2n,
        "grand": el2n * (1 + torch.rand(n, generator=gen, dtype=torch.float64)),
        "S": with_class_means(8, 0.3),
    }
    missing = set(INPUTS) - set(inputs)
    if missing:  # a new input name was added to the registry without a synthetic value here
        raise NotImplementedError(f"synthetic_inputs has no value for input(s) {sorted(missing)}")
    return labels.numpy(), inputs


# ------------------------------------------------------------------------------------------- helpers

def _expect(condition: bool, method: str, rule: str) -> None:
    if not condition:
        raise AssertionError(f"selection method {method!r} breaks the rule: {rule}")


def _run(method: str, labels: np.ndarray, inputs: dict, quota, seed=0) -> SelectionResult:
    return select(method, labels, quota, seed=seed, **inputs)


def _expect_value_error(method: str, call: Callable[[], object], pattern: str, rule: str) -> None:
    try:
        call()
    except ValueError as e:
        _expect(re.search(pattern, str(e)) is not None, method, f"{rule}; got the message {str(e)!r}")
        return
    raise AssertionError(f"selection method {method!r} breaks the rule: {rule}; no ValueError was raised")


def _sizes(labels: np.ndarray) -> dict[int, int]:
    classes, counts = np.unique(labels, return_counts=True)
    return dict(zip(classes.tolist(), counts.tolist()))


def _expect_quota(method: str, result: SelectionResult, labels: np.ndarray, quota: dict[int, int]) -> None:
    kept = result.kept
    counts = {c: int((labels[kept] == c).sum()) for c in quota}
    _expect(counts == quota, method, f"keep exactly {quota} per class (kept {counts})")
    _expect(result.per_class == quota, method, f"report per_class {quota} (reported {result.per_class})")
    _expect(result.pruned_count == len(labels) - len(kept), method, "report pruned_count = n - kept")


# ------------------------------------------------------------------------------------------- the checks

def check_int_quota(method: str, labels: np.ndarray, inputs: dict) -> None:
    """An int quota keeps exactly that many examples of every class."""
    k = min(_sizes(labels).values()) // 3
    result = _run(method, labels, inputs, k)
    _expect_quota(method, result, labels, {c: k for c in _sizes(labels)})


def check_dict_quota(method: str, labels: np.ndarray, inputs: dict) -> None:
    """A dict quota is met exactly, with one class at 0 and one kept whole."""
    sizes = _sizes(labels)
    first, *middle, last = sorted(sizes)
    quota = {first: 0, **{c: max(1, sizes[c] // 4) for c in middle}, last: sizes[last]}
    _expect_quota(method, _run(method, labels, inputs, quota), labels, quota)


def check_indices(method: str, labels: np.ndarray, inputs: dict) -> None:
    """Kept indices are a sorted, unique, int64 1-d array within [0, n), and the inputs are left unchanged."""
    before = {k: v.clone() for k, v in inputs.items()}
    kept = _run(method, labels, inputs, 3).kept
    _expect(isinstance(kept, np.ndarray) and kept.ndim == 1 and kept.dtype == np.int64, method,
            "return kept as a 1-d int64 numpy array")
    _expect(bool(np.all(np.diff(kept) > 0)), method, "return sorted, unique indices")
    _expect(len(kept) == 0 or (kept.min() >= 0 and kept.max() < len(labels)), method, "return indices in [0, n)")
    _expect(all(torch.equal(before[k], inputs[k]) for k in inputs), method, "leave its inputs unchanged")


def check_deterministic(method: str, labels: np.ndarray, inputs: dict) -> None:
    """The same seed gives the same selection."""
    for seed in (0, 7):
        a, b = (_run(method, labels, inputs, 4, seed=seed).kept for _ in range(2))
        _expect(np.array_equal(a, b), method, f"give the same selection twice under seed {seed}")


def check_seed(method: str, labels: np.ndarray, inputs: dict) -> None:
    """Another seed gives another draw if the method is registered as stochastic, the same one otherwise."""
    draws = {tuple(_run(method, labels, inputs, 4, seed=s).kept) for s in _SEEDS}
    if get_method(method).stochastic:
        _expect(len(draws) > 1, method, f"(registered stochastic) differ between seeds {_SEEDS}")
    else:
        _expect(len(draws) == 1, method, f"(registered deterministic) not depend on the seed on tie-free inputs, "
                                         f"seeds {_SEEDS} gave {len(draws)} selections")


def check_errors(method: str, labels: np.ndarray, inputs: dict) -> None:
    """Clear ValueErrors: a quota above a class size, a negative quota, a missing or mis-sized input."""
    sizes = _sizes(labels)
    c = min(sizes, key=sizes.get)
    _expect_value_error(method, lambda: _run(method, labels, inputs, sizes[c] + 1),
                        rf"asks for {sizes[c] + 1} examples of class {c}, which has only {sizes[c]}",
                        "refuse a quota larger than a class, naming the class and its size")
    _expect_value_error(method, lambda: _run(method, labels, inputs, {c: -1}), r"must be >= 0, got -1",
                        "refuse a negative quota")
    for name in get_method(method).inputs:
        without = {k: v for k, v in inputs.items() if k != name}
        _expect_value_error(method, lambda: _run(method, labels, without, 2),
                            rf"{re.escape(repr(method))} needs input\(s\) \[{re.escape(repr(name))}\]",
                            f"refuse a call without its input {name!r}, naming it")
        short = {**inputs, name: inputs[name][:-1]}
        _expect_value_error(method, lambda: _run(method, labels, short, 2), rf"{re.escape(name)} must have shape",
                            f"refuse an input {name!r} of the wrong length, naming it")


#: Every rule, by name (pytest ids): ``fn(method, labels, inputs)`` raises AssertionError when it is broken.
CHECKS: dict[str, Callable[[str, np.ndarray, dict], None]] = {
    "int_quota": check_int_quota,
    "dict_quota": check_dict_quota,
    "indices": check_indices,
    "deterministic": check_deterministic,
    "seed": check_seed,
    "errors": check_errors,
}


def check_method(method: str, labels: np.ndarray | None = None, inputs: dict | None = None) -> None:
    """Run every check on registered ``method`` (on ``synthetic_inputs()`` unless labels and inputs are given)."""
    get_method(method)
    if labels is None or inputs is None:
        labels, inputs = synthetic_inputs()
    for check in CHECKS.values():
        check(method, labels, inputs)


def check_all() -> None:
    """``check_method`` on every registered method."""
    labels, inputs = synthetic_inputs()
    for method in METHODS:
        check_method(method, labels, inputs)
