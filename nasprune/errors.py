"""Every error nasprune raises on purpose, in one place: each a :class:`NasPruneError`, so a ``ValueError``.

This module is their one import path (``from nasprune.errors import ConfigError``). ``search_spaces.SpecError``
stays in ``search_spaces/convnet.py``: that package does not import nasprune. Importing this module loads nothing
else.
"""

from __future__ import annotations

__all__ = ["ArtifactError", "ConfigError", "DatasetError", "ExperimentError", "MissingJobsError", "NasPruneError",
           "OutputError", "ProxyError", "ScoringError", "StorageError", "join_key"]


class NasPruneError(ValueError):
    """The base of every error below: a bad input or file, said in one line with what to do."""


class ConfigError(NasPruneError):
    """A config value that is unknown, of the wrong type or refused (``nasprune/config.py``); ``key`` is its
    dotted path."""

    def __init__(self, problem: str, key: str = ""):
        self.problem, self.key = problem, key
        super().__init__(f"{key}: {problem}" if key else problem)

    def under(self, prefix: str) -> "ConfigError":
        """The same error with its key seen from one level up."""
        return type(self)(self.problem, join_key(prefix, self.key))


class ExperimentError(ConfigError):
    """An experiment that is invalid, or that differs from the one already stored (``nasprune/search/_experiment.py``,
    the studies of ``nasprune/search/_studies.py``)."""


class ArtifactError(NasPruneError):
    """An artifact file that is missing, corrupted, of another format, or built on other data or settings
    (``nasprune/artifacts.py``)."""


class ProxyError(ArtifactError):
    """A proxy file that is corrupted, or used with data it was not built on (``nasprune/proxies/_proxy_set.py``)."""


class ScoringError(ArtifactError):
    """A scoring-run file that is corrupted, belongs to other data or was made with other settings
    (``nasprune/proxies/_scoring.py``)."""


class StorageError(NasPruneError):
    """A storage URL that cannot be opened or reached, or a corrupted journal file (``nasprune/search/_storage.py``)."""


class OutputError(NasPruneError):
    """An output file that cannot be written (a read-only file system, no permission), found before the work that
    would write it (``nasprune/artifacts.py``)."""


class DatasetError(NasPruneError):
    """A dataset that cannot be found, read or split (``nasprune/data.py``)."""


class MissingJobsError(NasPruneError):
    """A replay that reads finished jobs a pool does not have: a training set, or some candidates of one
    (``nasprune/search/_replay.py``)."""


def join_key(prefix: str, key: str) -> str:
    """The dotted path of ``key`` under ``prefix``: ``a`` + ``b`` is ``a.b``, ``a`` + ``[0]`` is ``a[0]``."""
    if not prefix:
        return key
    return f"{prefix}{key}" if key.startswith("[") or not key else f"{prefix}.{key}"
