"""The artifact helper (nasprune/artifacts.py) and the files that use it: atomic writes, format headers,
checksums, data mismatches named, and every stored format still readable."""

import json

import numpy as np
import pytest
import torch

from nasprune.artifacts import (ABSENT, changed, changed_settings, check_data, check_format, checksum, show_changes,
                                write_text)
from nasprune.data import load_dataset
from nasprune.errors import ArtifactError, ProxyError, ScoringError
from nasprune.proxies import ProxySet, ScoringConfig, ScoringRun, pruning_network
from nasprune.proxies._proxy_set import FORMAT as PROXY_FORMAT
from nasprune.proxies._scoring import FORMAT as SCORING_FORMAT
from nasprune.training import TrainConfig
from search_spaces import build_convnet


def test_an_interrupted_write_leaves_the_old_file(tmp_path):
    path = write_text(tmp_path / "sub" / "a.txt", "old")
    assert path.read_text() == "old"

    class Boom(Exception):
        pass

    def failing(tmp):
        tmp.write_text("half")
        raise Boom

    from nasprune.artifacts import atomic_write

    with pytest.raises(Boom):
        atomic_write(path, failing)
    assert path.read_text() == "old"  # the rename never happened


def test_checksum_is_canonical_json():
    import hashlib

    assert checksum({"b": 1, "a": [1, 2]}) == checksum({"a": [1, 2], "b": 1})
    assert checksum({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()


def test_format_headers_tell_another_version_from_another_kind(tmp_path):
    check_format("nasprune.proxyset/1", "nasprune.proxyset/1", tmp_path, ProxyError, "nasprune proxy file")
    with pytest.raises(ProxyError, match=r"in format 'nasprune.proxyset/2', but this nasprune \(.*\) reads "
                                         r"'nasprune.proxyset/1'; use the nasprune version that wrote it"):
        check_format("nasprune.proxyset/2", "nasprune.proxyset/1", tmp_path, ProxyError, "nasprune proxy file")
    with pytest.raises(ProxyError, match="is not a nasprune proxy file$"):
        check_format("nasprune.scoring/1", "nasprune.proxyset/1", tmp_path, ProxyError, "nasprune proxy file")
    assert issubclass(ProxyError, ArtifactError) and issubclass(ScoringError, ArtifactError)
    assert issubclass(ArtifactError, ValueError)


def test_a_data_mismatch_names_what_differs(synthetic):
    other = load_dataset("synthetic", seed=1)
    check_data("proxy", synthetic.fingerprint, synthetic, ProxyError, "fix it")  # the same data: nothing
    with pytest.raises(ProxyError, match=r"^this proxy was built on other data than it is used with: the split "
                                         r"differs in seed 0 -> 1 \(built -> used\)\. fix it$"):
        check_data("proxy", synthetic.fingerprint, other, ProxyError, "fix it", recorded=synthetic.describe())
    with pytest.raises(ScoringError, match=rf"differs \(fingerprint {synthetic.fingerprint[:12]}\.\.\. built, "
                                           rf"{other.fingerprint[:12]}\.\.\. used"):
        check_data("scoring run", synthetic.fingerprint, other, ScoringError, "rerun")


def test_changed_compares_settings_as_a_file_reads_them_back():
    stored = json.loads(json.dumps({"per_class": {0: 5, 1: 6}, "grid": (1, 2), "seed": 0}))
    assert changed(stored, {"per_class": {0: 5, 1: 6}, "grid": (1, 2)}) == {}
    assert changed(stored, {"seed": 3, "l2": 1e-5}) == {"seed": (0, 3), "l2": (None, 1e-5)}


def test_changed_settings_names_each_nested_setting_on_either_side():
    stored = json.loads(json.dumps({"train": {"lr": 0.01, "mean": (0.5,), "old": 1}, "seeds": [0], "proxy": None}))
    asked = {"train": {"lr": 0.02, "mean": (0.5,)}, "seeds": [0, 1], "proxy": {"method": "random"}, "new": 2}
    diff = changed_settings(stored, asked)
    assert diff == {"train.lr": (0.01, 0.02), "train.old": (1, ABSENT), "seeds": ([0], [0, 1]),
                    "proxy": (None, {"method": "random"}), "new": (ABSENT, 2)}
    assert show_changes(diff) == ("train.lr 0.01 -> 0.02, train.old 1 -> (absent), seeds [0] -> [0, 1], "
                                  "proxy None -> {'method': 'random'}, new (absent) -> 2")
    assert changed_settings(stored, json.loads(json.dumps(stored))) == {}


def test_proxy_files_keep_their_format(synthetic, tmp_path, repo):
    """A proxy file is still {"format", "sha256", "proxy"} with the checksum over the payload, and the files of
    the committed results load (golden: results/fmnist-ref/proxies/, written before nasprune/artifacts.py)."""
    committed = repo / "results" / "fmnist-ref" / "proxies"
    for name in ("random", "influence"):
        golden = ProxySet.load(committed / f"{name}.json")
        assert golden.method == name and len(golden) == 1000 and golden.per_class == {c: 100 for c in range(10)}
    proxy = ProxySet.from_selection(synthetic, np.arange(0, 1000, 7), "random", config={"per_class": {0: 3}})
    path = proxy.save(tmp_path / "p.json")
    doc = json.loads(path.read_text())
    assert list(doc) == ["format", "sha256", "proxy"] and doc["format"] == PROXY_FORMAT == "nasprune.proxyset/1"
    assert doc["sha256"] == checksum(doc["proxy"])
    assert np.array_equal(ProxySet.load(path, synthetic).indices, proxy.indices)
    refused = {"newer.json": (json.dumps({**doc, "format": "nasprune.proxyset/2"}),
                              "newer.json: a nasprune proxy file in format 'nasprune.proxyset/2'"),
               "list.json": ("[1, 2]", "list.json is not a nasprune proxy file")}
    for name, (text, message) in refused.items():
        with pytest.raises(ProxyError, match=message):
            ProxySet.load(write_text(tmp_path / name, text))


def test_a_scoring_file_written_before_the_helper_still_loads(synthetic, tmp_path):
    """The scoring-run file is torch.save({"format", **fields}), as the code before nasprune/artifacts.py wrote it."""
    config = {"spec": "w8-d1-relu-none-avgpooling", "bottleneck": 4, "epochs": 1, "score_epoch": 1, "batch_size": 256,
              "lr": 0.01, "weight_decay": 5e-4, "seed": 0, "device": "auto"}  # as ScoringConfig was then: flat
    n = len(synthetic.train_y)
    fields = dict(config=config, dataset=synthetic.name, fingerprint=synthetic.fingerprint,
                  labels=synthetic.train_y.clone(), features=torch.zeros(n, 4), logits=torch.zeros(n, 10),
                  weight=torch.zeros(10, 4), bias=torch.zeros(10), forgetting=torch.zeros(n, dtype=torch.int64),
                  el2n=torch.zeros(n), grand=torch.zeros(n), train_acc=10.0, val_acc=None,
                  seconds={"training": 1.0, "features": 0.1}, version="0.1.0")
    torch.save({"format": "nasprune.scoring/1", **fields}, tmp_path / "old.pt")
    run = ScoringRun.load(tmp_path / "old.pt", synthetic)
    assert SCORING_FORMAT == "nasprune.scoring/1" and run.config == fields["config"]
    saved = torch.load(run.save(tmp_path / "new.pt"), weights_only=True)
    assert saved.keys() == {"format", *fields} and not (tmp_path / "new.pt.tmp").exists()
    with pytest.raises(ScoringError, match="rerun the scoring on this data"):
        ScoringRun.load(tmp_path / "old.pt", load_dataset("synthetic", seed=1))


def test_the_pruning_network_is_seeded_as_before_without_touching_the_global_rng(synthetic):
    config = ScoringConfig(spec="w8-d2-relu-instancenorm-avgpooling", bottleneck=6, score_epoch=1,
                           train=TrainConfig(epochs=1, seed=5))
    torch.manual_seed(5)  # the construction before: global seed, then the ConvNet and the two linear layers
    old = build_convnet(config.spec, synthetic.in_channels, synthetic.image_size, synthetic.num_classes)
    old.features.append(torch.nn.Linear(old.classifier.in_features, config.bottleneck))
    old.classifier = torch.nn.Linear(config.bottleneck, synthetic.num_classes)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    new = pruning_network(config, synthetic)
    assert torch.equal(torch.get_rng_state(), state)
    assert old.state_dict().keys() == new.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
