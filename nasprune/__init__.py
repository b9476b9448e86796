"""nasprune: cheap neural architecture search on proxy sets chosen by dataset pruning.

The front door: each stage's main names, in pipeline order (see README.md, "The pipeline"). They are
imported on first use, so ``import nasprune`` (and ``nasprune --help``) does not load torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it, in pipeline order
_EXPORTS: dict[str, str] = {
    # errors (nasprune/errors.py): each a NasPruneError, so a ValueError
    "NasPruneError": "nasprune.errors", "ConfigError": "nasprune.errors", "DatasetError": "nasprune.errors",
    "ArtifactError": "nasprune.errors", "ScoringError": "nasprune.errors", "ProxyError": "nasprune.errors",
    "ExperimentError": "nasprune.errors", "StorageError": "nasprune.errors",
    # configs
    "PipelineConfig": "nasprune.pipeline",
    # data
    "DATASETS": "nasprune.data", "Dataset": "nasprune.data", "DatasetSpec": "nasprune.data",
    "load_dataset": "nasprune.data",
    # training
    "TrainConfig": "nasprune.train", "TrainResult": "nasprune.train", "resolve_device": "nasprune.train",
    "train": "nasprune.train",
    # scoring run
    "ScoringConfig": "nasprune.scoring", "ScoringRun": "nasprune.scoring", "run_scoring": "nasprune.scoring",
    # selection and proxy sets
    "METHODS": "nasprune.prune", "InfluenceConfig": "nasprune.prune", "build_proxy": "nasprune.prune",
    "ProxySet": "nasprune.proxy",
    # the search
    "Experiment": "nasprune.experiment",
    "run_search": "nasprune.runner", "load_jobs": "nasprune.runner", "job_status": "nasprune.runner",
    # metrics and reports
    "table1": "nasprune.metrics", "noise_ceiling": "nasprune.metrics", "random_null": "nasprune.metrics",
    "write_report": "nasprune.report", "compare_with_random": "nasprune.compare",
    "size_sweep": "nasprune.benchmark", "choose_defaults": "nasprune.benchmark",
    # everything from one config; users' own Optuna studies
    "run_pipeline": "nasprune.pipeline", "search_on_proxy": "nasprune.optuna",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nasprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
