"""Building proxies (nasprune/proxies/_build.py) on real Fashion-MNIST: scoring run -> influence -> selection ->
ProxySet. Every test on the real data is slow (it loads Fashion-MNIST and trains the pruning network once)."""

import json

import numpy as np
import pytest
import torch

from nasprune.cli import main as cli_main
from nasprune.data import load_dataset
from nasprune.errors import ProxyError, ScoringError
from nasprune.proxies import (InfluenceConfig, ObjectiveConfig, ProxySet, ScoringConfig, ScoringRun, build_proxy,
                              influence_vectors, leave_group_out_check, needs_scoring_run, run_scoring)
from nasprune.proxies._scoring import _Forgetting
from nasprune.proxies.selection import METHODS, influence_objective, select
from nasprune.training import TrainConfig

SMALL = ScoringConfig(spec="w16-d2-relu-batchnorm-avgpooling", bottleneck=16, score_epoch=1,
                      train=TrainConfig(epochs=2, lr=0.05, batch_size=128))


@pytest.fixture(scope="module")
def small_fmnist():
    """3,000 real Fashion-MNIST training images (stratified), the usual 10,000 val and test."""
    return load_dataset("fashion-mnist", train_size=3000)


@pytest.fixture(scope="module")
def run(small_fmnist):
    return run_scoring(small_fmnist, SMALL)


@pytest.mark.slow
def test_scoring_run_collects_every_statistic(run, small_fmnist):
    n = len(small_fmnist.train_y)
    assert run.features.shape == (n, 16) and run.logits.shape == (n, 10)
    assert run.weight.shape == (10, 16) and run.bias.shape == (10,)
    assert run.val_acc > 60 and run.train_acc > 60
    assert run.forgetting.dtype == torch.int64 and run.forgetting.min() >= 0
    assert 0 < run.forgetting.float().mean() < 2
    assert ((run.el2n >= 0) & (run.el2n <= 2**0.5 + 1e-6)).all()
    assert (run.grand >= run.el2n - 1e-6).all()  # ||[h, 1]|| >= 1
    # the classifier really is the final layer applied to the stored features
    assert torch.allclose(run.features @ run.weight.T + run.bias, run.logits, atol=1e-4)


def test_forgetting_counts_transitions():
    f = _Forgetting(torch.tensor([0, 1, 2]))
    seen = [torch.tensor([[1.0, 0, 0], [1, 0, 0], [1, 0, 0]]),  # right, wrong, wrong
            torch.tensor([[0.0, 1, 0], [0, 1, 0], [1, 0, 0]]),  # wrong (forgot), right, wrong
            torch.tensor([[1.0, 0, 0], [1, 0, 0], [1, 0, 0]])]  # right, wrong (forgot), wrong
    for logits in seen:
        f(torch.arange(3), logits)
    assert f.counts(epochs=3).tolist() == [1, 1, 3]  # never learned counts as `epochs`


@pytest.mark.slow
def test_scoring_run_file_round_trip_and_refusals(run, small_fmnist, tmp_path):
    path = run.save(tmp_path / "run.pt")
    again = ScoringRun.load(path, small_fmnist)
    assert torch.equal(again.features, run.features) and again.config == run.config
    other = load_dataset("fashion-mnist", train_size=3000, seed=1)
    with pytest.raises(ScoringError, match="rerun the scoring on this data"):
        ScoringRun.load(path, other)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ScoringError, match="not a nasprune scoring-run file"):
        ScoringRun.load(broken)
    with pytest.raises(ScoringError, match="no scoring-run file"):
        ScoringRun.load(tmp_path / "missing.pt")


@pytest.mark.slow
def test_influence_predicts_leave_group_out_on_real_features(run):
    report = leave_group_out_check(run.features, run.labels, run.weight, run.bias, l2=1e-3, groups=12,
                                   group_size=60, seed=0)
    assert report["all_converged"]
    assert report["pearson_r_reweighted"] > 0.9 and report["mean_cosine_reweighted"] > 0.9
    assert report["pearson_r"] > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_exact_quotas_and_is_deterministic(run, small_fmnist, method):
    cfg = ObjectiveConfig(time_limit=5, bound=False)
    a = build_proxy(small_fmnist, run, method, 20, seed=0, objective=cfg)
    b = build_proxy(small_fmnist, run, method, 20, seed=0, objective=cfg)
    assert a.per_class == {c: 20 for c in range(10)}
    assert len(np.unique(a.indices)) == 200
    assert np.array_equal(a.indices, b.indices)
    assert torch.bincount(small_fmnist.train_y[a.indices], minlength=10).tolist() == [20] * 10
    # the proxy's cost counts the scoring run, except for a method that does not use it (random)
    scoring = sum(run.seconds.values())
    assert a.stats["proxy_seconds"] == pytest.approx(a.stats["selection_seconds"] + needs_scoring_run(method) * scoring)
    assert a.stats["scoring_seconds"] == (scoring if needs_scoring_run(method) else None)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["paper", "scaled", "classwise"])
