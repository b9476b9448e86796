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
