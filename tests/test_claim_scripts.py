"""The scripts behind results/theorem1, results/efficiency and results/cross-arch, on tiny real runs: a claim grid
is an experiment run by the runner, on proxies built at a keep rate, normalised with the dataset's statistics."""

import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

import _pruning_rates as pr  # noqa: E402
import claim_cross_arch  # noqa: E402
import claim_efficiency  # noqa: E402
import claim_theorem1  # noqa: E402

from nasprune.artifacts import ArtifactError  # noqa: E402
from nasprune.data import DatasetSpec, stratified_split  # noqa: E402
from nasprune.jobs import load_jobs  # noqa: E402
from nasprune.pipeline import PipelineConfig, run_pipeline  # noqa: E402
from nasprune.prune import build_proxy  # noqa: E402
from nasprune.proxy import ProxySet  # noqa: E402
from nasprune.scoring import ScoringConfig, ScoringRun  # noqa: E402
from nasprune.train import TrainConfig, train  # noqa: E402
from search_spaces import build_convnet  # noqa: E402

NET = "w8-d1-relu-none-avgpooling"
TINY = pr.Grid(name="tiny", methods=("random", "cardinality", "cardinality-paper", "epsilon"), rates=(0.4,),
               seeds=(0,), specs=(NET,), dataset=DatasetSpec("fashion-mnist", val_size=2000, train_size=1000),
               scoring=ScoringConfig(spec="w8-d2-relu-instancenorm-avgpooling",
                                     train=TrainConfig(epochs=2, batch_size=256)),
               train=TrainConfig(epochs=1))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny nets: one torch thread is faster than two, and much faster on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    jobs = pr.run_grid(TINY, out, workers=0, progress=False)
    return out, jobs, TINY.dataset.load()


def test_claim_grids_are_experiments_of_the_whole_set_and_one_proxy_per_method_and_rate():
    for script in (claim_efficiency, claim_cross_arch):
        exp = script.GRID.experiment()
        assert exp.dataset == DatasetSpec("fashion-mnist", val_size=10_000, seed=0, train_size=10_000)
        names = [f"{m}-{p}" for p in (20, 40, 60) for m in script.GRID.methods]
        assert list(exp.training_sets) == ["whole", *names]
        assert all(t.train == TrainConfig(epochs=5) and t.train.mean is None for t in exp.training_sets.values())
    assert claim_efficiency.GRID.experiment().candidates == ["w16-d3-relu-instancenorm-avgpooling"]
    assert claim_cross_arch.GRID.experiment().candidates == list(claim_cross_arch.SPECS)
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['cardinalty'\]"):
        pr.Grid(name="x", methods=("cardinalty",), rates=(0.2,), seeds=(0,))


def test_every_proxy_prunes_the_asked_fraction(grid):
    out, _, dataset = grid
    n = len(dataset.train_y)
    counts = torch.bincount(dataset.train_y).tolist()
    for name, (method, rate) in TINY.proxies().items():
        proxy = ProxySet.load(out / "proxies" / f"{name}.json", dataset)
        assert len(np.unique(proxy.indices)) == len(proxy)
        if method == "epsilon":  # Eq. 3 prunes what epsilon allows; the bisection lands within 1% of the rate
            assert abs(1 - len(proxy) / n - rate) <= 0.01 and proxy.config["objective"]["epsilon"] > 0
        else:  # per-class quotas: 60% of every class kept
            assert proxy.per_class == {c: round(0.6 * k) for c, k in enumerate(counts)}


