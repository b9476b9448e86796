"""Configs: every mistake a user can make in a YAML config or experiment.json is one line naming the key."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from nasprune.config import check_name, check_random_state, from_mapping, to_mapping
from nasprune.errors import ConfigError, ExperimentError
from nasprune.proxies import InfluenceConfig, ObjectiveConfig, recorded_settings
from nasprune.search import Experiment
from nasprune.training import TrainConfig
from nasprune.workflows import PipelineConfig

BASE = {
    "name": "cfg",
    "dataset": {"name": "synthetic"},
    "scoring": {"spec": "w8-d1-relu-batchnorm-avgpooling", "bottleneck": 8, "score_epoch": 1, "train": {"epochs": 2}},
    "proxies": {"per_class": 10, "methods": ["random", "influence"], "influence": {"l2": 1.0e-3}},
    "search": {"candidates": {"grid": {"widths": [8], "depths": [1]}, "count": 5, "seed": 0},
               "seeds": [0], "workers": 1, "proxy_train": {"epochs": 2}, "whole_train": {"epochs": 1}},
}


def _with(section: str, **values) -> dict:
    doc = json.loads(json.dumps(BASE))
    doc[section].update(values)
    return doc


def _load(tmp_path, doc):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(doc))
    return PipelineConfig.load(path)


# every config mistake a new user made: (section, values, the message's key, what it says)
MISTAKES = [
    ("search", {"worker": 2}, "search.worker", "unknown key (did you mean 'workers'?)"),
    ("proxies", {"per_clas": 50}, "proxies.per_clas", "unknown key (did you mean 'per_class'?)"),
    ("scoring", {"epocs": 2}, "scoring.epocs", "unknown key (did you mean 'train.epochs'?)"),
    ("scoring", {"train": {"epocs": 2}}, "scoring.train.epocs", "unknown key (did you mean 'epochs'?)"),
    ("scoring", {"train": {"epochs": "two"}}, "scoring.train.epochs", "expected an int, got 'two' (str)"),
    ("scoring", {"train": {"epochs": 2}, "epochs": 3}, "scoring.epochs",
     "given twice: here (the old form) and as scoring.train.epochs; keep only scoring.train.epochs"),
    ("proxies", {"influence": {"l2s": 1e-3}}, "proxies.influence.l2s", "unknown key (did you mean 'l2'?)"),
    ("search", {"seeds": 0}, "search.seeds", "expected a list of ints, got 0 (int)"),
    ("search", {"candidates": {"grid": {"widths": [8]}, "count": "six"}}, "search.candidates.count",
     "expected an int or null, got 'six' (str)"),
    ("proxies", {"per_class": "100"}, "proxies.per_class", "expected an int, got '100' (str)"),
    ("proxies", {"per_class": 0}, "proxies.per_class", "must be an int >= 1, got 0"),
    ("search", {"proxy_train": {"epochs": 2, "lr": "fast"}}, "search.proxy_train.lr", "expected a number"),
    ("search", {"proxy_train": {"seed": 3}}, "search.proxy_train.seed", "comes from search.seeds"),
    ("proxies", {"methods": ["random", "herdin"]}, "proxies.methods[1]", "unknown method 'herdin'"),
    ("dataset", {"val_sise": 100}, "dataset.val_sise", "unknown key (did you mean 'val_size'?)"),
    ("search", {"candidates": ["w8-d1-relu-none-avgpool"]}, "search", "unknown candidate id"),
]


@pytest.mark.parametrize("section, values, key, says", MISTAKES, ids=[m[2] for m in MISTAKES])
def test_each_config_mistake_is_refused_with_its_key(tmp_path, section, values, key, says):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, _with(section, **values))
    message = str(info.value)
    assert f"cfg.yaml: {key}" in message and says in message, message
    assert "\n" not in message


def test_a_valid_config_is_typed_end_to_end(tmp_path):
    config = _load(tmp_path, _with("proxies", sets=[{"name": "r1", "method": "random", "seed": 1},
                                                    {"name": "ours", "method": "influence",
                                                     "objective": {"target": "classwise"}}]))
    assert isinstance(config.search.proxy_train, TrainConfig) and config.search.proxy_train.epochs == 2
    r1, ours = config.proxies.resolved()
    assert (r1.seed, ours.seed) == (1, 0)  # a set's own seed, else proxies.seed
    assert InfluenceConfig(**ours.influence) == InfluenceConfig(l2=1e-3)
    assert ObjectiveConfig(**ours.objective) == ObjectiveConfig(target="classwise")
    exp = config.experiment()
    assert list(exp.training_sets) == ["whole", "r1", "ours"] and len(exp.candidates) == 5
    assert exp.training_sets["ours"].proxy == "proxies/ours.json"
    # written out and read back, the config is the same value
    again = from_mapping(PipelineConfig, yaml.safe_load(yaml.safe_dump(to_mapping(config))))
    assert again == config


def test_the_flat_scoring_form_of_earlier_versions_still_loads_with_a_deprecation_warning(tmp_path):
    """``scoring: {epochs: 4, lr: 0.02}`` (before ScoringConfig.train) is ``scoring: {train: {epochs: 4, lr: 0.02}}``;
    a ``train`` section changes only the settings it names (ScoringConfig's batch 256 stays)."""
    new = _load(tmp_path, _with("scoring", train={"epochs": 4, "lr": 0.02}))
    old = {k: v for k, v in BASE["scoring"].items() if k != "train"} | {"epochs": 4, "lr": 0.02}
    with pytest.warns(FutureWarning) as caught:
        assert _load(tmp_path, {**BASE, "scoring": old}) == new
    assert [str(w.message) for w in caught] == [
        f"scoring.{k} is deprecated: write it as scoring.train.{k}" for k in ("epochs", "lr")]
    assert (new.scoring.train.epochs, new.scoring.train.lr, new.scoring.train.batch_size) == (4, 0.02, 256)
    with pytest.warns(FutureWarning, match="scoring.seed is deprecated"):  # both forms, other keys: merged
        both = _load(tmp_path, _with("scoring", seed=3))
    assert both.scoring.train.seed == 3 and both.scoring.train.epochs == 2


def test_scientific_notation_that_yaml_reads_as_a_string_is_a_number(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(BASE).replace("l2: 0.001", "l2: 1e-3"))
    assert yaml.safe_load(path.read_text())["proxies"]["influence"]["l2"] == "1e-3"  # what YAML 1.1 does
    assert PipelineConfig.load(path).proxies.resolved()[1].influence["l2"] == 1e-3


def test_shipped_configs_load_and_the_stored_reference_experiment_is_the_same_value(repo):
    for name in ("quick", "fmnist-ref", "paper"):
        PipelineConfig.load(name)
    # written by an earlier version, with partial train configs
    stored = Experiment.load(repo / "results" / "fmnist-ref")
    assert PipelineConfig.load("fmnist-ref").experiment() == stored


def test_experiment_json_mistakes_name_the_file_and_key(tmp_path):
    exp = PipelineConfig.load("quick").experiment()
    doc = exp.to_dict()
    doc["training_sets"]["whole"]["train"]["epochs"] = "3"
    (tmp_path / "experiment.json").write_text(json.dumps(doc))
    with pytest.raises(ExperimentError, match=r"experiment.json: training_sets.whole.train.epochs: expected an int, "
                                              r"got '3' \(str\)"):
        Experiment.load(tmp_path)
    (tmp_path / "experiment.json").write_text('{"name": "x", ')
    with pytest.raises(ExperimentError, match=r"experiment.json: not valid JSON"):
        Experiment.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"`nasprune run CONFIG --out"):
        Experiment.load(tmp_path / "nowhere")


