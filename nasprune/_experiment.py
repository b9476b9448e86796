"""Transitional: the experiment config moved to the public module :mod:`nasprune.experiment`."""

from nasprune.experiment import CONFIG_FILE, FORMAT, Experiment, ExperimentError, diff, pretty  # noqa: F401
