"""Workflows that run several stages at once: the whole pipeline from one ``nasprune run`` config
(:func:`run_pipeline`), a proxy against random draws of its size (:func:`compare_with_random`, ``nasprune
compare``), and a rate grid (:func:`run_rate_grid`: a set pruned at several rates, nets trained on each).
"""

from ._config import CandidateDraw, Grid, PipelineConfig, ProxiesConfig, ProxySpec, SearchConfig
from ._pipeline import PipelineResult, run_pipeline
from ._random_comparison import DRAWS_NAME, RandomComparison, add_random_draws, compare_with_random
from ._rate_grid import RATE_METHODS, RateGrid, RateMethod, run_rate_grid, summarise_rate_grid

__all__ = ["DRAWS_NAME", "RATE_METHODS", "CandidateDraw", "Grid", "PipelineConfig", "PipelineResult", "ProxiesConfig",
           "ProxySpec", "RandomComparison", "RateGrid", "RateMethod", "SearchConfig", "add_random_draws",
           "compare_with_random", "run_pipeline", "run_rate_grid", "summarise_rate_grid"]
