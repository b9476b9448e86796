"""Building proxies: the scoring run (one training of the pruning network and its per-example statistics), the
last-layer influence, the registered selection methods (:mod:`nasprune.proxies.selection`) and the proxy-set
artifact, in that order:

    run = run_scoring(dataset)                      # or load_or_run(path, dataset): kept, resumable
    proxy = build_proxy(dataset, run, "influence", per_class=100)
    proxy.save("proxies/ours.json")                 # ProxySet.load(path, dataset) refuses other data
"""

from ._build import (ONE_SECTION_KEYS, InfluenceConfig, ObjectiveConfig, build_proxy, check_reuse, check_selection,
                     epsilon_for_rate, influence_vectors, kept_set_profile, needs_scoring_run, proxy_settings,
                     recorded_settings, select_from_run, uses_influence)
from ._influence import (HESSIANS, RefitResult, flatten_params, influence_error, last_layer_influence,
                         leave_group_out_check, refit_last_layer, unflatten_params)
from ._proxy_set import ProxySet, draw_name
from ._scoring import (ScoringConfig, ScoringRun, cache_path, comparable_settings, load_or_run, pruning_network,
                       run_scoring)

__all__ = ["HESSIANS", "ONE_SECTION_KEYS", "InfluenceConfig", "ObjectiveConfig", "ProxySet", "RefitResult",
           "ScoringConfig", "ScoringRun", "build_proxy", "cache_path", "check_reuse", "check_selection", "comparable_settings", "draw_name",
           "epsilon_for_rate",
           "flatten_params", "influence_error", "influence_vectors", "kept_set_profile", "last_layer_influence",
           "leave_group_out_check", "load_or_run", "needs_scoring_run", "proxy_settings", "pruning_network",
           "recorded_settings", "refit_last_layer", "run_scoring", "select_from_run", "unflatten_params",
           "uses_influence"]