def test_influence_beats_random_on_its_own_objective(run, small_fmnist, target):
    cfg = InfluenceConfig(l2=1e-3)
    proxy = build_proxy(small_fmnist, run, "influence", 20, influence=cfg,
                        objective=ObjectiveConfig(target=target, time_limit=5, bound=True))
    S, _ = influence_vectors(run, cfg)
    randoms = [influence_objective(S, run.labels, select("random", run.labels, 20, seed=s).kept,
                                   target=target) for s in range(5)]
    assert proxy.objective < min(randoms)
    assert proxy.objective == pytest.approx(influence_objective(S, run.labels, proxy.indices, target=target),
                                            rel=1e-5)
    assert proxy.stats["lower_bound"] <= proxy.objective + 1e-9
    assert proxy.stats["t_norm"] > 0


@pytest.mark.slow
def test_literal_target_keeps_hard_examples(run, small_fmnist):
    """results/objective-study/README.md: the literal Eq. 4 fills a small proxy with examples the network gets wrong."""
    literal = build_proxy(small_fmnist, run, "influence", 20, influence=InfluenceConfig(l2=1e-3),
                          objective=ObjectiveConfig(target="paper", time_limit=5, bound=False))
    rnd = build_proxy(small_fmnist, run, "random", 20)
    assert literal.stats["pruning_net_acc_on_kept"] < rnd.stats["pruning_net_acc_on_kept"] - 20


@pytest.mark.slow
def test_nas_proxy_methods_keep_their_end_on_real_data(run, small_fmnist):
    """On real Fashion-MNIST scores: easy keeps images the pruning net gets right, el2n the ones it gets wrong;
    ccs never keeps the hardest 30% of a class by EL2N; entropy keeps a wider spread of prediction entropies
    than random; moderate keeps neither the most central nor the most outlying features."""
    acc = {m: build_proxy(small_fmnist, run, m, 20).stats["pruning_net_acc_on_kept"] for m in ("easy", "el2n")}
    rnd = np.mean([build_proxy(small_fmnist, run, "random", 20, seed=s).stats["pruning_net_acc_on_kept"]
                   for s in range(3)])
    assert acc["el2n"] < rnd - 20 and acc["easy"] > rnd + 15
    labels, el2n = run.labels.numpy(), run.el2n.numpy()
    kept = build_proxy(small_fmnist, run, "ccs", 20).indices
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        hardest = idx[np.argsort(-el2n[idx])[:int(0.3 * len(idx))]]
        assert not set(kept) & set(hardest)
    logp = torch.log_softmax(run.logits.double(), 1)
    log_entropy = torch.log10((-(logp.exp() * logp).sum(1)).clamp_min(1e-12)).numpy()

    def spread(method, seed):
        chosen = build_proxy(small_fmnist, run, method, 20, seed=seed).indices
        return np.mean([log_entropy[chosen[labels[chosen] == c]].std() for c in range(10)])

    assert np.mean([spread("entropy", s) for s in range(3)]) > 1.2 * np.mean([spread("random", s) for s in range(3)])
    X = run.features.double().numpy()
    kept = build_proxy(small_fmnist, run, "moderate", 20).indices
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        d = np.linalg.norm(X[idx] - np.median(X[idx], 0), axis=1)
        kept_d = d[np.isin(idx, kept)]
        assert np.quantile(d, 0.4) < kept_d.min() and kept_d.max() < np.quantile(d, 0.6)


@pytest.mark.slow
def test_random_proxy_without_a_scoring_run_matches_one_built_with_it(run, small_fmnist):
    without = build_proxy(small_fmnist, method="random", per_class=20, seed=4)
    with_run = build_proxy(small_fmnist, run, "random", 20, seed=4)
    assert np.array_equal(without.indices, with_run.indices)
    assert without.stats["pruning_net_acc_on_kept"] is None and with_run.stats["pruning_net_acc_on_kept"] > 50
    assert without.config["scoring"] is None and with_run.config["scoring"] == run.config
    with pytest.raises(ValueError, match="method 'entropy' selects from the scoring run's logits"):
        build_proxy(small_fmnist, method="entropy", per_class=20)


