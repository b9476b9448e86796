"""Workflows that run several stages at once: the whole pipeline from one ``nasprune run`` config
(:func:`run_pipeline`), a proxy against random draws of its size (:func:`compare_with_random`, ``nasprune
compare``), a multi-fidelity schedule run live (:func:`run_live_schedule`, ``search.schedule``), and a rate grid
(:func:`run_rate_grid`: a set pruned at several rates, nets trained on each).
"""

from ._config import CandidateDraw, Grid, PipelineConfig, ProxiesConfig, ProxySpec, SearchConfig
from ._live_schedule import LiveSource, live_source, rung_set_name, run_live_schedule
from ._pipeline import PipelineResult, run_pipeline
from ._random_comparison import DRAWS_NAME, RandomComparison, add_random_draws, compare_with_random
from ._rate_grid import RATE_METHODS, RateGrid, RateMethod, run_rate_grid, summarise_rate_grid

__all__ = ["DRAWS_NAME", "RATE_METHODS", "CandidateDraw", "Grid", "LiveSource", "PipelineConfig", "PipelineResult",
           "ProxiesConfig", "ProxySpec", "RandomComparison", "RateGrid", "RateMethod", "SearchConfig",
           "add_random_draws", "compare_with_random", "live_source", "run_live_schedule", "run_pipeline",
           "run_rate_grid", "rung_set_name", "summarise_rate_grid"]
