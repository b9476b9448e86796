"""Per-epoch validation that leaves training untouched, the history recorded in the job store and read back, and
`nasprune compare` (a proxy against random draws of its size) end to end on a tiny synthetic experiment."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from scipy import stats

from nasprune.cli import main
from nasprune.compare import DRAW_PREFIX, add_random_draws, compare_with_random
from nasprune.experiment import Experiment
from nasprune.jobs import HISTORY_COLUMNS, load_history
from nasprune.metrics import NULL_COLUMNS, compare
from nasprune.prune import build_proxy
from nasprune.proxy import ProxySet
from nasprune.runner import load_jobs, open_storage, prepare
from nasprune.train import Checkpoint, TrainConfig, train, train_candidate
from search_spaces import build_convnet

CANDIDATES = ["w8-d1-relu-none-avgpooling", "w8-d1-relu-batchnorm-maxpooling", "w8-d1-sigmoid-batchnorm-maxpooling",
              "w8-d2-leakyrelu-groupnorm-none"]


# --- per-epoch validation -------------------------------------------------------------------------------------------


def _train(d, config: TrainConfig, checkpoint=None):
    model = build_convnet("w8-d1-relu-batchnorm-maxpooling", d.in_channels, d.image_size, d.num_classes, seed=0)
    result = train(model, d.train_x[:300], d.train_y[:300], config, val=(d.val_x, d.val_y),
                   test=(d.test_x, d.test_y), checkpoint=checkpoint)
    return model, result


def test_eval_every_records_val_acc_and_leaves_the_training_bit_identical(synthetic):
    base = TrainConfig(epochs=3, batch_size=64, lr=0.05, mean=synthetic.mean, std=synthetic.std)
    plain_model, plain = _train(synthetic, base)
    model, r = _train(synthetic, dataclasses.replace(base, eval_every=1))
    for (name, a), b in zip(plain_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name  # weights and batchnorm running statistics, bit for bit
    assert (r.val_acc, r.test_acc, r.train_loss) == (plain.val_acc, plain.test_acc, plain.train_loss)
    assert [h["epoch"] for h in r.history] == [1, 2, 3] and all("val_acc" not in h for h in plain.history)
    assert r.history[-1]["val_acc"] == r.val_acc and len({h["val_acc"] for h in r.history}) > 1
    assert [h["train_loss"] for h in r.history] == [h["train_loss"] for h in plain.history]
    _, every2 = _train(synthetic, dataclasses.replace(base, eval_every=2))
    assert ["val_acc" in h for h in every2.history] == [False, True, True]  # every 2nd epoch and the last
    assert every2.history[1]["val_acc"] == r.history[1]["val_acc"]
    with pytest.raises(ValueError, match="eval_every must be >= 0 .* got -1"):
        TrainConfig(eval_every=-1)


def test_a_checkpoint_written_before_eval_every_existed_still_resumes(synthetic, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05, mean=synthetic.mean, std=synthetic.std)
    path = tmp_path / "run.ckpt"
    _, first = _train(synthetic, config, Checkpoint(path))
    payload = torch.load(path, weights_only=True)
    del payload["config"]["eval_every"]  # as an older version wrote it
    torch.save(payload, path)
    _, resumed = _train(synthetic, config, Checkpoint(path))  # nothing left to train: the saved state
    assert (resumed.val_acc, resumed.train_loss) == (first.val_acc, first.train_loss)
    payload["config"]["epochs"] = 5
    torch.save(payload, path)
    with pytest.raises(ValueError, match="a checkpoint of another training config"):
        _train(synthetic, config, Checkpoint(path))


def test_the_job_store_records_the_history_and_load_history_reads_it_back(synthetic, tmp_path):
    ProxySet.from_selection(synthetic, np.arange(0, 400, 2), "random").save(tmp_path / "p.json")
    Experiment(name="hist", dataset={"name": "synthetic"}, candidates=CANDIDATES[:2],
               training_sets={"p": {"proxy": "p.json", "train": {"epochs": 2, "eval_every": 1}}}).save(tmp_path)
    loaded, store = prepare(tmp_path)
    x, y = loaded.sets["p"]
    recorded = {}
    for with_val in (True, False):
        job = store.claim()
        config = dataclasses.replace(loaded.train_configs["p"], seed=job.seed, eval_every=int(with_val))
        r = train_candidate(job.candidate, loaded.dataset, x, y, config)
        store.complete(job, {"val_acc": r.val_acc, "history": r.history}, r.val_acc)
        recorded[job.candidate] = r
    history = load_history(tmp_path)
    assert list(history.columns) == HISTORY_COLUMNS
    with_val, without = CANDIDATES[0], CANDIDATES[1]  # jobs are claimed in the experiment's order
    assert set(history["candidate"]) == {with_val}  # a history without val_acc is not stored
    assert history["epoch"].tolist() == [1, 2] and history["seed"].tolist() == [0, 0]
    assert history["val_acc"].tolist() == [h["val_acc"] for h in recorded[with_val].history]
    assert history["train_loss"].tolist() == pytest.approx([h["train_loss"] for h in recorded[with_val].history])
    storage = open_storage(tmp_path)
    trials = storage.get_all_trials(storage.get_study_id_from_name("hist:p"), states=(TrialState.COMPLETE,))
    attrs = {t.user_attrs["candidate"]: t.user_attrs for t in trials}
    assert attrs[with_val]["history"][1] == {"epoch": 2, "val_acc": recorded[with_val].val_acc,
                                             "train_loss": pytest.approx(recorded[with_val].train_loss)}
    assert "history" not in attrs[without]
    assert load_jobs(tmp_path)["val_acc"].notna().all()  # jobs.csv is unchanged by it


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
    assert result.draws == [f"{DRAW_PREFIX}{i}" for i in range(3)] and result.proxy == "ours"
    for i in range(3):
        draw = ProxySet.load(directory / "proxies" / f"random-draw-{i}.json", synthetic)
        assert draw.method == "random" and draw.per_class == ours.per_class and draw.config["seed"] == i
        assert exp.training_sets[f"random-draw-{i}"].train == exp.training_sets["ours"].train
    first, second = (ProxySet.load(directory / "proxies" / f"random-draw-{i}.json").indices for i in (0, 1))
    assert not np.array_equal(first, second)
    assert result.search["complete"] == result.search["total"] == 4 * 5 * 2 and result.search["failed"] == 0
    jobs = load_jobs(directory)
    assert jobs.groupby("training_set").size().to_dict() == {t: 8 for t in exp.training_sets}


def test_compare_reports_percentiles_ceiling_and_plot_as_computed_from_the_jobs(compared):
    directory, result = compared
    jobs = load_jobs(directory)
    null = result.null.set_index("metric")
    assert list(result.null.columns) == NULL_COLUMNS and (result.null["draws"].isin([0, 3])).all()
    d = np.array([compare(jobs, t, n_boot=1)["kendall_all"] for t in result.draws])
    ours = compare(jobs, "ours", n_boot=1)["kendall_all"]
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
    assert again.draws == [f"{DRAW_PREFIX}{i}" for i in range(4)] and again.plot is None
    assert len(after) == len(before) + 8 and set(after["training_set"]) - set(before["training_set"]) == {
        "random-draw-3"}
    pd.testing.assert_frame_equal(after[after["training_set"] != "random-draw-3"].reset_index(drop=True),
                                  before.reset_index(drop=True))


def test_compare_command_prints_the_table_and_refuses_what_it_cannot_use(compared, capsys, synthetic):
    directory, _ = compared
    code = main(["compare", "--experiment", str(directory), "--random-draws", "3", "--no-search", "--bootstrap", "20"])
    out = capsys.readouterr().out
    assert code == 0 and "percentile" in out and "ceiling [95% CI]" in out and "compare.png" in out
    build_proxy(synthetic, None, "random", 10, seed=5).save(directory / "proxies" / "random-draw-9.json")  # not draw 9
    assert main(["compare", "--experiment", str(directory), "--random-draws", "10", "--no-search"]) == 2
    err = capsys.readouterr().err
    assert "random-draw-9.json is not random draw 9 of 10 per class (method random, 10 per class, seed 5); pass " \
           "another prefix for draws of another size" in err
    assert "random-draw-9" not in Experiment.load(directory).training_sets  # refused before anything is written
    assert not (directory / "proxies" / "random-draw-5.json").exists()
    assert main(["compare", "--experiment", str(directory), "--proxy", "whole", "--no-search"]) == 2
    assert "training set 'whole' is the whole training split, not a proxy" in capsys.readouterr().err
    assert main(["compare", "--experiment", str(directory), "--random-draws", "0"]) == 2
    assert "must be an integer >= 1, got '0'" in capsys.readouterr().err


def test_several_proxies_need_a_name(tmp_path, synthetic):
    for name in ("a", "b"):
        build_proxy(synthetic, None, "random", 5, seed=ord(name)).save(tmp_path / f"{name}.json")
    Experiment(name="two", dataset={"name": "synthetic"}, candidates=CANDIDATES[:1],
               training_sets={"a": {"proxy": "a.json"}, "b": {"proxy": "b.json"}, "whole": {"proxy": None}}
               ).save(tmp_path)
    with pytest.raises(ValueError, match=r"the experiment has 2 proxies \(a, b\); name the one to compare with "
                                         r"proxy=NAME \(--proxy NAME\)"):
        compare_with_random(tmp_path, draws=2, workers=0)
    assert add_random_draws(tmp_path, "b", 2) == ["random-draw-0", "random-draw-1"]
    assert add_random_draws(tmp_path, "a", 1, prefix="random-a-") == ["random-a-0"]  # draws of a's size
    sets = Experiment.load(tmp_path).training_sets
    assert list(sets) == ["a", "b", "whole", "random-draw-0", "random-draw-1", "random-a-0"]
    assert sets["random-a-0"].proxy == "proxies/random-a-0.json"
    assert not (tmp_path / "optuna.journal").exists()  # adding draws trains nothing
