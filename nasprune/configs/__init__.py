"""The shipped ``nasprune run`` configs (``quick``, ``quick-schedule``, ``fmnist-ref``, ``paper``), installed with the package. Importing
this module loads nothing heavy, so the command line can list them at once."""

from pathlib import Path

__all__ = ["CONFIG_DIR", "shipped"]

#: The folder of the shipped configs.
CONFIG_DIR = Path(__file__).parent


def shipped() -> list[str]:
    """The names of the shipped configs, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
