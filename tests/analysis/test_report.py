"""Reports: every file written, table1.csv recomputable from jobs.csv alone, the CLI end to end, and the pieces
of the write-ups under results/ (paired tables, proxy facts, READMEs)."""

import json

import numpy as np
import pandas as pd
import pytest

from nasprune.analysis import (PAIRED_COLUMNS, ci_text, paired_difference, paired_differences, paired_markdown,
                               paired_wide_markdown, proxies_markdown, replace_block, table1, table1_from_csv,
                               table1_markdown, train_settings, write_readme, write_report)
from nasprune.cli import main
from nasprune.proxies import ProxySet
from nasprune.search import JOB_COLUMNS, Experiment, run_search
from nasprune.training import TrainConfig

FILES = ("jobs.csv", "table1.csv", "table1.md", "proxy_vs_whole.png", "table1.png")


def hand_built_jobs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    whole = rng.uniform(40, 90, 16)
    rows = []
    sets = (("random", whole + rng.normal(0, 10, 16), 100), ("ours", whole + rng.normal(0, 3, 16), 100),
            ("whole", whole, 5000))
    for ts, vals, images in sets:
        for i, v in enumerate(vals):
            for seed in (0, 1):
                rows.append({"training_set": ts, "candidate": f"w{8 * (i + 1)}-d1-relu-none-none", "seed": seed,
                             "val_acc": v + seed, "test_acc": v + seed - 0.5, "train_loss": 0.5, "seconds": 3.0,
                             "diverged": False, "images": images, "bytes": images * 784, "method": ts,
                             "proxy_minutes": 1.5 if ts == "ours" else np.nan})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_write_report_writes_everything_and_table1_is_recomputable(tmp_path):
    paths = write_report(tmp_path, jobs=hand_built_jobs(), n_boot=100, seed=3)
    assert sorted(p.name for p in paths.values()) == sorted(FILES)
    assert all((tmp_path / f).stat().st_size > 0 for f in FILES)
    jobs = pd.read_csv(tmp_path / "jobs.csv")
    built = hand_built_jobs().columns  # jobs.csv: JOB_COLUMNS' order, then any other column as given
    assert list(jobs.columns) == [c for c in JOB_COLUMNS if c in built] + [c for c in built if c not in JOB_COLUMNS]
    assert list(jobs.columns) == ["training_set", "candidate", "seed", "val_acc", "test_acc", "train_loss", "seconds",
                                  "diverged", "images", "bytes", "proxy_minutes", "method"] and len(jobs) == 96
    written = pd.read_csv(tmp_path / "table1.csv")
    recomputed = table1_from_csv(tmp_path / "jobs.csv", n_boot=100, seed=3)
    recomputed.to_csv(tmp_path / "again.csv", index=False)
    pd.testing.assert_frame_equal(written, pd.read_csv(tmp_path / "again.csv"))
    assert written["training_set"].tolist() == ["random", "ours", "whole"]
    assert written.loc[1, "proxy_minutes"] == 1.5 and written.loc[2, "images"] == 5000
    md = (tmp_path / "table1.md").read_text()
    assert "| training set | best-arch test acc (%) | Spearman (top 10) | time (min) | storage (images) |" in md
    assert "| whole |" in md and "5,000" in md
    assert (tmp_path / "proxy_vs_whole.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_jobs_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no finished jobs"):
        write_report(tmp_path, jobs=hand_built_jobs().iloc[:0])