@pytest.mark.slow
def test_proxy_file_round_trip_and_refusals(run, small_fmnist, tmp_path):
    proxy = build_proxy(small_fmnist, run, "herding", 10)
    path = proxy.save(tmp_path / "p.json")
    again = ProxySet.load(path, small_fmnist)
    assert np.array_equal(again.indices, proxy.indices) and again.per_class == proxy.per_class
    assert again.method == "herding" and again.fingerprint == small_fmnist.fingerprint
    x, y = again.tensors(small_fmnist)
    assert torch.equal(x, small_fmnist.train_x[proxy.indices])
    # tampered: one index changed, checksum kept
    doc = json.loads(path.read_text())
    doc["proxy"]["indices"][0] += 1
    (tmp_path / "t.json").write_text(json.dumps(doc))
    with pytest.raises(ProxyError, match="checksum mismatch"):
        ProxySet.load(tmp_path / "t.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ProxyError, match="not a nasprune proxy file"):
        ProxySet.load(tmp_path / "junk.json")
    with pytest.raises(ProxyError, match="built on other data than it is used with: the split differs in seed 0 -> 1"):
        ProxySet.load(path, load_dataset("fashion-mnist", train_size=3000, seed=1))


@pytest.mark.slow
def test_subset_indexes_the_original_torchvision_training_set(run, small_fmnist):
    from torchvision.datasets import FashionMNIST

    from nasprune.data import default_root

    proxy = build_proxy(small_fmnist, run, "random", 5)
    original = FashionMNIST(str(default_root()), train=True)
    subset = proxy.subset(original)
    assert len(subset) == 50
    for k in (0, 17, 49):
        img, label = subset[k]
        assert torch.equal(torch.as_tensor(np.array(img))[None], small_fmnist.train_x[proxy.indices[k]])
        assert label == int(small_fmnist.train_y[proxy.indices[k]])
    assert len(proxy.subset(small_fmnist)) == 50
    with pytest.raises(ProxyError, match="original training set of 60000 images"):
        proxy.subset(torch.utils.data.TensorDataset(torch.zeros(10)))


@pytest.mark.slow
def test_cli_prune_reuses_a_scoring_run(run, tmp_path, capsys, monkeypatch):
    run_path = run.save(tmp_path / "run.pt")
    out = tmp_path / "proxy.json"
    code = cli_main(["prune", "--dataset", "fashion-mnist", "--method", "forgetting", "--per-class", "7",
                     "--scores", str(run_path), "--out", str(out), "--train-size", "3000"])
    assert code == 0
    text = capsys.readouterr().out
    assert "reusing scoring run" in text and "kept 70 of 3000 images" in text
    assert len(ProxySet.load(out)) == 70
    assert cli_main(["prune", "--method", "magic", "--out", str(out)]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err


@pytest.mark.slow
def test_epsilon_formulation_prunes_within_the_bound(run, small_fmnist):
    cfg = InfluenceConfig(l2=1e-3)
    proxy = build_proxy(small_fmnist, run, "influence", seed=0, influence=cfg,
                        objective=ObjectiveConfig(target="paper", epsilon=0.05, time_limit=20))
    S, _ = influence_vectors(run, cfg)
    pruned = np.setdiff1d(np.arange(len(S)), proxy.indices)
    assert 0 < len(pruned) < len(S)
    assert float(S[pruned].double().sum(0).norm()) <= 0.05 + 1e-9
    looser = build_proxy(small_fmnist, run, "influence", influence=cfg,
                         objective=ObjectiveConfig(target="paper", epsilon=0.5, time_limit=20))
    assert len(looser) <= len(proxy)  # a looser bound prunes at least as much
    with pytest.raises(ValueError, match="pruning everything meets any epsilon"):
        ObjectiveConfig(target="classwise", epsilon=0.1)


@pytest.mark.slow
def test_build_proxy_at_a_keep_fraction(small_fmnist):
    """``keep`` asks for a fraction of every class instead of a per-class count (the claim grids' pruning rates)."""
    proxy = build_proxy(small_fmnist, None, "random", keep=0.1, seed=0)
    sizes = torch.bincount(small_fmnist.train_y).tolist()
    assert proxy.per_class == {c: round(0.1 * k) for c, k in enumerate(sizes)}
    assert proxy.config["per_class"] == proxy.per_class