@pytest.mark.slow
def test_the_cli_prints_one_line_and_exits_2_on_a_bad_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with("search", worker=2)))
    done = subprocess.run([sys.executable, "-m", "nasprune.cli", "run", str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "search.worker: unknown key (did you mean 'workers'?)" in done.stderr
    assert not (tmp_path / "out").exists()  # refused before any work


def test_names_are_letters_digits_dots_underscores_or_dashes(tmp_path):
    """Experiments, their training sets, configs and their proxies are named alike (``check_name``): the names
    become study names and file names."""
    for good in ("fmnist-ref", "random-d0", "v1.2_b"):
        check_name(good, "name")
    for bad in ("a b", "", "x/y", "tab\t", 3, None):
        with pytest.raises(ConfigError) as info:
            check_name(bad, "training_sets.k")
        assert str(info.value) == f"training_sets.k: must be letters, digits, '.', '_' or '-', got {bad!r}"
    with pytest.raises(ExperimentError, match=r"^training_sets\.x/y: must be letters, digits, '\.', '_' or '-', "
                                              r"got 'x/y'$"):
        check_name("x/y", "training_sets.x/y", ExperimentError)
    candidates = ["w8-d1-relu-none-avgpooling"]
    with pytest.raises(ExperimentError, match=r"^name: must be letters, digits, '\.', '_' or '-', got 'my run'$"):
        Experiment(name="my run", dataset={"name": "synthetic"}, candidates=candidates,
                   training_sets={"whole": {"proxy": None}})
    with pytest.raises(ExperimentError, match=r"^training_sets\.a b: must be letters, digits, '\.', '_' or '-', "
                                              r"got 'a b'$"):
        Experiment(name="x", dataset={"name": "synthetic"}, candidates=candidates,
                   training_sets={"a b": {"proxy": "p.json"}, "whole": {"proxy": None}})
    with pytest.raises(ConfigError, match=r"cfg\.yaml: name: must be letters, digits, '\.', '_' or '-', "
                                          r"got 'my cfg'$"):
        _load(tmp_path, {**BASE, "name": "my cfg"})
    sets = {"per_class": 10, "sets": [{"name": "a b", "method": "random"}]}
    with pytest.raises(ConfigError, match=r"cfg\.yaml: proxies\.sets\[0\]\.name: must be letters, digits, '\.', "
                                          r"'_' or '-', got 'a b'$"):
        _load(tmp_path, {**BASE, "proxies": sets})
    whole = {"per_class": 10, "sets": [{"name": "whole", "method": "random"}]}
    with pytest.raises(ConfigError, match=r"cfg\.yaml: proxies\.sets\[0\]\.name: 'whole' is the whole training "
                                          r"set's name; give the proxy another$"):
        _load(tmp_path, {**BASE, "proxies": whole})


def test_check_random_state():
    assert check_random_state(3).integers(1000) == check_random_state(3).integers(1000)
    gen = np.random.default_rng(0)
    assert check_random_state(gen) is gen
    assert isinstance(check_random_state(None), np.random.Generator)
    with pytest.raises(ValueError, match="seed must be None, an int or a numpy Generator"):
        check_random_state("zero")


def test_the_one_section_influence_form_of_earlier_versions_still_loads(tmp_path):
    """Before ObjectiveConfig, ``influence`` held the objective's settings too, and ``method`` for ``hessian``:
    such a config loads as the split one, with a FutureWarning per moved key, and such a proxy file's settings
    read as today's (settings added since at their defaults)."""
    new = _load(tmp_path, _with("proxies", influence={"l2": 1e-3, "hessian": "kfac"}, objective={"target": "paper"},
                                sets=[{"name": "a", "method": "influence", "objective": {"solver": "anneal"}}]))
    with pytest.warns(FutureWarning) as caught:
        old = _load(tmp_path, _with("proxies", influence={"l2": 1e-3, "method": "kfac", "target": "paper"},
                                    sets=[{"name": "a", "method": "influence", "influence": {"solver": "anneal"}}]))
    assert old == new
    assert sorted(str(w.message) for w in caught) == [
        "proxies.influence.method is deprecated: write it as proxies.influence.hessian",
        "proxies.influence.target is deprecated: write it as proxies.objective.target",
        "proxies.sets[0].influence.solver is deprecated: write it as proxies.sets[0].objective.solver"]
    with pytest.raises(ConfigError, match=r"proxies\.influence\.target: given twice"):
        _load(tmp_path, _with("proxies", influence={"target": "paper"}, objective={"target": "scaled"}))
    file_config = {"method": "influence", "per_class": 10, "seed": 0,
                   "influence": {"target": "paper", "l2": 1e-3, "damping": 0.0, "method": "exact", "refit": True,
                                 "solver": "swap", "time_limit": 60.0, "bound": True}}  # no epsilon yet
    assert recorded_settings(file_config) == {
        "method": "influence", "per_class": 10, "seed": 0,
        "influence": {"l2": 1e-3, "damping": 0.0, "hessian": "exact", "refit": True},
        "objective": {"target": "paper", "solver": "swap", "time_limit": 60.0, "bound": True, "epsilon": None}}
    # influence_score reads S but optimises nothing: the objective's settings do not make it another proxy
    score = recorded_settings({**file_config, "method": "influence_score"})
    assert "objective" not in score and score["influence"]["l2"] == 1e-3