def test_report_before_any_search_writes_nothing(tmp_path, synthetic):
    Experiment(name="never-ran", dataset={"name": "synthetic"}, candidates=["w8-d1-relu-none-avgpooling"],
               training_sets={"whole": {"proxy": None}}).save(tmp_path)
    with pytest.raises(ValueError, match=f"no search has run in {tmp_path}; run `nasprune search --experiment "):
        write_report(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["experiment.json"]  # no journal, no report files


def six_candidates() -> pd.DataFrame:
    """Two proxies and the whole set on 6 candidates, as `nasprune run quick` has."""
    jobs = hand_built_jobs()
    return jobs[jobs["candidate"].isin(sorted(set(jobs["candidate"]))[:6])].reset_index(drop=True)


def test_top_k_columns_read_n_a_with_too_few_candidates_and_the_title_is_the_config_name(tmp_path):
    (tmp_path / "experiment.json").write_text(json.dumps({"name": "quick-like"}))
    write_report(tmp_path, jobs=six_candidates(), n_boot=50)
    md = (tmp_path / "table1.md").read_text()
    assert md.startswith("# Table 1: quick-like\n") and tmp_path.name not in md
    rows = [line.split(" | ") for line in md.splitlines() if line.startswith("| ours") or line.startswith("| whole")]
    assert len(rows) == 2 and all(r[2] == "n/a" and r[7] == "n/a" for r in rows)  # Spearman (top 10), top-10 overlap
    assert all(r[5] != "n/a" for r in rows)  # Spearman (all) is computed
    assert ("n/a: Spearman (top 10) needs at least 10 candidates and top-10 overlap needs more than 10 "
            "(with 10 or fewer it is always 1); this experiment has 6.") in md
    full = (write_report(tmp_path, jobs=hand_built_jobs(), n_boot=50), (tmp_path / "table1.md").read_text())[1]
    assert "n/a: " not in full and "| top-10 overlap |" in full


def test_top_k_header_follows_the_tables_k():
    table = table1(hand_built_jobs(), n_boot=20, top=5, k=3)
    md = table1_markdown(table, hand_built_jobs(), n_boot=20)
    assert "| Spearman (top 5) |" in md and "| top-3 overlap |" in md and "over the proxy's top 5" in md


@pytest.mark.slow
def test_search_and_report_commands_end_to_end(tmp_path, synthetic, capsys):
    ProxySet.from_selection(synthetic, np.arange(0, 1000, 5), "random").save(tmp_path / "random.json")
    Experiment(name="cli", dataset={"name": "synthetic"},
               candidates=["w8-d1-relu-none-avgpooling", "w8-d1-relu-instancenorm-maxpooling"],
               training_sets={"random": {"proxy": "random.json", "train": {"epochs": 1}},
                              "whole": {"proxy": None, "train": {"epochs": 1}}}).save(tmp_path)
    assert main(["search", "--experiment", str(tmp_path), "--workers", "0", "--no-progress"]) == 0
    assert "4 of 4 jobs complete, 0 failed" in capsys.readouterr().out
    assert main(["report", "--experiment", str(tmp_path), "--bootstrap", "50"]) == 0
    assert all((tmp_path / f).exists() for f in FILES)
    assert len(pd.read_csv(tmp_path / "jobs.csv")) == 4
    assert main(["search", "--experiment", str(tmp_path / "missing")]) == 2
    assert "no experiment.json in" in capsys.readouterr().err


def test_run_search_rejects_bad_worker_count(tmp_path):
    with pytest.raises(ValueError, match="workers must be an int >= 0, got -1"):
        run_search(tmp_path, workers=-1)


def test_paired_differences_are_the_metrics_paired_bootstrap_in_pair_then_metric_order():
    jobs = hand_built_jobs()
    pairs = paired_differences(jobs, [("ours", "random"), ("ours", "never-ran"), ("random", "ours")],
                               ("kendall_all", "spearman_top10"), n_boot=50, seed=2)
    assert list(pairs.columns) == PAIRED_COLUMNS and len(pairs) == 4  # the pair without jobs is left out
    assert pairs[["proxy", "versus", "metric"]].values.tolist() == [
        ["ours", "random", "kendall_all"], ["ours", "random", "spearman_top10"],
        ["random", "ours", "kendall_all"], ["random", "ours", "spearman_top10"]]
    for r in pairs.itertuples():
        direct = paired_difference(jobs, r.proxy, r.versus, r.metric, n_boot=50, seed=2)
        assert (r.estimate, r.lo, r.hi, r.candidates) == (direct["estimate"], direct["lo"], direct["hi"], 16)
    first = pairs.iloc[0]
    long = paired_markdown(pairs, keys=("versus", "metric"))
    assert long[:2] == ["| versus | metric | difference | candidates |", "|---|---|---|---|"]
    assert long[2] == f"| random | kendall_all | {first.estimate:+.3f} [{first.lo:+.3f}, {first.hi:+.3f}] | 16 |"
    wide = paired_wide_markdown(pairs, ["random", "whole"], above="CI above 0 for all draws")
    assert wide[0] == "| proxy | metric | vs random | vs whole | CI above 0 for all draws |"
    assert wide[2].startswith("| ours | kendall_all | +") and wide[2].endswith(" |  | no |")  # no result vs whole
    yes = paired_wide_markdown(pairs.assign(lo=0.01), ["random"])
    assert yes[2].endswith(" | yes |") and yes[0].endswith("| CI above 0 against all |")


def test_proxy_facts_table_and_interval_text(synthetic):
    stats = {"t_norm": 6.30612, "lower_bound": 0.0, "pruning_net_acc_on_kept": 5.0, "proxy_seconds": 90.0}
    ours = ProxySet.from_selection(synthetic, np.arange(10), "influence", objective=0.0391234, stats=stats,
                                   config={"influence": {"target": "scaled", "l2": 1e-5}})
    rnd = ProxySet.from_selection(synthetic, np.arange(10), "random", stats={"proxy_seconds": 0.0})
    lines = proxies_markdown({"ours": ours, "random": rnd})
    assert lines[0].startswith("| proxy | target, l2 | Eq. 4 objective | norm(T) |")
    assert lines[2:] == ["| ours | scaled, 1e-05 | 0.03912 | 6.306 | 0 | 5.0 | 1.5 |",
                         "| random |  |  |  |  |  | 0.0 |"]
    row = pd.Series({"m": 0.8667, "m_lo": 0.7123, "m_hi": 1.0})
    assert ci_text(row, "m", ".3f") == "0.867 [0.712, 1.000]"
    assert ci_text(pd.Series({"m": np.nan}), "m", ".3f") == "n/a"
    assert ci_text(pd.Series({"m": 2.0}), "m", ".1f") == "2.0"  # no interval recorded: the value alone


def test_write_readme_and_the_training_settings_it_shows(tmp_path):
    assert train_settings(TrainConfig(epochs=50)) == {"epochs": 50, "batch_size": 128, "lr": 0.01}
    assert train_settings(TrainConfig(epochs=3, weight_decay=1e-3, seed=4)) == {
        "epochs": 3, "batch_size": 128, "lr": 0.01, "weight_decay": 1e-3}  # the seed is the job's
    path = write_readme(tmp_path / "README.md", "A study", ["Generated by a test.", ""], {"seeds": [0, 1]})
    text = path.read_text()
    assert text.startswith("# A study\n\nGenerated by a test.\n\n## Provenance\n\n```json\n")
    assert '"seeds": [\n    0,\n    1\n  ]' in text and not (tmp_path / "README.md.tmp").exists()
    assert write_readme(tmp_path / "plain.md", "T", ["body"]).read_text() == "# T\n\nbody"


def test_replace_block_rewrites_only_between_its_markers_and_refuses_a_file_without_them(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("top\n<!-- begin t -->\nold\n<!-- end t -->\nbottom\n")
    assert replace_block(path, "t", ["new 1", "new 2"], write=False)  # differs, but only checked
    assert "old" in path.read_text()
    assert replace_block(path, "t", ["new 1", "new 2"])
    assert path.read_text() == "top\n<!-- begin t -->\nnew 1\nnew 2\n<!-- end t -->\nbottom\n"
    assert not replace_block(path, "t", ["new 1", "new 2"])  # already up to date
    for broken in ("no markers\n", "<!-- end t -->\n<!-- begin t -->\n",
                   "<!-- begin t -->\n<!-- end t -->\n<!-- begin t -->\n<!-- end t -->\n"):
        path.write_text(broken)
        with pytest.raises(ValueError, match="needs exactly one"):
            replace_block(path, "t", ["x"])
        assert path.read_text() == broken


def test_report_replays_the_journal_once_and_prints_table1_before_the_files(searched, journal_replays, capsys):
    """``nasprune report`` reads the finished jobs and the failed ones from one storage, and prints Table 1's
    summary (one line per training set, as table1.csv holds it), then the files it wrote."""
    assert main(["report", "--experiment", str(searched)]) == 0
    assert journal_replays["n"] == 1
    out = capsys.readouterr().out.splitlines()
    table = pd.read_csv(searched / "table1.csv")
    assert out[0].split() == ["training", "set", "images", "best-arch", "test", "acc", "regret", "Kendall", "search",
                              "(min)", "chosen"]
    for line, (_, r) in zip(out[1:3], table.iterrows()):
        assert line.split() == [r.training_set, f"{r.images:,.0f}", f"{r.best_arch_test_acc:.2f}", f"{r.regret:.2f}",
                                f"{r.kendall_all:.3f}", f"{r.search_minutes:.1f}", r.chosen]
    assert out[3] == "" and out[4].startswith(f"written: {searched / 'jobs.csv'}, ")