def test_the_grid_trains_every_job_once_and_resumes(grid):
    out, jobs, _ = grid
    assert len(jobs) == 5 and set(jobs.training_set) == {"whole", *TINY.proxies()}
    images = jobs.set_index("training_set").images
    assert images.drop("epsilon-40").to_dict() == {"whole": 1000, "random-40": 600, "cardinality-40": 600,
                                                   "cardinality-paper-40": 600}
    assert 590 <= images["epsilon-40"] <= 610  # Eq. 3 at the bisected epsilon: within 1% of the rate
    again = pr.run_grid(TINY, out, workers=0, progress=False)
    key = ["training_set", "candidate", "seed", "completed", "val_acc"]
    pd.testing.assert_frame_equal(jobs[key].sort_values(key).reset_index(drop=True),
                                  again[key].sort_values(key).reset_index(drop=True))  # nothing retrained
    summary = pr.summarise(TINY, again, out)
    assert summary.method.tolist() == ["whole", "random", "cardinality", "cardinality-paper", "epsilon"]
    s = summary.set_index("method")
    assert s.time_fraction["whole"] == 1.0 and s.pruned_fraction["random"] == pytest.approx(0.4)
    assert s.test_acc_drop["random"] == pytest.approx(s.test_acc["whole"] - s.test_acc["random"])
    claim_efficiency.plot(summary, out / "efficiency.png")
    claim_cross_arch.plot(summary, out / "cross_arch.png")
    assert (out / "efficiency.png").read_bytes()[:4] == (out / "cross_arch.png").read_bytes()[:4] == b"\x89PNG"
    lines = pr.readme_lines("claim_efficiency.py", claim_efficiency.__doc__, summary, "t", "efficiency.png")
    assert f"| {NET} | cardinality | 40% | 600 |" in "\n".join(lines)


def test_every_training_set_is_normalised_with_the_datasets_statistics(grid):
    """The job on a pruned set equals train() with the whole dataset's mean/std, not the pruned set's own."""
    out, jobs, dataset = grid
    x, y = ProxySet.load(out / "proxies" / "random-40.json").tensors(dataset)
    job = jobs[jobs.training_set == "random-40"].iloc[0]

    def train_loss(mean, std) -> float:
        torch.manual_seed(0)  # independent of build_convnet(seed=): the global RNG, as before
        model = build_convnet(NET, dataset.in_channels, dataset.image_size, dataset.num_classes)
        return train(model, x, y, TrainConfig(epochs=1, seed=0, mean=mean, std=std)).train_loss

    assert job.train_loss == train_loss(dataset.mean, dataset.std)
    assert job.train_loss != train_loss(None, None)  # the pruned set's own statistics: another run


def test_a_proxy_or_scoring_run_made_with_other_settings_is_refused(grid, tmp_path):
    out, _, dataset = grid
    shutil.copytree(out / "proxies", tmp_path / "proxies")
    build_proxy(dataset, method="random", per_class=10, seed=3).save(tmp_path / "proxies" / "random-40.json")
    with pytest.raises(ArtifactError, match=r"random-40.json: was built with other settings .*per_class 10 -> "
                                            r"\{0: 60, .*\}, seed 3 -> 0"):
        pr.build_proxies(TINY, dataset, None, tmp_path)
    shutil.copy(out / "scoring.pt", tmp_path / "scoring.pt")
    assert pr.scoring_run(TINY, dataset, tmp_path).config["train"]["epochs"] == 2  # reused as it is
    longer = dataclasses.replace(TINY, scoring=dataclasses.replace(
        TINY.scoring, train=dataclasses.replace(TINY.scoring.train, epochs=3)))
    with pytest.raises(ArtifactError, match=r"scoring.pt: a scoring run with other settings .*train.epochs 2 -> 3"):
        pr.scoring_run(longer, dataset, tmp_path)


def test_theorem1_gap_is_measured_against_exact_refits(grid):
    out, _, _ = grid
    run = ScoringRun.load(out / "scoring.pt")
    fit, ev = stratified_split(run.labels, 500, seed=0)
    rows, info = claim_theorem1.gap_curve(run.features[fit], run.labels[fit], run.features[ev], run.labels[ev],
                                          run.weight, run.bias, l2=1e-3, eps_fractions=(0.05, 0.3), random_draws=2)
    assert len(rows) == 2 * 3 and info["n"] == 500
    eq3 = rows[rows.method == "eq3"]
    assert (eq3.bound_paper <= eq3.epsilon * (1 + 1e-9)).all()  # Eq. 3's constraint holds
    assert eq3.pruned.is_monotonic_increasing and eq3.pruned.iloc[-1] > 0
    # the first-order prediction tracks the exact refit's parameter change (here up to half of n is pruned,
    # so only roughly: within a factor of 2, and strongly correlated)
    ratio = rows.measured_change / rows.predicted_change
    assert ratio.between(0.5, 2).all() and np.corrcoef(rows.measured_change, rows.predicted_change)[0, 1] > 0.9


