"""Is my proxy better than random? A proxy against many random proxies of its size, on the user's own candidates.

:func:`compare_with_random` adds N random proxies with the proxy's per-class counts (seeds 0..N-1, files
``DIR/proxies/random-d<i>.json``) to the experiment as training sets trained like the proxy, runs the
search for the jobs not done yet (:func:`nasprune.search.run_search`: finished jobs are kept, so a larger N
later adds only the new draws), and reads every metric of the proxy against the draws
(:func:`nasprune.analysis.random_null`) and against the whole set's agreement with itself across seeds
(:func:`nasprune.analysis.noise_ceiling`). ``nasprune compare`` is the same from the command line.

Cost: N x candidates x seeds proxy-sized jobs, that is N times what the proxy's own search took.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nasprune.analysis import (NULL_METRICS, candidate_means, ci_text, draw_metrics, experiment_name, noise_ceiling,
                               plot_random_null, random_null)
from nasprune.proxies import ProxySet, build_proxy, draw_name
from nasprune.search import EXPERIMENT_FILE, Experiment, TrainingSet, load_jobs, run_search

__all__ = ["DRAWS_NAME", "RandomComparison", "add_random_draws", "compare_with_random"]

#: The name the random draws are drawn under: training set (and file under ``DIR/proxies/``) ``random-d<i>``.
DRAWS_NAME = "random"
PLOT_FILE = "compare.png"


@dataclass
class RandomComparison:
    """What :func:`compare_with_random` found.

    Attributes:
        proxy, whole: the training sets compared.
        draws: the random draws used (those finished on every candidate the proxy and the whole set share).
        null: :func:`nasprune.analysis.random_null` of the proxy (one row per metric).
        draw_values: each draw's metrics (:func:`nasprune.analysis.draw_metrics`, one row per draw).
        ceiling: :func:`nasprune.analysis.noise_ceiling` of the whole set (NaN metrics with one seed).
        images: the proxy's size; plot: the PNG written (None if not asked); search: run_search's summary
            (None if the search was not run).
    """

    proxy: str
    whole: str
    draws: list[str]
    null: pd.DataFrame
    draw_values: pd.DataFrame
    ceiling: dict
    images: int
    plot: Path | None = None
    search: dict | None = None

    def text(self) -> str:
        """The table ``nasprune compare`` prints: per metric the proxy with its 95% bootstrap interval, the
        draws' median and 5-95% band, the proxy's percentile among them, how many draws are as good, and the
        ceiling with its interval."""
        c = self.ceiling
        seeds = c.get("seeds", [])
        lines = [f"{self.proxy} ({self.images:,} images) against {len(self.draws)} random proxies of the same "
                 f"per-class counts; {int(self.null['candidates'].iloc[0])} candidates, {self.whole} seeds {seeds}",
                 ""]
        header = ["metric", f"{self.proxy} [95% CI]", "random median [5%, 95%]", "percentile", "draws as good",
                  "ceiling [95% CI]"]
        rows = []
        for metric, label, fmt in NULL_METRICS:
            r = self.null[self.null["metric"] == metric]
            if not len(r):
                continue
            r = r.iloc[0]
            if pd.isna(r["value"]):
                rows.append([label, "n/a (too few candidates)", "", "", "", ""])
                continue
            rows.append([label,
                         ci_text(pd.Series({"v": r["value"], "v_lo": r["lo"], "v_hi": r["hi"]}), "v", fmt),
                         f"{format(r['draw_median'], fmt)} [{format(r['band_lo'], fmt)}, {format(r['band_hi'], fmt)}]",
                         f"{r['percentile']:.0f}", f"{r['draws_as_good'] * r['draws']:.0f} of {r['draws']}",
                         ci_text(pd.Series(c), metric, fmt)])
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header, *rows]]
        lines += ["", "percentile: the share of the draws the proxy beats (ties count half); draws as good: how many "
                      "draws reach its value or better, the one-sided p-value of 'no better than random'.",
                  f"ceiling: {self.whole} against itself, one seed's ranking against another's"
                  + (" (n/a: one seed; add seeds to the experiment to measure it)." if len(seeds) < 2 else ".")]
        if self.plot is not None:
            lines.append(f"plot: {self.plot}")
        return "\n".join(lines)


def _per_class(counts: dict[int, int]) -> int | dict[int, int]:
    """One count when every class has it (the proxy's config then reads like the CLI's ``--per-class K``)."""
    values = set(counts.values())
    return values.pop() if len(values) == 1 else dict(counts)


def add_random_draws(experiment_dir: str | os.PathLike, proxy: str, draws: int, *,
                     name: str = DRAWS_NAME) -> list[str]:
    """Add random draws 0..``draws``-1 of ``proxy``'s per-class counts to the experiment, trained like
    ``proxy``; return their training-set names.

    Draw i is ``build_proxy(dataset, None, "random", per_class, seed=i)``. A training set the experiment already
    has, with the same images and trained like ``proxy`` (a seed-0 random proxy of that size, say), is that draw and
    is used as it is, finished jobs and all. Otherwise the draw is saved as ``DIR/proxies/<name>-d<i>.json``
    (:func:`~nasprune.proxies.draw_name`; kept when it is already there and is that draw) and added as training set
    ``<name>-d<i>``; :meth:`Experiment.save` keeps every stored set and finished job. Proxies of one size and
    training config share their draws; give each size its own ``name`` (e.g. ``"random-pc50"``) to keep several
    sizes in one experiment.
    """
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an int >= 1, got {draws!r}")
    directory = Path(experiment_dir)
    exp = Experiment.load(directory)
    path = _proxy_path(exp, proxy, directory)
    dataset = exp.dataset.load()
    per_class = _per_class(ProxySet.load(path, dataset).per_class)
    trained = exp.training_sets[proxy]
    existing = _trained_like(exp, trained, directory, dataset)
    names, added, new = [], {}, {}
    for i in range(draws):
        draw = build_proxy(dataset, None, "random", per_class, seed=i)
        same = next((ts for ts, indices in existing.items() if np.array_equal(indices, draw.indices)), None)
        if same is not None and same != draw_name(name, i):
            names.append(same)
            continue
        names.append(draw_name(name, i))
        added[draw_name(name, i)] = TrainingSet(proxy=f"proxies/{draw_name(name, i)}.json", train=trained.train,
                                                seeds=trained.seeds)
        new[directory / "proxies" / f"{draw_name(name, i)}.json"] = (i, draw)
    changed = [k for k, v in added.items() if k in exp.training_sets and v != exp.training_sets[k]]
    if changed:
        raise ValueError(f"training sets {changed} are already in {directory / EXPERIMENT_FILE} with another "
                         f"proxy file or training config than {proxy!r}'s; compare against one proxy's draws per "
                         "experiment, or copy the experiment to another directory")
    for file, (i, _) in new.items():  # check every file before writing any
        if file.exists():
            draw = ProxySet.load(file, dataset)
            if (draw.method, _per_class(draw.per_class), draw.config.get("seed")) != ("random", per_class, i):
                raise ValueError(f"{file} is not random draw {i} of {per_class} per class (method {draw.method}, "
                                 f"{_per_class(draw.per_class)} per class, seed {draw.config.get('seed')}); pass "
                                 "another name for draws of another size, or move the file away to build it again")
    for file, (_, draw) in new.items():
        if not file.exists():
            draw.save(file)
    dataclasses.replace(exp, training_sets={**exp.training_sets, **added}).save(directory)
    return names


def _trained_like(exp: Experiment, trained: TrainingSet, directory: Path, dataset) -> dict[str, np.ndarray]:
    """The experiment's proxy training sets trained as ``trained`` is (its config and seeds), and their images."""
    out = {}
    for ts, entry in exp.training_sets.items():
        path = exp.proxy_path(ts, directory)
        if path is not None and path.exists() and (entry.train, entry.seeds) == (trained.train, trained.seeds):
            out[ts] = ProxySet.load(path, dataset).indices
    return out


