"""The front door: ``nasprune`` exports each stage's main names, and importing it loads no torch."""

import subprocess
import sys

import nasprune


def test_every_exported_name_resolves_to_its_stage():
    for name in nasprune.__all__:
        value = getattr(nasprune, name)
        assert value is not None, name
        if name != "__version__" and hasattr(value, "__module__"):
            assert value.__module__.startswith("nasprune."), (name, value.__module__)
    assert nasprune.Experiment.__module__ == "nasprune.experiment"  # public, documented format
    assert "Experiment" in dir(nasprune)


def test_an_unknown_name_is_an_attribute_error():
    try:
        nasprune.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("nasprune.no_such_name resolved")


def test_import_nasprune_loads_no_torch():
    code = "import sys, nasprune; print(nasprune.__version__); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == [nasprune.__version__, "False"]


def test_every_error_is_a_nasprune_error_and_a_value_error_with_one_home():
    """Each error class is defined in nasprune/errors.py; the modules that raise it re-export the same object."""
    import importlib

    from nasprune import errors

    homes = {"ConfigError": ["config", "experiment", "pipeline"], "ExperimentError": ["experiment", "jobs", "runner"],
             "ArtifactError": ["artifacts", "train"], "ProxyError": ["artifacts", "proxy"],
             "ScoringError": ["artifacts", "scoring"], "StorageError": ["jobs", "runner"], "DatasetError": ["data"]}
    assert set(homes) | {"NasPruneError", "join_key"} == set(errors.__all__)
    for name, modules in homes.items():
        cls = getattr(errors, name)
        assert issubclass(cls, errors.NasPruneError) and issubclass(cls, ValueError), name
        assert cls.__module__ == "nasprune.errors" and cls.__doc__, name
        assert getattr(nasprune, name) is cls, name
        for module in modules:
            assert getattr(importlib.import_module(f"nasprune.{module}"), name) is cls, (module, name)
    assert nasprune.NasPruneError is errors.NasPruneError and issubclass(errors.NasPruneError, ValueError)
    assert str(errors.ConfigError("expected an int", "train.epochs").under("scoring")) == \
        "scoring.train.epochs: expected an int"
