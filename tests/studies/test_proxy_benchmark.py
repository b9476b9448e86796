"""The proxy benchmark's study end to end (scripts/proxy_benchmark.py, scripts/studies/proxy_benchmark/) on real
Fashion-MNIST, and the recommendation table it writes into results/README.md (scripts/recommendation.py)."""

import sys

import pandas as pd
import pytest
import yaml

import proxy_benchmark
import recommendation
from studies.proxy_benchmark.writeup import paper_scale_lines

NET = "w8-d1-relu-none-avgpooling"


@pytest.mark.slow
def test_proxy_benchmark_runs_a_tiny_sweep_and_writes_its_readme(tmp_path, monkeypatch):
    """scripts/proxy_benchmark.py on real Fashion-MNIST: two sizes, one method and three random draws each, the
    whole set with per-epoch validation and two seeds; the write-up holds the settling table, the ceiling, the
    per-size tables, the rule's decision and the plot."""
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
    paper = "\n".join(paper_scale_lines(jobs, classes=10, per_class=5))
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

    # the results index's table from these files (scripts/recommendation.py): the development pool's default is
    # not used while a held-out verdict is provisional or missing, and only the marked block is rewritten
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


def test_the_results_recommendation_table_is_the_one_the_results_give(monkeypatch):
    """results/README.md's table is written by scripts/recommendation.py from results/proxy-benchmark*/; a hand
    edit, or a results folder regenerated without rewriting the table, fails here."""
    monkeypatch.setattr(sys, "argv", ["recommendation.py", "--check"])
    recommendation.main()
