"""The whole pipeline from one config file: scoring run, proxies, search on every set, report.

Each stage writes its artifact into the run directory and is skipped when that artifact already
exists, so a killed ``nasprune run`` picks up where it stopped:

    DIR/scoring.pt             the scoring run (one training of the pruning network)
    DIR/proxies/<method>.json  one ProxySet per method
    DIR/experiment.json        the search (runner), its Optuna journal, then the report files
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nasprune.data import load_dataset
from nasprune.prune import METHODS, InfluenceConfig, build_proxy
from nasprune.proxy import ProxySet
from nasprune.report import write_report
from nasprune.runner import Experiment, run_search
from nasprune.scoring import ScoringConfig, ScoringRun, run_scoring
from search_spaces import convnet_720, stratified_subset
from search_spaces.convnet import ConvNetSpec

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class PipelineConfig:
    """One ``nasprune run`` config (YAML). See ``nasprune/configs/quick.yaml`` for a commented example."""

    name: str
    dataset: dict
    scoring: dict = field(default_factory=dict)
    proxies: dict = field(default_factory=dict)  # per_class, seed, influence, and methods or sets
    search: dict = field(default_factory=dict)  # candidates, seeds, workers, max_retries, proxy_train, whole_train

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> "PipelineConfig":
        """A shipped config by name (``quick``, ``paper``, ...) or a YAML file."""
        path = Path(name_or_path)
        if not path.is_file():
            shipped = CONFIG_DIR / f"{name_or_path}.yaml"
            if not shipped.is_file():
                known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
                raise FileNotFoundError(f"no config file {name_or_path!r}; shipped configs: {known}")
            path = shipped
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        unknown = set(doc) - {"name", "dataset", "scoring", "proxies", "search"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        config = cls(**doc)
        config.check()
        return config

    def check(self) -> None:
        """Refuse a bad config before anything runs."""
        ScoringConfig(**self.scoring)
        for s in self.proxy_sets():
            if s["method"] not in METHODS:
                raise ValueError(f"unknown proxy method {s['method']!r}; choose from {', '.join(METHODS)}")
            InfluenceConfig(**s["influence"])
        self.experiment(Path("."))  # validates candidates, seeds and training configs

    def proxy_sets(self) -> list[dict]:
        """Every proxy to build, as {name, method, seed, influence}.

        ``proxies.methods: [random, influence]`` is short for one set per method named after it;
        ``proxies.sets`` lists them explicitly, e.g. ``{name: ours-l2-1e-5, method: influence,
        influence: {l2: 1.0e-5}}``, so one run compares several seeds or influence settings.
        """
        base_influence = dict(self.proxies.get("influence", {}))
        seed = int(self.proxies.get("seed", 0))
        sets = self.proxies.get("sets") or [
            {"name": m, "method": m} for m in self.proxies.get("methods", ["random", "herding", "forgetting",
                                                                          "influence"])]
        out = [{"name": s["name"], "method": s["method"], "seed": int(s.get("seed", seed)),
                "influence": {**base_influence, **s.get("influence", {})}} for s in sets]
        names = [s["name"] for s in out]
        if len(set(names)) != len(names) or "whole" in names:
            raise ValueError(f"proxy set names must be distinct and not 'whole', got {names}")
        return out

    def candidates(self) -> list[str]:
        spec = self.search.get("candidates", {})
        if isinstance(spec, list):
            return list(spec)
        grid = convnet_720(**{k: tuple(v) for k, v in spec.get("grid", {}).items()})
        if spec.get("exclude"):  # e.g. a development set's ids, kept apart from a reference experiment
            excluded = {ConvNetSpec.from_id(c).id for c in spec["exclude"]}  # an unknown id raises SpecError
            grid = [g for g in grid if g.id not in excluded]
        count = spec.get("count")
        chosen = grid if count is None else stratified_subset(grid, int(count), seed=int(spec.get("seed", 0)))
        return [s.id for s in chosen]

    def experiment(self, directory: Path) -> Experiment:
        # the whole set first: no proxy can be scored before it, so a partial run is still informative
        sets: dict[str, dict[str, Any]] = {"whole": {"proxy": None, "train": dict(self.search.get("whole_train", {}))}}
        for s in self.proxy_sets():
            sets[s["name"]] = {"proxy": f"proxies/{s['name']}.json", "train": dict(self.search.get("proxy_train", {}))}
        return Experiment(
            name=self.name,
            dataset={k: self.dataset.get(k) for k in ("name", "root", "val_size", "seed", "train_size")
                     if k in self.dataset},
            candidates=self.candidates(),
            training_sets=sets,
            seeds=list(self.search.get("seeds", [0])),
            max_retries=int(self.search.get("max_retries", 2)),
            storage=self.search.get("storage"),
        )


def run_pipeline(config: PipelineConfig, directory: str | os.PathLike, *, workers: int | None = None,
                 storage: str | None = None, progress: bool = True, report: bool = True, log=print) -> dict:
    """Run every stage whose artifact is missing; return the report's paths (none when ``report`` is False)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ds = config.dataset
    dataset = load_dataset(ds["name"], root=ds.get("root"), download=bool(ds.get("download", False)),
                           val_size=ds.get("val_size"), seed=int(ds.get("seed", 0)), train_size=ds.get("train_size"))
    scoring_path = directory / "scoring.pt"
    proxy_paths = {s["name"]: directory / "proxies" / f"{s['name']}.json" for s in config.proxy_sets()}
    run = None
    if all(p.exists() for p in proxy_paths.values()):
        log("[1/4] scoring run: not needed, every proxy file exists")
    elif scoring_path.exists():
        run = ScoringRun.load(scoring_path, dataset)
        log(f"[1/4] scoring run: reusing {scoring_path}")
    else:
        scoring = ScoringConfig(**config.scoring)
        log(f"[1/4] scoring run: {scoring.spec}, {scoring.epochs} epochs on {len(dataset.train_y)} images")
        run = run_scoring(dataset, scoring, progress=progress)
        run.save(scoring_path)
    if run is not None:
        log(f"      pruning network val acc {run.val_acc:.1f}%, {sum(run.seconds.values()):.0f}s")
    per_class = config.proxies.get("per_class", 100)
    for s in config.proxy_sets():
        path = proxy_paths[s["name"]]
        if path.exists():
            proxy = ProxySet.load(path, dataset)
            _check_proxy_config(proxy, s, per_class, path)
        else:
            proxy = build_proxy(dataset, run, s["method"], per_class, seed=s["seed"],
                                influence=InfluenceConfig(**s["influence"]))
            proxy.save(path)
        log(f"[2/4] proxy {s['name']:24s} {len(proxy):6d} images, pruning-net acc on kept "
            f"{proxy.stats['pruning_net_acc_on_kept']:.1f}%")
    exp = config.experiment(directory)
    exp.save(directory)
    (directory / "pipeline.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
    workers = int(workers if workers is not None else config.search.get("workers", 1))
    log(f"[3/4] search: {len(exp.candidates)} candidates x {len(exp.training_sets)} training sets x "
        f"{len(exp.seeds)} seeds, {workers} worker(s)")
    run_search(directory, workers=workers, storage=storage or exp.storage, progress=progress)
    if not report:
        return {}
    paths = write_report(directory, storage=storage or exp.storage)
    log(f"[4/4] report: {', '.join(str(p) for p in paths.values())}")
    return paths


def _check_proxy_config(proxy: ProxySet, s: dict, per_class, path: Path) -> None:
    """Refuse to reuse a proxy file built with other settings than the config asks for."""
    asked = {"method": s["method"], "per_class": per_class, "seed": s["seed"]}
    if s["method"] in ("influence", "influence_score"):
        asked["influence"] = asdict(InfluenceConfig(**s["influence"]))
    built = {k: proxy.config.get(k) for k in asked}
    if isinstance(built.get("influence"), dict):  # fields added to InfluenceConfig since: their defaults
        built["influence"] = asdict(InfluenceConfig(**built["influence"]))
    if built != asked:
        changed = {k: (built[k], asked[k]) for k in asked if built[k] != asked[k]}
        raise ValueError(f"{path} was built with other settings than the config asks for "
                         f"(setting: (built, asked)) {changed}; delete the file to rebuild it")
