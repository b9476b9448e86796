"""`nasprune run`: the whole pipeline from one config, resumable stage by stage."""

import pandas as pd
import pytest
import yaml

from nasprune.cli import main as cli_main
from nasprune.config import from_mapping
from nasprune.proxies import ProxySet
from nasprune.search import load_jobs
from nasprune.workflows import CandidateDraw, PipelineConfig, run_pipeline

TINY = {
    "name": "tiny",
    "dataset": {"name": "synthetic"},
    "scoring": {"spec": "w8-d1-relu-batchnorm-avgpooling", "bottleneck": 8, "score_epoch": 1,
                "train": {"epochs": 2, "lr": 0.05}},
    "proxies": {"per_class": 10, "influence": {"l2": 1e-3}, "objective": {"time_limit": 2},
                "sets": [{"name": "random-s0", "method": "random", "seed": 0},
                         {"name": "ours", "method": "influence", "objective": {"target": "scaled"}}]},
    "search": {"candidates": ["w8-d1-relu-none-avgpooling", "w8-d1-sigmoid-batchnorm-maxpooling",
                              "w8-d1-leakyrelu-instancenorm-none"],
               "seeds": [0], "workers": 0, "proxy_train": {"epochs": 2, "lr": 0.05},
               "whole_train": {"epochs": 1, "lr": 0.05}},
}


