"""Analysis: how well each training set ranks the candidates against the whole set (:func:`table1` and its
metrics), what to read that against (the noise ceiling, where random draws fall, a settled ground truth), random
as a distribution size by size, and the report, plots and Markdown that show it.

Pure functions of the jobs table (:func:`nasprune.search.load_jobs`, or ``jobs.csv``), but for
:func:`write_report`, which reads an experiment's storage.
"""

from ._markdown import (PAIRED_COLUMNS, ci_text, markdown_table, paired_differences, paired_markdown, paired_text,
                        paired_wide_markdown, proxies_markdown, replace_block, size_sweep_markdown, train_settings,
                        write_readme)
from ._metrics import (LOWER_IS_BETTER, METRICS, TABLE1_COLUMNS, candidate_means, metric_names, ndcg,
                       paired_difference, point_metrics, ranking_metrics, table1, time_and_storage)
from ._null import (NULL_COLUMNS, draw_metrics, noise_ceiling, place_among, random_draws, random_null,
                    ranking_by_epoch, seed_agreement)
from ._plots import (NULL_METRICS, family_lines, plot_budget, plot_proxy_vs_whole, plot_random_null, plot_size_sweep,
                     plot_table1, random_band)
from ._schedule_report import SCHEDULE_COLUMNS, schedule_table, write_schedule_report
from ._report import experiment_name, search_has_run, table1_from_csv, table1_markdown, table1_summary, write_report
from ._sweep import (SWEEP_COLUMNS, PoolReading, complete_sets, cost_fractions, paired_draws, paper_scale,
                     random_spread, read_pool, sets_by_size, settling, size_sweep, top_quartile_k, whole_variant_sweep,
                     whole_variants)

__all__ = ["LOWER_IS_BETTER", "METRICS", "NULL_COLUMNS", "NULL_METRICS", "PAIRED_COLUMNS", "SCHEDULE_COLUMNS",
           "SWEEP_COLUMNS", "PoolReading", "schedule_table", "write_schedule_report",
           "TABLE1_COLUMNS", "candidate_means", "ci_text", "complete_sets", "cost_fractions", "draw_metrics",
           "experiment_name", "family_lines", "markdown_table", "metric_names", "ndcg", "noise_ceiling",
           "paired_difference", "paired_differences", "paired_draws", "paired_markdown", "paired_text",
           "paired_wide_markdown", "paper_scale", "place_among", "plot_budget", "plot_proxy_vs_whole",
           "plot_random_null", "plot_size_sweep", "plot_table1", "point_metrics", "proxies_markdown", "random_band",
           "random_draws", "random_null", "random_spread", "ranking_by_epoch", "ranking_metrics", "read_pool",
           "replace_block",
           "search_has_run", "seed_agreement", "sets_by_size", "settling", "size_sweep", "size_sweep_markdown",
           "table1", "table1_from_csv", "table1_markdown", "table1_summary", "time_and_storage", "top_quartile_k",
           "train_settings",
           "whole_variant_sweep", "whole_variants", "write_readme", "write_report"]