def _proxy_path(exp: Experiment, proxy: str, directory: Path) -> Path:
    if proxy not in exp.training_sets:
        raise ValueError(f"no training set {proxy!r} in the experiment; its training sets: {list(exp.training_sets)}")
    path = exp.proxy_path(proxy, directory)
    if path is None:
        raise ValueError(f"training set {proxy!r} is the whole training split, not a proxy; pass a proxy's name")
    return path


def _default_proxy(exp: Experiment, whole: str, name: str) -> str:
    """The experiment's one proxy that is not a random draw; refused when there are several or none."""
    proxies = [t for t, s in exp.training_sets.items()
               if s.proxy is not None and t != whole and not t.startswith(draw_name(name, ""))]
    if len(proxies) != 1:
        raise ValueError(f"the experiment has {len(proxies)} proxies ({', '.join(proxies) or 'none'}); name the one "
                         "to compare with proxy=NAME (--proxy NAME)")
    return proxies[0]


def compare_with_random(experiment_dir: str | os.PathLike, proxy: str | None = None, draws: int = 20, *,
                        whole: str = "whole", search: bool = True, workers: int = 1, storage: str | None = None,
                        fuse: int = 1, progress: bool = True, n_boot: int = 1000, seed: int = 0,
                        plot: bool = True, name: str = DRAWS_NAME) -> RandomComparison:
    """How proxy ``proxy`` ranks the experiment's candidates compared with ``draws`` random proxies of its size.

    Args:
        experiment_dir: the experiment (``DIR/experiment.json``); it must have the whole training set
            ``whole`` and the proxy as training sets.
        proxy: the proxy's training-set name; None takes the experiment's only proxy that is not a draw.
        draws: random draws 0..draws-1 (:func:`add_random_draws`, named ``<name>-d<i>``); 20 or more for a
            5-95% band that means something.
        search: run the search for every unfinished job first (``workers``, ``storage`` and ``fuse`` as in
            :func:`nasprune.search.run_search`; ``workers=0`` trains in this process). False reads the
            finished jobs only: draws not finished on every candidate are left out.
        progress: the search's progress bar.
        n_boot, seed: bootstrap resamples over candidates and their seed (intervals of the proxy and ceiling).
        plot: write ``DIR/compare.png`` (:func:`nasprune.analysis.plot_random_null`).

    Returns:
        A :class:`RandomComparison`; its ``text()`` is what ``nasprune compare`` prints.
    """
    directory = Path(experiment_dir)
    exp = Experiment.load(directory)
    if whole not in exp.training_sets:
        raise ValueError(f"no training set {whole!r} (the whole set) in the experiment; its training sets: "
                         f"{list(exp.training_sets)}; pass whole=NAME (--whole NAME)")
    proxy = proxy or _default_proxy(exp, whole, name)
    names = add_random_draws(directory, proxy, draws, name=name)
    summary = run_search(directory, workers=workers, storage=storage, fuse=fuse, progress=progress,
                         log=None) if search else None
    jobs = load_jobs(directory, storage)
    shared = _finished(jobs, proxy) & _finished(jobs, whole)
    if not shared:
        raise ValueError(f"no candidate has finished on both {proxy!r} and {whole!r}; run `nasprune search "
                         f"--experiment {directory}` first")
    used = [d for d in names if shared <= _finished(jobs, d)]
    if not used:
        raise ValueError(f"none of the {len(names)} random draws has finished every candidate; run `nasprune search "
                         f"--experiment {directory}` to finish them")
    null = random_null(jobs, used, [proxy], whole, n_boot=n_boot, seed=seed)
    values = draw_metrics(jobs, used, whole)
    ceiling = noise_ceiling(jobs[jobs["candidate"].isin(shared)], whole, n_boot=n_boot, seed=seed)
    images = jobs.loc[jobs["training_set"] == proxy, "images"].dropna()
    result = RandomComparison(proxy=proxy, whole=whole, draws=used, null=null, draw_values=values, ceiling=ceiling,
                              images=int(images.iloc[0]) if len(images) else 0, search=summary)
    if plot:
        result.plot = plot_random_null(values, null, directory / PLOT_FILE, ceiling=ceiling,
                                       title=experiment_name(directory))
    return result


def _finished(jobs: pd.DataFrame, training_set: str) -> set[str]:
    """Candidates with a finished job (validation accuracy) on the training set."""
    return set(candidate_means(jobs, training_set)["val_acc"].dropna().index)
