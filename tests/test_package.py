"""The layout by stage: each public name has one import path, its stage's ``__init__``; ``nasprune`` itself exports
only its version and loads no torch; every error has its one home in nasprune/errors.py."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import nasprune

STAGES = ["nasprune.training", "nasprune.proxies", "nasprune.proxies.selection", "nasprune.search",
          "nasprune.analysis", "nasprune.workflows"]


def _modules() -> list[str]:
    """Every module of the package."""
    return ["nasprune", *(m.name for m in pkgutil.walk_packages(nasprune.__path__, "nasprune."))]


def test_every_exported_name_resolves_to_its_stage():
    assert nasprune.__all__ == ["__version__"]
    homes: dict[str, str] = {}
    for stage in STAGES:
        module = importlib.import_module(stage)
        assert len(set(module.__all__)) == len(module.__all__), stage
        for name in module.__all__:
            value = getattr(module, name)
            assert value is not None, (stage, name)
            assert name not in homes, f"{name} is exported by both {homes.get(name)} and {stage}"
            homes[name] = stage
            if hasattr(value, "__module__") and callable(value):  # defined in the stage, not borrowed
                assert value.__module__.startswith(stage + "."), (stage, name, value.__module__)
    assert importlib.import_module("nasprune.search").Experiment.__module__ == "nasprune.search._experiment"
    assert homes["select_from_run"] == "nasprune.proxies" and homes["METHODS"] == "nasprune.proxies.selection"
    assert homes["progress"] == "nasprune.search" and homes["EXPERIMENT_FILE"] == "nasprune.search"
    for gone in ("CONFIG_FILE", "EXTRA_COLUMNS", "JOBS_CSV_COLUMNS", "DRAW_PREFIX", "select_baseline",
                 "check_random_state", "compare", "costs", "markdown"):
        assert gone not in homes, gone
    assert not hasattr(importlib.import_module("nasprune.proxies.selection"), "check_random_state")


@pytest.mark.parametrize("old", ["train", "fused", "scoring", "influence", "prune", "proxy", "selection",
                                 "experiment", "jobs", "runner", "optuna", "metrics", "benchmark", "report",
                                 "compare", "pipeline"])
def test_the_flat_modules_of_earlier_versions_are_gone(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"nasprune.{old}")


def test_an_unknown_name_is_an_attribute_error():
    try:
        nasprune.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("nasprune.no_such_name resolved")
    with pytest.raises(AttributeError):
        nasprune.Experiment  # noqa: B018  (no lazy front door: `from nasprune.search import Experiment`)


@pytest.mark.slow
def test_import_nasprune_loads_no_torch():
    code = "import sys, nasprune; print(nasprune.__version__); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == [nasprune.__version__, "False"]


def test_every_error_is_a_nasprune_error_and_a_value_error_with_one_home():
    """Each error class is defined in nasprune/errors.py and imported from there only: no other module exports it,
    and no stage's ``__init__`` (nor ``nasprune``) holds it."""
    from nasprune import errors

    names = ["ArtifactError", "ConfigError", "DatasetError", "ExperimentError", "MissingJobsError", "OutputError",
             "ProxyError", "ScoringError", "StorageError"]
    assert set(names) | {"NasPruneError", "join_key"} == set(errors.__all__)
    for name in names:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.NasPruneError) and issubclass(cls, ValueError), name
        assert cls.__module__ == "nasprune.errors" and cls.__doc__, name
    for module_name in _modules():
        if module_name == "nasprune.errors":
            continue
        module = importlib.import_module(module_name)
        exported = set(getattr(module, "__all__", ()))
        for name in [*names, "NasPruneError"]:
            assert name not in exported, (module_name, name)
            if module_name in ("nasprune", *STAGES):
                assert not hasattr(module, name), (module_name, name)
    assert issubclass(errors.NasPruneError, ValueError)
    assert str(errors.ConfigError("expected an int", "train.epochs").under("scoring")) == \
        "scoring.train.epochs: expected an int"