def _write(tmp_path, doc, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_resumes_without_redoing_them(tmp_path):
    config = PipelineConfig.load(_write(tmp_path, TINY))
    out = tmp_path / "run"
    logs: list[str] = []
    paths = run_pipeline(config, out, progress=False, log=logs.append).report
    jobs = pd.read_csv(paths["jobs.csv"])
    assert len(jobs) == 3 * 3  # (whole + 2 proxies) x 3 candidates x 1 seed
    table = pd.read_csv(paths["table1.csv"])
    assert list(table.training_set) == ["random-s0", "ours", "whole"]
    ours = ProxySet.load(out / "proxies" / "ours.json")
    assert ours.config["objective"]["target"] == "scaled" and ours.config["influence"]["l2"] == 1e-3
    assert len(ours) == 40 and ours.stats["scoring_seconds"] > 0
    # second run: every artifact exists, so no scoring, no new proxies, no new jobs
    logs.clear()
    run_pipeline(config, out, progress=False, log=logs.append)
    assert any("not needed, every proxy file exists" in line for line in logs)
    assert len(pd.read_csv(paths["jobs.csv"])) == 9
    # a file written before ObjectiveConfig (its settings under influence, without epsilon, which came later;
    # hessian as method) means the same settings: reused
    old = {**ours.config["influence"], **ours.config.pop("objective")}
    old["method"] = old.pop("hessian")
    old.pop("epsilon")
    ours.config["influence"] = old
    ours.save(out / "proxies" / "ours.json")
    run_pipeline(config, out, progress=False, log=logs.append)
    assert "objective" not in ProxySet.load(out / "proxies" / "ours.json").config
    # a proxy file built with other settings than the config now asks for is refused, not reused
    changed = {**TINY, "proxies": {**TINY["proxies"], "influence": {"l2": 1e-4}}}
    journal, recorded = (out / "optuna.journal").read_bytes(), (out / "pipeline.yaml").read_text()
    with pytest.raises(ValueError, match=r"ours.json: was built with other settings .*influence\.l2 0\.001 -> 0\.0001"):
        run_pipeline(PipelineConfig.load(_write(tmp_path, changed, "changed.yaml")), out, progress=False,
                     log=logs.append)
    assert (out / "optuna.journal").read_bytes() == journal and (out / "pipeline.yaml").read_text() == recorded


def test_shipped_configs_load_and_cover_every_factor():
    from search_spaces import ConvNetSpec

    for name in ("quick", "quick-schedule", "fmnist-ref", "fmnist-schedule", "paper"):
        config = PipelineConfig.load(name)
        specs = [ConvNetSpec.from_id(c) for c in config.search.candidate_ids()]
        assert {s.act for s in specs} == {"sigmoid", "relu", "leakyrelu"}, name
    assert len(PipelineConfig.load("paper").search.candidate_ids()) == 720
    assert len(PipelineConfig.load("fmnist-ref").search.candidate_ids()) == 36
    for name in ("quick-schedule", "fmnist-schedule"):  # the budget search's default (results/budget-search/)
        schedule = PipelineConfig.load(name).search.schedule
        assert [(r.source, r.eta, r.keep) for r in schedule] == [("zerocost:zico", 3, None), ("random-pc100", None, 1),
                                                                   ("whole", None, None)], name
        # the proxy rung validates on part of the split (results/budget-search/val-subset/), the whole set on all
        search = PipelineConfig.load(name).search
        assert search.proxy_train.val_images == 2000 and search.whole_train.val_images is None, name
    # fmnist-schedule searches the pool whose ground truth is in results/proxy-benchmark-ref/
    assert PipelineConfig.load("fmnist-schedule").search.candidate_ids() == \
        PipelineConfig.load("fmnist-ref").search.candidate_ids()


def test_reference_candidates_are_disjoint_from_the_development_set(repo):
    dev = PipelineConfig.load(repo / "results/objective-study/config.yaml").search.candidate_ids()
    ref = PipelineConfig.load("fmnist-ref").search.candidate_ids()
    assert len(dev) == 16 and not set(dev) & set(ref)


def test_excluded_candidates_are_never_drawn():
    grid = {"grid": {"widths": [8]}, "count": 12, "seed": 0}
    drawn = from_mapping(CandidateDraw, grid).ids()
    again = from_mapping(CandidateDraw, {**grid, "exclude": drawn[:5]}).ids()
    assert len(again) == 12 and not set(again) & set(drawn[:5])


@pytest.mark.parametrize("change,match", [
    ({"proxies": {"methods": ["magic"]}}, "unknown method 'magic'"),
    ({"search": {"candidates": ["w8-d9-relu-none-none-x"]}}, "unknown candidate id"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"search": {"candidates": {"grid": {"widths": [8]}, "exclude": ["w8-d1-relu"]}}}, "cannot parse ConvNet id"),
    ({"proxies": {"sets": [{"name": "whole", "method": "random"}]}},
     r"proxies\.sets\[0\]\.name: 'whole' is the whole training set's name; give the proxy another"),
    ({"proxies": {"objective": {"target": "best"}}}, "unknown target 'best'"),
    ({"search": {"proxy_seeds": [0, 0]}}, r"search\.proxy_seeds: must be distinct"),
    ({"search": {"first": ["whole", "ours", "random"]}}, r"search\.first\[2\]: no training set 'random'.*random-s0"),
])
def test_bad_configs_are_refused_before_anything_runs(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        PipelineConfig.load(_write(tmp_path, {**TINY, **change}))


def test_cli_run_unknown_config_is_a_clear_error(capsys):
    assert cli_main(["run", "no-such-config"]) == 2
    assert "shipped configs: fmnist-ref, fmnist-schedule, paper, quick, quick-schedule" in capsys.readouterr().err


def test_random_proxies_need_no_scoring_run(tmp_path):
    doc = {**TINY, "proxies": {"per_class": 10, "sets": [{"name": "r0", "method": "random", "seed": 0},
                                                         {"name": "r1", "method": "random", "seed": 1}]},
           "search": {**TINY["search"], "candidates": TINY["search"]["candidates"][:1]}}
    logs: list[str] = []
    result = run_pipeline(PipelineConfig.load(_write(tmp_path, doc)), tmp_path / "run", progress=False,
                          log=logs.append, report=False)
    assert not (tmp_path / "run" / "scoring.pt").exists()
    assert any("scoring run: not needed by random" in line for line in logs), logs
    r0, r1 = (ProxySet.load(tmp_path / "run" / "proxies" / f"{n}.json") for n in ("r0", "r1"))
    assert len(r0) == len(r1) == 40 and list(r0.indices) != list(r1.indices)
    assert result.summary["complete"] == 3 and result.summary["failed"] == 0


def test_size_sweep_with_random_draws_and_per_set_seeds(tmp_path):
    """A proxy entry sets its own size, epochs, batch size and lr; ``draws`` expands into seeded draws; proxies
    train with ``search.proxy_seeds`` while the whole set keeps ``search.seeds``, and an entry's ``train_seeds``
    its own."""
    doc = {**TINY, "proxies": {"per_class": 10, "seed": 5, "sets": [
               {"name": "r", "method": "random", "draws": 3},
               {"name": "small", "method": "random", "per_class": 2, "epochs": 4, "batch_size": 3, "lr": 0.2,
                "train_seeds": [3]}]},
           "search": {**TINY["search"], "candidates": TINY["search"]["candidates"][:2], "seeds": [0, 1],
                      "proxy_seeds": [1], "first": ["small", "r-d1", "whole", "r"]}}
    config = PipelineConfig.load(_write(tmp_path, doc))
    exp = config.experiment()
    assert list(exp.training_sets) == ["whole", "r-d0", "r-d1", "r-d2", "small"]
    assert config.first_sets() == ["small", "r-d1", "whole", "r-d0", "r-d2"]  # 'r': its draws, each once
    assert exp.seeds_of("whole") == [0, 1] and exp.seeds_of("r-d1") == [1] and exp.seeds_of("small") == [3]
    small_train, draw_train = exp.training_sets["small"].train, exp.training_sets["r-d0"].train
    assert (small_train.epochs, small_train.batch_size, small_train.lr) == (4, 3, 0.2)
    proxy_train = config.search.proxy_train
    assert (draw_train.epochs, draw_train.batch_size, draw_train.lr) == (2, proxy_train.batch_size, proxy_train.lr)
    assert small_train.momentum == proxy_train.momentum  # the rest is search.proxy_train's
    result = run_pipeline(config, tmp_path / "run", progress=False, log=lambda *_: None, report=False)
    assert (result.summary["total"], result.summary["complete"]) == (2 * 2 + 4 * 2, 12)
    draws = [ProxySet.load(tmp_path / "run" / "proxies" / f"r-d{k}.json") for k in range(3)]
    assert [d.config["seed"] for d in draws] == [5, 6, 7] and len({tuple(d.indices) for d in draws}) == 3
    small = ProxySet.load(tmp_path / "run" / "proxies" / "small.json")
    assert len(small) == 2 * 4 and small.config["per_class"] == 2
    jobs = load_jobs(tmp_path / "run")
    assert sorted(jobs.loc[jobs.training_set == "whole", "seed"].unique()) == [0, 1]
    assert set(jobs.loc[jobs.training_set.str.startswith("r-"), "seed"]) == {1}
    assert set(jobs.loc[jobs.training_set == "small", "seed"]) == {3}
    assert set(jobs.loc[jobs.training_set == "small", "epochs"]) == {4}
    # search.first: 'small', one draw, then both seeds of the whole set, then the other draws
    order = jobs.sort_values("started")[["training_set", "seed"]].drop_duplicates().itertuples(index=False)
    assert [tuple(o) for o in order] == [("small", 3), ("r-d1", 1), ("whole", 0), ("whole", 1), ("r-d0", 1),
                                         ("r-d2", 1)]


@pytest.mark.parametrize("entry, message", [
    ({"name": "h", "method": "herding", "draws": 3}, r"sets\[0\]\.draws: method .herding. is deterministic"),
    ({"name": "r", "method": "random", "per_class": 0}, "per_class: must be an int >= 1"),
    ({"name": "r", "method": "random", "epochs": "ten"}, "epochs: expected"),
    ({"name": "r", "method": "random", "batch_size": 0}, "batch_size: must be an int >= 1"),
    ({"name": "r", "method": "random", "lr": 0}, r"sets\[0\]\.lr: must be a finite number > 0"),
    ({"name": "r", "method": "random", "lr": float("inf")}, "lr: must be a finite number > 0"),
    ({"name": "r", "method": "random", "lr": "fast"}, "lr: expected a number"),
    ({"name": "r", "method": "random", "train_seeds": [2, 2]}, r"sets\[0\]\.train_seeds: must be distinct"),
])
def test_bad_proxy_entries_are_refused(tmp_path, entry, message):
    doc = {**TINY, "proxies": {"per_class": 10, "sets": [entry]}}
    with pytest.raises(ValueError, match=message):
        PipelineConfig.load(_write(tmp_path, doc))


def test_a_proxy_entry_can_select_with_its_own_scoring_run(tmp_path):
    """``scoring`` on a proxy entry changes the settings of the run it selects from (a cheaper pruning network):
    that run is trained once into its own file, the proxy records it, and a changed setting is refused."""
    cheap = {"name": "cheap", "method": "herding", "scoring": {"train": {"epochs": 1}}}
    doc = {**TINY, "proxies": {**TINY["proxies"], "sets": [{"name": "full", "method": "herding"}, cheap]},
           "search": {**TINY["search"], "candidates": TINY["search"]["candidates"][:1]}}
    config = PipelineConfig.load(_write(tmp_path, doc))
    (full_cfg, full_file), (cheap_cfg, cheap_file) = (config.scoring_of(s) for s in config.proxies.resolved())
    assert full_file == "scoring.pt" and cheap_file.startswith("scoring-") and cheap_file != full_file
    assert cheap_cfg.train.epochs == 1 and cheap_cfg.train.lr == full_cfg.train.lr == 0.05  # the rest is kept
    out = tmp_path / "run"
    run_pipeline(config, out, progress=False, log=lambda *_: None, report=False)
    assert (out / "scoring.pt").exists() and (out / cheap_file).exists()
    built = {n: ProxySet.load(out / "proxies" / f"{n}.json") for n in ("full", "cheap")}
    assert built["cheap"].config["scoring"]["train"]["epochs"] == 1
    assert built["full"].config["scoring"]["train"]["epochs"] == 2
    assert list(built["cheap"].indices) != list(built["full"].indices)
    changed = {**doc, "proxies": {**doc["proxies"], "sets": [doc["proxies"]["sets"][0],
                                                             {**cheap, "scoring": {"train": {"epochs": 2}}}]}}
    with pytest.raises(ValueError, match=r"cheap.json: was built with other settings .*scoring\.train\.epochs 1 -> 2"):
        run_pipeline(PipelineConfig.load(_write(tmp_path, changed, "changed.yaml")), out, progress=False,
                     log=lambda *_: None, report=False)
    # the flat scoring form of earlier versions means the same run in an override too
    with pytest.warns(FutureWarning, match="epochs is deprecated"):
        flat = {**cheap, "scoring": {"epochs": 1}}
        old = PipelineConfig.load(_write(tmp_path, {**doc, "proxies": {**doc["proxies"], "sets": [
            doc["proxies"]["sets"][0], flat]}}, "flat.yaml"))
        assert old.scoring_of(old.proxies.resolved()[1]) == (cheap_cfg, cheap_file)
    with pytest.raises(ValueError, match=r"proxies\.sets\[1\]\.scoring\.train\.epoch: unknown key"):
        PipelineConfig.load(_write(tmp_path, {**doc, "proxies": {**doc["proxies"], "sets": [
            doc["proxies"]["sets"][0], {**cheap, "scoring": {"train": {"epoch": 2}}}]}}, "typo.yaml"))


@pytest.mark.parametrize("config, directory", [("results/objective-study/config.yaml", "results/objective-study"),
                                               ("fmnist-ref", "results/fmnist-ref")])
def test_committed_proxy_files_are_still_reused_by_their_configs(config, directory, repo):
    """Proxy files written by earlier versions (influence settings in one section, a flat scoring config) match
    what their configs ask today, so rerunning a results script reuses them instead of refusing them."""
    from nasprune.proxies import InfluenceConfig, ObjectiveConfig, check_reuse, proxy_settings

    config = PipelineConfig.load(repo / config if config.endswith(".yaml") else config)
    for s in config.proxies.resolved():
        path = repo / directory / "proxies" / f"{s.name}.json"
        asked = proxy_settings(s.method, s.per_class, s.seed, InfluenceConfig(**s.influence),
                               ObjectiveConfig(**s.objective), config.scoring_of(s)[0])
        check_reuse(ProxySet.load(path), asked, path)  # raises on any difference
        with pytest.raises(ValueError, match=f"seed {s.seed} -> 7"):
            check_reuse(ProxySet.load(path), {**asked, "seed": 7}, path)
