"""The whole pipeline from one config: scoring run, proxies, search on every set, report.

Each stage writes its artifact into the run directory and is skipped when that artifact already
exists, so a killed ``nasprune run`` picks up where it stopped:

    DIR/scoring.pt             the scoring run (one training of the pruning network; DIR/scoring.pt.ckpt while
                               it trains, so a killed scoring run resumes from its last epoch); a proxy entry
                               with its own ``scoring`` settings selects from DIR/scoring-<hash>.pt
    DIR/proxies/<name>.json    one ProxySet per proxy
    DIR/experiment.json        the search (runner), its Optuna journal, then the report files
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from nasprune.analysis import write_report, write_schedule_report
from nasprune.config import to_mapping
from nasprune.proxies import (InfluenceConfig, ObjectiveConfig, ProxySet, build_proxy, check_reuse, load_or_run,
                              needs_scoring_run, proxy_settings)
from nasprune.search import EXPERIMENT_FILE, JobStore, ScheduleResult, run_search

from ._config import PipelineConfig
from ._live_schedule import live_source

__all__ = ["PipelineResult", "run_pipeline"]


@dataclass
class PipelineResult:
    """What ``run_pipeline`` did: the search's job summary (as ``run_search`` returns it), the report's files, and the
    schedule's run when the config has one."""

    summary: dict
    report: dict[str, Path]
    schedule: ScheduleResult | None = None


def run_pipeline(config: PipelineConfig, directory: str | os.PathLike, *, workers: int | None = None,
                 storage: str | None = None, progress: bool = True, report: bool = True, log=print,
                 fuse: int | None = None) -> PipelineResult:
    """Run every stage whose artifact is missing (no report when ``report`` is False); ``workers`` and ``fuse``
    override the config's ``search.workers`` and ``search.fuse``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dataset = config.dataset.load()
    proxies = config.proxies.resolved()
    paths = {s.name: directory / "proxies" / f"{s.name}.json" for s in proxies}
    missing = [s for s in proxies if not paths[s.name].exists()]
    needed = dict(config.scoring_of(s)[::-1] for s in missing if needs_scoring_run(s.method))  # file -> config
    if not needed:
        log("[1/4] scoring run: not needed" + (", every proxy file exists" if not missing else
                                                  f" by {', '.join(sorted({s.method for s in missing}))}"))
    runs = {}
    for file, scoring in needed.items():
        path = directory / file
        if not path.exists():
            log(f"[1/4] scoring run {file}: {scoring.spec}, {scoring.train.epochs} epochs on {len(dataset.train_y)} "
                "images")
        runs[file], loaded = load_or_run(path, dataset, scoring, progress=progress)
        log(f"[1/4] scoring run {file}{': reused' if loaded else ''}: pruning network val acc "
            f"{runs[file].val_acc:.1f}%, {sum(runs[file].seconds.values()):.0f}s")
    for s in proxies:
        path = paths[s.name]
        influence, objective = InfluenceConfig(**s.influence), ObjectiveConfig(**s.objective)
        scoring, file = config.scoring_of(s)
        if path.exists():
            proxy = ProxySet.load(path, dataset)
            check_reuse(proxy, proxy_settings(s.method, s.per_class, s.seed, influence, objective, scoring), path)
        else:
            proxy = build_proxy(dataset, runs.get(file), s.method, s.per_class, seed=s.seed, influence=influence,
                                objective=objective)
            proxy.save(path)
        acc = proxy.stats.get("pruning_net_acc_on_kept")
        log(f"[2/4] proxy {s.name:24s} {len(proxy):6d} images" +
            (f", pruning-net acc on kept {acc:.1f}%" if acc is not None else ""))
    exp = config.experiment()
    workers = workers if workers is not None else config.search.workers
    # a schedule already under way in this directory must be the config's: checked before anything is written
    source = (live_source(config, directory, workers=workers, storage=storage, progress=progress, log=log)
              if config.search.schedule else None)
    (directory / "pipeline.yaml").write_text(yaml.safe_dump(to_mapping(config), sort_keys=False))
    if source is not None:  # rung by rung, each training set holding only the candidates the previous one kept
        log(f"[3/4] schedule: {len(config.search.schedule)} rungs on {len(exp.candidates)} candidates, "
            f"{workers} worker(s)")
        result = source.run()
        trained = (directory / EXPERIMENT_FILE).exists()  # not when every rung was zero-cost
        summary = (JobStore.open(directory, url=storage or exp.storage).summary() if trained else
                   {"total": 0, "complete": 0, "failed": 0, "unfinished": 0})
        if not report:
            return PipelineResult(summary, {}, result)
        whole = config.search.whole_train.steps(len(dataset.train_y))
        written = write_schedule_report(result, directory, whole_steps=whole, candidates=len(exp.candidates))
        log(f"[4/4] report: chose {result.chosen}; {', '.join(str(p) for p in written.values())}")
        return PipelineResult(summary, written, result)
    exp.save(directory)
    log(f"[3/4] search: {len(exp.candidates)} candidates x {len(exp.training_sets)} training sets, "
        f"{len(exp.jobs())} jobs, {workers} worker(s)" + (f", first {', '.join(config.search.first)}"
                                                           if config.search.first else ""))
    summary = run_search(directory, workers=workers, storage=storage or exp.storage, progress=progress, log=log,
                         fuse=fuse if fuse is not None else config.search.fuse, first=config.first_sets())
    if not report:
        return PipelineResult(summary, {})
    written = write_report(directory, storage=storage or exp.storage)
    log(f"[4/4] report: {', '.join(str(p) for p in written.values())}")
    return PipelineResult(summary, written)
