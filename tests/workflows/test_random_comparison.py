"""`nasprune compare` (nasprune/workflows/_random_comparison.py): a proxy against random draws of its size, end to
end on a tiny synthetic experiment. (The per-epoch validation it reads when asked is tested in
tests/training/test_loop.py and tests/search/test_store.py.)"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nasprune.analysis import NULL_COLUMNS, ranking_metrics
from nasprune.cli import main
from nasprune.proxies import ProxySet, build_proxy, draw_name
from nasprune.search import Experiment, load_jobs
from nasprune.workflows import DRAWS_NAME, add_random_draws, compare_with_random

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d1-relu-batchnorm-maxpooling", "w8-d1-sigmoid-batchnorm-maxpooling",
              "w8-d2-leakyrelu-groupnorm-none"]


# --- nasprune compare -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compared(tmp_path_factory, synthetic):
    """A 4-candidate experiment (a 10-per-class proxy "ours" and the whole synthetic split, 1 epoch, 2 seeds)
    compared with 3 random draws through the real runner in this process."""
    directory = tmp_path_factory.mktemp("compare") / "exp"
    directory.mkdir()
    build_proxy(synthetic, None, "random", 10, seed=99).save(directory / "ours.json")
    Experiment(name="cmp", dataset={"name": "synthetic"}, candidates=CANDIDATES,
               training_sets={"ours": {"proxy": "ours.json", "train": {"epochs": 1, "eval_test": False}},
                              "whole": {"proxy": None, "train": {"epochs": 1}}},
               seeds=[0, 1]).save(directory)
    result = compare_with_random(directory, draws=3, workers=0, progress=False, n_boot=50)
    return directory, result


def test_compare_adds_draws_of_the_proxy_size_and_runs_their_jobs(compared, synthetic):
    directory, result = compared
    ours = ProxySet.load(directory / "ours.json", synthetic)
    exp = Experiment.load(directory)
    assert result.draws == [f"random-d{i}" for i in range(3)] == [draw_name(DRAWS_NAME, i) for i in range(3)]
    assert result.proxy == "ours"
    for i in range(3):
        draw = ProxySet.load(directory / "proxies" / f"random-d{i}.json", synthetic)
        assert draw.method == "random" and draw.per_class == ours.per_class and draw.config["seed"] == i
        assert exp.training_sets[f"random-d{i}"].train == exp.training_sets["ours"].train
        assert exp.training_sets[f"random-d{i}"].proxy == f"proxies/random-d{i}.json"
    first, second = (ProxySet.load(directory / "proxies" / f"random-d{i}.json").indices for i in (0, 1))
    assert not np.array_equal(first, second)
    assert result.search["complete"] == result.search["total"] == 4 * 5 * 2 and result.search["failed"] == 0
    jobs = load_jobs(directory)
    assert jobs.groupby("training_set").size().to_dict() == {t: 8 for t in exp.training_sets}


def test_compare_reports_percentiles_ceiling_and_plot_as_computed_from_the_jobs(compared):
    directory, result = compared
    jobs = load_jobs(directory)
    null = result.null.set_index("metric")
    assert list(result.null.columns) == NULL_COLUMNS and (result.null["draws"].isin([0, 3])).all()
    d = np.array([ranking_metrics(jobs, t, n_boot=1)["kendall_all"] for t in result.draws])
    ours = ranking_metrics(jobs, "ours", n_boot=1)["kendall_all"]
    assert null.loc["kendall_all", "value"] == pytest.approx(ours)
    assert null.loc["kendall_all", "percentile"] == pytest.approx(stats.percentileofscore(d, ours, kind="mean"))
    assert null.loc["kendall_all", "draws_as_good"] == np.mean(d >= ours)
    whole = jobs[jobs["training_set"] == "whole"].pivot(index="candidate", columns="seed", values="val_acc")
    assert result.ceiling["kendall_all"] == pytest.approx(stats.kendalltau(whole[0], whole[1])[0])
    assert result.ceiling["seeds"] == [0, 1]
    text = result.text()
    assert "ours (40 images) against 3 random proxies of the same per-class counts; 4 candidates" in text
    kendall_line = next(line for line in text.splitlines() if line.startswith("Kendall (all) "))
    assert f"{null.loc['kendall_all', 'percentile']:.0f}" in kendall_line
    assert f"{round(null.loc['kendall_all', 'draws_as_good'] * 3)} of 3" in kendall_line
    assert result.plot == directory / "compare.png" and result.plot.read_bytes()[:4] == b"\x89PNG"


def test_more_draws_later_run_only_the_new_draws_jobs(compared, tmp_path):
    directory, result = compared
    before = load_jobs(directory)
    again = compare_with_random(directory, "ours", draws=4, workers=0, progress=False, n_boot=20, plot=False)
    after = load_jobs(directory)
    assert again.draws == [f"random-d{i}" for i in range(4)] and again.plot is None
    assert len(after) == len(before) + 8 and set(after["training_set"]) - set(before["training_set"]) == {
        "random-d3"}
    pd.testing.assert_frame_equal(after[after["training_set"] != "random-d3"].reset_index(drop=True),
                                  before.reset_index(drop=True))


def test_compare_command_prints_the_table_and_refuses_what_it_cannot_use(compared, capsys, synthetic):
    directory, _ = compared
    code = main(["compare", "--experiment", str(directory), "--random-draws", "3", "--no-search", "--bootstrap", "20"])
    out = capsys.readouterr().out
    assert code == 0 and "percentile" in out and "ceiling [95% CI]" in out and "compare.png" in out
    build_proxy(synthetic, None, "random", 10, seed=5).save(directory / "proxies" / "random-d9.json")  # not draw 9
    assert main(["compare", "--experiment", str(directory), "--random-draws", "10", "--no-search"]) == 2
    err = capsys.readouterr().err
    assert f"{directory / 'proxies' / 'random-d9.json'} is not random draw 9 of 10 per class (method random, 10 per " \
           "class, seed 5); pass another name for draws of another size, or move the file away to build it again" \
           in err
    assert "random-d9" not in Experiment.load(directory).training_sets  # refused before anything is written
    assert not (directory / "proxies" / "random-d5.json").exists()
    assert main(["compare", "--experiment", str(directory), "--proxy", "whole", "--no-search"]) == 2
    assert "training set 'whole' is the whole training split, not a proxy" in capsys.readouterr().err
    assert main(["compare", "--experiment", str(directory), "--random-draws", "0"]) == 2
    assert "must be an integer >= 1, got '0'" in capsys.readouterr().err


def test_several_proxies_need_a_name(tmp_path, synthetic):
    for name, per_class in (("a", 4), ("b", 5)):  # two sizes: each has draws of its own
        build_proxy(synthetic, None, "random", per_class, seed=ord(name)).save(tmp_path / f"{name}.json")
    Experiment(name="two", dataset={"name": "synthetic"}, candidates=CANDIDATES[:1],
               training_sets={"a": {"proxy": "a.json"}, "b": {"proxy": "b.json"}, "whole": {"proxy": None}}
               ).save(tmp_path)
    with pytest.raises(ValueError, match=r"the experiment has 2 proxies \(a, b\); name the one to compare with "
                                         r"proxy=NAME \(--proxy NAME\)"):
        compare_with_random(tmp_path, draws=2, workers=0)
    assert add_random_draws(tmp_path, "b", 2) == ["random-d0", "random-d1"]
    assert add_random_draws(tmp_path, "a", 1, name="random-a") == ["random-a-d0"]  # draws of a's size
    sets = Experiment.load(tmp_path).training_sets
    assert list(sets) == ["a", "b", "whole", "random-d0", "random-d1", "random-a-d0"]
    assert sets["random-a-d0"].proxy == "proxies/random-a-d0.json"
    assert sets["random-d1"].proxy == "proxies/random-d1.json"
    assert (tmp_path / "proxies" / "random-a-d0.json").is_file()
    assert not (tmp_path / "optuna.journal").exists()  # adding draws trains nothing


def test_a_draw_the_experiment_already_has_is_reused_not_trained_again(tmp_path, synthetic):
    """An experiment with a seed-0 random proxy of the proxy's size, trained like it, already holds random draw 0:
    compare uses that training set and its finished jobs instead of training a copy."""
    directory = tmp_path / "exp"
    directory.mkdir()
    build_proxy(synthetic, None, "random", 10, seed=99).save(directory / "ours.json")
    build_proxy(synthetic, None, "random", 10, seed=0).save(directory / "rnd.json")
    train = {"epochs": 1, "eval_test": False}
    Experiment(name="reuse", dataset={"name": "synthetic"}, candidates=CANDIDATES[:2],
               training_sets={"ours": {"proxy": "ours.json", "train": train},
                              "rnd": {"proxy": "rnd.json", "train": train},
                              "whole": {"proxy": None, "train": {"epochs": 1}}}, seeds=[0, 1]).save(directory)
    result = compare_with_random(directory, proxy="ours", draws=3, workers=0, progress=False, n_boot=20, plot=False)
    assert result.draws == ["rnd", "random-d1", "random-d2"]
    assert not (directory / "proxies" / "random-d0.json").exists()
    assert "random-d0" not in Experiment.load(directory).training_sets
    assert result.search["total"] == 2 * 2 * 5  # 5 training sets: ours, rnd, whole and two new draws
    # trained otherwise (another epoch count), the same images are no draw of this comparison
    exp = Experiment.load(directory)
    other = exp.to_dict()
    other["training_sets"]["rnd"]["train"]["epochs"] = 2
    Experiment.from_dict(other).save(directory, overwrite=True)
    assert add_random_draws(directory, "ours", 1) == ["random-d0"]