def test_reference_table_replaces_only_its_block_in_the_readme(tmp_path):
    import reference_experiment as ref

    (tmp_path / "table1.md").write_text("# Table 1\n\n| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ref.BEGIN}\nstale table\n{ref.END}\noutro\n")
    ref.embed_table(readme, tmp_path)
    text = readme.read_text()
    assert "stale table" not in text and "| 1 |" in text and "table1.png" in text
    assert text.startswith("intro\n") and text.endswith("\noutro\n")
    ref.embed_table(readme, tmp_path)  # idempotent
    assert readme.read_text() == text
    readme.write_text("no markers\n")  # a README without the block is left alone
    ref.embed_table(readme, tmp_path)
    assert readme.read_text() == "no markers\n"


def test_proxy_benchmark_runs_a_tiny_sweep_and_writes_its_readme(tmp_path, monkeypatch):
    """scripts/proxy_benchmark.py on real Fashion-MNIST: two sizes, one method and three random draws each, the
    whole set with per-epoch validation and two seeds; the write-up holds the settling table, the ceiling, the
    per-size tables, the rule's decision and the plot."""
    import yaml

    import proxy_benchmark

    config = {"name": "tiny-bench", "dataset": {"name": "fashion-mnist", "val_size": 2000, "train_size": 1000},
              "scoring": {"spec": "w8-d2-relu-instancenorm-avgpooling", "score_epoch": 1, "train": {"epochs": 2}},
              "proxies": {"sets": [
                  {"name": f"{m}-pc{n}", "method": m, "per_class": n, "epochs": e, **({"draws": 3} if m == "random"
                                                                                     else {})}
                  for n, e in ((2, 4), (5, 2)) for m in ("herding", "random")] + [
                  {"name": "herding-pc5-cheap", "method": "herding", "per_class": 5, "epochs": 2,
                   "scoring": {"train": {"epochs": 1}}},
                  # every image of the 1,000-image split: the whole set trained one epoch, not a random draw
                  {"name": "whole-1epoch", "method": "random", "per_class": 100, "epochs": 1}]},
              "search": {"candidates": [NET, "w8-d1-sigmoid-none-avgpooling", "w8-d2-relu-batchnorm-maxpooling"],
                         "seeds": [0, 1], "proxy_seeds": [0], "workers": 0,
                         "whole_train": {"epochs": 2, "eval_every": 1}, "proxy_train": {"eval_test": False}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setattr(sys, "argv", ["proxy_benchmark.py", "--config", str(path), "--n-boot", "20"])
    proxy_benchmark.main()
    sweep = pd.read_csv(tmp_path / "sweep.csv")
    assert sorted(sweep["per_class"].unique()) == [2, 5] and set(sweep.groupby("per_class")["draws"].max()) == {3}
    assert set(sweep["proxy"]) == {"herding-pc2", "herding-pc5", "herding-pc5-cheap"}
    defaults = pd.read_csv(tmp_path / "defaults.csv")  # the other network's proxy is judged by its own rule only
    assert list(defaults["per_class"]) == [2, 5] and set(defaults["default"]) <= {"random", "herding-pc2", "herding-pc5"}
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(history) == 3 * 2 * 2  # candidates x seeds x epochs, the whole set only
    readme = (tmp_path / "README.md").read_text()
    assert "36 of 36 jobs finished" in readme and "**Noise ceiling** over 3 candidates" in readme
    assert "## The pruning network (PLAN.md)" in readme and "## Cost" in readme
    assert "| no scoring run (random) | 6 |" in readme  # the 6 draws; the whole set trained otherwise is no proxy
    # the whole set at one epoch is placed among both sizes' draws, and is no size of its own
    variants = pd.read_csv(tmp_path / "whole_variants.csv")
    assert set(variants["proxy"]) == {"whole-1epoch"} and sorted(variants["per_class"].unique()) == [2, 5]
    assert "## The whole set at other budgets" in readme and "whole-1epoch 8." in readme  # 1,000 images, 1 epoch
    assert "### Against the random draws at 5 images per class (3 candidates)" in readme
    assert "| 100 | 8 |" not in readme  # random's spread has no row of 100 per class (8 steps)
    assert set(variants.loc[variants["metric"] == "kendall_all", "draws"]) == {3}
    assert "### 2 images per class (3 candidates)" in readme and "## The decision rule applied" in readme
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    assert "## Random as a distribution" in readme and "| ceiling |" in readme
    # SGD steps, counted as ceil(images / 128) batches an epoch: the whole set's 1,000 images make 8 an epoch;
    # 20 images x 4 epochs and 50 images x 2 epochs are one batch an epoch
    assert "| 1 | 8 | 3 |" in readme and "| 2 | 16 | 3 |" in readme  # ground truth: epoch, steps, candidates
    assert "| 2 | 4 | 3 |" in readme and "| 5 | 2 | 3 |" in readme and "| ceiling | 16 |" in readme  # size, steps
    jobs = pd.read_csv(tmp_path / "jobs.csv")  # the paper-scale paragraph names this pool's candidate count
    paper = "\n".join(proxy_benchmark.paper_scale_lines(jobs, classes=10, per_class=5))
    assert "instead of this pool's 3 " in paper and "| herding-pc5 | 1 |" in paper

    # the same jobs read as a held-out pool: another pool's defaults are confirmed or not, none chosen here
    chosen = tmp_path / "dev" / "defaults.csv"
    chosen.parent.mkdir()
    pd.DataFrame({"per_class": [2, 5], "default": ["herding-pc2", "random"],
                  "method": ["herding", "random"]}).to_csv(chosen, index=False)
    monkeypatch.setattr(sys, "argv", ["proxy_benchmark.py", "--config", str(path), "--n-boot", "20", "--analyse",
                                      "--confirm", str(chosen)])
    proxy_benchmark.main()
    confirmation = pd.read_csv(tmp_path / "confirmation.csv")
    assert list(confirmation["proxy"]) == ["herding-pc2"]
    row = sweep[sweep.proxy == "herding-pc2"].set_index("metric")  # the rule, read off sweep.csv independently
    expected = (min(row.loc["kendall_all", "percentile"], row.loc["ndcg_top1", "percentile"]) >= 95
                and row.loc["regret", "value"] <= 0.5)
    assert bool(confirmation["confirmed"].iloc[0]) == expected
    assert confirmation["provisional"].iloc[0] and confirmation["candidates"].iloc[0] == 3  # 3 draws, not 20
    readme = (tmp_path / "README.md").read_text()
    assert "## Confirmation (held-out pool)" in readme and "## The decision rule applied" not in readme
    assert "[dev/defaults.csv](dev/defaults.csv)" in readme and "[PLAN.md](dev/PLAN.md)" in readme
    monkeypatch.setattr(sys, "argv", ["proxy_benchmark.py", "--config", str(path), "--confirm", "missing.csv"])
    with pytest.raises(SystemExit):  # a wrong path is refused before anything runs
        proxy_benchmark.main()

    # the project README's table from these files (scripts/recommendation.py): the development pool's default is
    # not used while a held-out verdict is provisional or missing, and only the marked block is rewritten
    import recommendation

    (tmp_path / "sweep.csv").rename(chosen.parent / "sweep.csv")
    (tmp_path / "not-yet").mkdir()
    target = tmp_path / "R.md"
    target.write_text("intro\n<!-- begin recommendation -->\nold\n<!-- end recommendation -->\nend\n")
    argv = ["recommendation.py", "--development", str(chosen.parent), "--held-out", str(tmp_path),
            str(tmp_path / "not-yet"), "--readme", str(target)]
    monkeypatch.setattr(sys, "argv", argv + ["--check"])
    with pytest.raises(SystemExit, match="out of date"):
        recommendation.main()
    monkeypatch.setattr(sys, "argv", argv)
    recommendation.main()
    text = target.read_text()
    assert text.startswith("intro\n<!-- begin recommendation -->\n")
    assert text.endswith("<!-- end recommendation -->\nend\n")
    rows = {line.split(" | ")[0]: line.split(" | ") for line in text.splitlines() if line.startswith("| 2 |")
            or line.startswith("| 5 |")}
    assert rows["| 2"][1] == "random (herding-pc2 pending confirmation)"
    assert rows["| 2"][3].startswith("under way: Kendall") and rows["| 2"][3].endswith(", 3 draws")  # 3 of 20
    assert rows["| 2"][4] == "not run |" and rows["| 5"][1] == "random" and rows["| 5"][3] == "nothing to confirm"
    monkeypatch.setattr(sys, "argv", argv + ["--check"])
    recommendation.main()  # up to date now: no SystemExit
    (tmp_path / "confirmation.csv").write_text("per_class,proxy\n2,herding-pc2\n")
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="missing column"):
        recommendation.main()


def test_the_readme_recommendation_table_is_the_one_the_results_give(monkeypatch):
    """README.md's table is written by scripts/recommendation.py from results/proxy-benchmark*/; a hand edit,
    or a results folder regenerated without rewriting the table, fails here."""
    import recommendation

    monkeypatch.setattr(sys, "argv", ["recommendation.py", "--check"])
    recommendation.main()


def test_competitive_pool_screen_leaves_out_the_pools_already_spent(monkeypatch):
    """scripts/competitive_pool.py screens the strong corner of the grid minus the development pool and fmnist-ref's
    candidates (the held-out pool must be new), trained like the benchmark's proxies."""
    import competitive_pool

    monkeypatch.chdir(Path(__file__).parents[1])
    exp = competitive_pool.screen_experiment()
    spent = {c for d in competitive_pool.USED for c in competitive_pool.Experiment.load(d).candidates}
    grid = {s.id for s in competitive_pool.convnet_720(**competitive_pool.GRID)}
    assert len(grid) == 64 and set(exp.candidates) == grid - spent and len(exp.candidates) == 59
    assert exp.training_sets["screen"].train.epochs == 50 and exp.seeds == [0]


def test_budget_study_reuses_the_ground_truth_and_applies_its_rules(tmp_path, monkeypatch):
    """scripts/budget_study.py on a tiny development pool (real Fashion-MNIST): the whole set's jobs are copied,
    not trained again; the draws are paired with themselves at the other budget; the verdicts read the numbers
    the tables hold, checked here against scipy."""
    import yaml
    from scipy import stats

    import budget_study

    from nasprune.benchmark import costs

    candidates = [NET, "w8-d1-sigmoid-none-avgpooling", "w8-d2-relu-batchnorm-maxpooling"]
    base = {"name": "tiny-dev", "dataset": {"name": "fashion-mnist", "val_size": 2000, "train_size": 1000},
            "scoring": {"spec": "w8-d2-relu-instancenorm-avgpooling", "score_epoch": 1, "train": {"epochs": 2}},
            "search": {"candidates": candidates, "seeds": [0, 1], "proxy_seeds": [0], "workers": 0,
                       "whole_train": {"epochs": 2, "eval_every": 1}, "proxy_train": {"eval_test": False}}}
    dev, study = tmp_path / "dev", tmp_path / "study"
    for directory, sets in (
            (dev, [{"name": "random-pc2", "method": "random", "per_class": 2, "epochs": 2, "draws": 3},
                   {"name": "herding-pc2", "method": "herding", "per_class": 2, "epochs": 2}]),
            (study, [{"name": "whole-1epoch-s2", "method": "random", "per_class": 100, "epochs": 1,
                      "train_seeds": [2]},
                     {"name": "whole-1epoch-s0", "method": "random", "per_class": 100, "epochs": 1},
                     {"name": "whole-3epoch-s2", "method": "random", "per_class": 100, "epochs": 3,
                      "train_seeds": [2]},
                     {"name": "random-pc2-e6", "method": "random", "per_class": 2, "epochs": 6, "draws": 3},
                     {"name": "random-pc2-b4", "method": "random", "per_class": 2, "epochs": 1, "batch_size": 4,
                      "draws": 3},
                     {"name": "random-pc2-lr3", "method": "random", "per_class": 2, "epochs": 2, "lr": 0.03,
                      "draws": 3},
                     {"name": "herding-pc2-e6", "method": "herding", "per_class": 2, "epochs": 6}])):
        directory.mkdir()
        (directory / "config.yaml").write_text(yaml.safe_dump({**base, "proxies": {"sets": sets}}))
    monkeypatch.setattr(sys, "argv", ["budget_study.py", "--n-boot", "20"])
    run_pipeline(PipelineConfig.load(dev / "config.yaml"), dev, progress=False, report=False, log=lambda *_: None)
    monkeypatch.setitem(budget_study.STUDIES, "dev", budget_study.Study(
        study, dev, "tiny pool", draws_1200=3, draws_400=3,
        against_400=("whole-1epoch-s2", "whole-1epoch-s0", "herding-pc2"),
        against_1200=("whole-3epoch-s2", "herding-pc2-e6"), reused_proxies={"herding-pc2-e6": "herding-pc2"},
        random_400="random-pc2", random_1200="random-pc2-e6",
        variants=(budget_study.Variant("random-pc2-b4", 3, 5, "Cheaper steps within 10%", "5 steps of batch 4"),
                  budget_study.Variant("random-pc2-lr3", 3, 6, "A larger learning rate", "2 steps at lr 0.03"))))
    budget_study.main()
    assert not (study / "scoring.pt").exists()  # the herding proxy was reused, not selected again
    theirs, ours = load_jobs(dev), load_jobs(study)
    whole = ours[ours.training_set == "whole"].sort_values(["seed", "candidate"])
    assert len(whole) == 6 and whole["val_acc"].tolist() == \
        theirs[theirs.training_set == "whole"].sort_values(["seed", "candidate"])["val_acc"].tolist()
    assert set(ours.loc[ours.training_set == "whole-3epoch-s2", "seed"]) == {2}
    truth = whole.groupby("candidate")["val_acc"].mean()
    paired = pd.read_csv(study / "paired.csv")
    jobs = pd.read_csv(study / "jobs.csv")
    for r in paired.itertuples():
        for name, value in ((r.before, r.kendall_all_before), (r.after, r.kendall_all_after)):
            proxy = jobs[jobs.training_set == name].set_index("candidate")["val_acc"].reindex(truth.index)
            assert value == pytest.approx(stats.kendalltau(proxy, truth)[0], nan_ok=True)
    budget = pd.read_csv(study / "budget.csv")
    steps = budget.groupby("proxy")["steps"].first()
    assert steps["whole-3epoch-s2"] == 3 * 8 and steps["herding-pc2-e6"] == 6 and steps["herding-pc2"] == 2
    readme = (study / "README.md").read_text()
    w3 = budget[(budget.proxy == "whole-3epoch-s2") & (budget.metric == "kendall_all")].iloc[0]
    assert f"whole-3epoch-s2 {w3['value']:.3f}" in readme
    assert ("there **is** room" in readme) == (w3["draws_as_good"] == 0)
    h = budget[(budget.proxy == "herding-pc2") & (budget.metric == "kendall_all")].iloc[0]  # a 400-step row
    assert f"400-step 95th percentile of {h['band_hi']:.3f}" in readme  # rule 2's bar: the 400-step draws'
    assert readme.count("\n1. **") == readme.count("\n2. **") == readme.count("\n3. **") == 1
    # the variants: 20 images in batches of 4 for one epoch, or as the 400-step draws at lr 0.03, their own batch
    # size, lr and steps in the table, each paired with the same images at 400 and at 1,200 steps
    assert "| random 100 per class, batch 4, lr 0.01 (3 draws): median [5%, 95%] | 5 |" in readme
    assert "| random 100 per class, batch 128, lr 0.03 (3 draws): median [5%, 95%] | 2 |" in readme
    assert readme.count("\n5. **Cheaper steps within 10%.**") == readme.count("\n6. **A larger learning rate.**") == 1
    cost = costs(jobs)["fraction_of_whole"]
    for prefix in ("random-pc2-b4", "random-pc2-lr3"):
        mine = paired[paired.comparison.str.startswith("400 steps against") & paired.after.str.startswith(prefix)]
        assert list(mine.before) == [f"random-pc2-d{d}" for d in range(3)]
        assert list(mine.after) == [f"{prefix}-d{d}" for d in range(3)]
        label = "5 steps of batch 4" if "b4" in prefix else "2 steps at lr 0.03"
        line = next(x for x in readme.splitlines() if f"The 3 draws at {label} have" in x)
        assert f"median Kendall {mine.kendall_all_after.median():.3f}" in line
        assert f"median change is {mine.kendall_all_change.median():+.3f}" in line
        assert f"median cost is {cost[list(mine.after)].median():.2%}" in line
        assert "**does not** keep the gain" in line  # 3 pairs: p >= 1/8
        row = next(x for x in readme.splitlines() if x.startswith("| random-pc2-d1 |")).split(" | ")
        assert f"{mine.set_index('before').loc['random-pc2-d1', 'kendall_all_after']:.3f}" in row
    assert (study / "budget.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="cannot be paired"):  # different images are refused as a pair
        budget_study.same_images(budget_study.STUDIES["dev"], [("random-pc2-d0", "random-pc2-e6-d1")])


@pytest.mark.parametrize("side", ["below", "above"])
def test_budget_study_rules_flip_at_their_thresholds(side):
    """PLAN.md's rules 1-3 on fixed numbers just either side of each threshold (independent of any run)."""
    import budget_study

    up = side == "above"
    eps = 1e-3 if up else -1e-3
    # the 400-step rows' band_hi (0.9) is not rule 2's bar: that is hi_400, computed from the draws by analyse()
    k = [("whole-1epoch-s2", 0.716 + eps, 0.716, 0.9, 0.0), ("whole-1epoch-s0", 0.77, 0.716, 0.9, 0.0),
         ("whole-3epoch-s2", 0.80, 0.75, 0.87, 0.0 if up else 0.125)]
    table = pd.DataFrame([{"proxy": p, "metric": "kendall_all", "value": v, "band_lo": lo, "band_hi": hi,
                           "draws_as_good": good, "percentile": 50.0, "draws": 8} for p, v, lo, hi, good in k])
    after = [0.80 + eps] * 8  # the median just above or below the 400-step draws' 95th percentile (0.800)
    change = [0.05] * 8 if up else [0.05, -0.05] * 4  # all up: exact one-sided p = 1/256; balanced: p > 0.5
    paired = pd.DataFrame({"kendall_all_after": after, "kendall_all_change": change})
    study = budget_study.STUDIES["dev"]
    jobs = pd.DataFrame({"training_set": study.names_1200})
    text = "\n".join(budget_study.verdicts(study, jobs, table, paired, hi_400=0.800))
    assert ("finding **stands**" in text) == up and ("**withdrawn**" in text) == (not up)
    assert ("steps **help**" in text) == up and ("**do not help**" in text) == (not up)
    assert ("there **is** room" in text) == up and ("there is **no** room" in text) == (not up)


@pytest.mark.parametrize("median, down, cost, failing", [
    (0.58, (), 0.099, ""), (0.58, (), 0.10, ""), (0.58, (2,), 0.099, ""),
    (0.579, (), 0.099, "a"), (0.578, (), 0.099, "a"), (0.58, (), 0.101, "c"), (0.58, (3,), 0.099, "b"),
    (0.58, (1, 2, 3), 0.099, "b"), (0.5, (1, 2, 3), 0.2, "abc")])
def test_budget_study_variant_rule_needs_all_three(median, down, cost, failing):
    """PLAN.md's rule for a variant (batch 32, say): (a) its draws' median above the 400-step bar (0.579; equal
    fails), (b) the paired one-sided p below 0.05 (exact: 6 up 1/64; rank 2 down 3/64; rank 3 down 5/64; ranks
    1-3 down 14/64) and (c) a median cost of at most 10% (equal passes); the verdict names each clause's outcome."""
    import budget_study

    cheap, lr = budget_study.STUDIES["comp"].variants
    assert (cheap.question, lr.question) == (4, 5) and cheap.names[-1] == "random-pc100-b32-d5" and lr.draws == 6
    change = pd.Series([-0.01 * r if r in down else 0.01 * r for r in range(1, 7)])
    paired = pd.DataFrame({"kendall_all_after": [median] * 6, "kendall_all_change": change})
    versus = pd.DataFrame({"kendall_all_change": [-0.02, -0.01, 0.0, 0.01, 0.03, 0.04]})
    text = budget_study.variant_verdict(cheap, paired, versus, cost, hi_400=0.579)
    assert text.startswith("4. **Cheaper steps within 10%.** The 6 draws at 1,216 steps of batch 32 have")
    assert ("**keeps the gain within 10%**" in text) == (not failing) and ("**does not**" in text) == bool(failing)
    for clause in "abc":
        assert f"{clause}: {'fails' if clause in failing else 'passes'})" in text
    p = {(): 1, (2,): 3, (3,): 5, (1, 2, 3): 14}[down] / 64
    assert f"({6 - len(down)} up, {len(down)} down; one-sided p {p:.3f}; b:" in text
    assert "median change is +0.005 (3 up, 2 down" in text  # the descriptive comparison, one tie left out
    assert "Pending: 5 of 6" in budget_study.variant_verdict(lr, paired.iloc[:5], versus, cost, hi_400=0.579)
    assert "Cannot be applied: the cost is not a number" in budget_study.variant_verdict(
        lr, paired, versus, float("nan"), hi_400=0.579)
    assert "2 of its jobs diverged" in budget_study.variant_verdict(lr, paired, versus, cost, 0.579, diverged=2)


@pytest.mark.parametrize("down_rank, helps", [(2, True), (3, False)])
def test_budget_study_comp_rule_2_with_six_pairs(down_rank, helps):
    """The held-out study's rule 2 (results/proxy-benchmark-budget-comp/PLAN.md): with 6 pairs, one draw down
    passes only while its change is among the two smallest in size (exact p = 3/64 at rank 2, 5/64 at rank 3);
    before all 6 draws and whole-1epoch-s2 have finished, both rules say they are pending."""
    from scipy import stats

    import budget_study

    study = budget_study.STUDIES["comp"]
    assert study.draws_1200 == 6 and study.against_400 == ("whole-1epoch-s2",)
    sizes = [0.01 * r for r in range(1, 7)]  # ranks 1..6
    change = [-x if r == down_rank else x for r, x in enumerate(sizes, start=1)]
    paired = pd.DataFrame({"kendall_all_after": [0.60] * 6, "kendall_all_change": change})
    table = pd.DataFrame(columns=["proxy", "metric", "value"])
    jobs = pd.DataFrame({"training_set": study.names_1200})
    text = "\n".join(budget_study.verdicts(study, jobs, table, paired, hi_400=0.579))
    p = stats.wilcoxon(change, alternative="greater").pvalue  # exact for n = 6 without ties
    assert p == pytest.approx(3 / 64 if helps else 5 / 64) and f"is {p:.3f}:" in text
    assert ("steps **help**" in text) == helps and ("**do not help**" in text) == (not helps)
    assert "1. **The confound.** Pending" in text
    early = "\n".join(budget_study.verdicts(study, jobs, table, paired.iloc[:5], hi_400=0.579))
    assert "Pending: 5 of 6 draws" in early and "steps **" not in early
