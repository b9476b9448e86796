"""Fused training (nasprune/training/_fused.py) against separate ``train()`` runs, member by member."""

import importlib.util
from dataclasses import replace

import pytest
import torch

from nasprune.training import FusedConvNet, build_fused_convnet, train_fused, train_fused_net
from nasprune.training import TrainConfig, train
from search_spaces import build_convnet

# Fused and separate runs sum in different orders (bmm against addmm in the classifier), so the weights
# agree to float32 rounding, not bit for bit: after 9 SGD steps the largest difference measured here was
# 6.5e-7 of the tensor's largest magnitude (about 5 float32 ulps), at 1 and 2 threads. We allow 2e-6.
# The data are the synthetic set: Fashion-MNIST's constant black background makes thousands of equal
# activations that can sit on a ReLU kink and flip together under any reordering of float sums; there
# train() alone differs by up to 1.6e-3 between 1 and 2 threads, and fused training by the same.
REL_TOL = 2e-6

SEEDS = [3, 5, 11]
N = 193  # 3 batches of 64 and a last batch of one, which train() skips
# Together these cover every activation, normalisation and pooling of search_spaces/convnet.py.
SPECS = [
    "w8-d2-relu-batchnorm-maxpooling",
    "w8-d1-sigmoid-layernorm-avgpooling",
    "w8-d2-leakyrelu-instancenorm-none",
    "w8-d1-relu-groupnorm-avgpooling",
    "w8-d1-leakyrelu-none-maxpooling",
]


def _config(d, **overrides):
    base = {"epochs": 3, "batch_size": 64, "lr": 0.05, "mean": d.mean, "std": d.std}
    return TrainConfig(**{**base, **overrides})


def _sets(d, scale_member=None, scale=1.0):
    sets = [(d.train_x[k * N : (k + 1) * N], d.train_y[k * N : (k + 1) * N]) for k in range(len(SEEDS))]
    if scale_member is not None:  # float images are taken as [0, 1]: these are `scale` times too bright
        x, y = sets[scale_member]
        sets[scale_member] = (x.float() / 255 * scale, y)
    return sets


def _separate(d, spec, sets, config, val):
    """Each member as train() runs it today: manual_seed, build, TrainConfig(seed=...)."""
    out = []
    for (x, y), seed in zip(sets, SEEDS):
        torch.manual_seed(seed)
        model = build_convnet(spec, d.in_channels, d.image_size, d.num_classes)
        out.append((model.state_dict(), train(model, x, y, replace(config, seed=seed), val=val)))
    return out


def _max_rel_diff(a: dict, b: dict) -> float:
    """Largest |a - b| per tensor over that tensor's largest |b|, over all floating tensors."""
    assert a.keys() == b.keys()
    worst = 0.0
    for key, t in b.items():
        if t.is_floating_point():
            worst = max(worst, ((a[key] - t).abs().max() / t.abs().max().clamp_min(1e-12)).item())
        else:
            assert torch.equal(a[key], t), key
    return worst


def test_fused_net_holds_the_members_and_computes_their_outputs(synthetic):
    """The layer mapping alone: fused forward == each member's forward, for every norm."""
    x, size = synthetic.train_x[:6].float() / 255, synthetic.image_size
    for spec in ["w8-d2-relu-batchnorm-maxpooling", "w8-d1-sigmoid-layernorm-avgpooling",
                 "w8-d1-relu-instancenorm-none", "w8-d1-leakyrelu-groupnorm-avgpooling"]:
        members = [build_convnet(spec, 1, size, 4, seed=s) for s in SEEDS]
        net = FusedConvNet(members)
        for k, m in enumerate(members):
            assert _max_rel_diff(net.member_state(k), m.state_dict()) == 0.0  # copied in exactly
        for mode in (True, False):  # batch statistics, then running statistics
            net.train(mode)
            for m in members:
                m.train(mode)
            inputs = [x * (k + 1) for k in range(len(members))]  # a different batch per member
            fused = net(torch.cat(inputs, dim=1))
            assert fused.shape == (len(members), 6, 4)
            for k, m in enumerate(members):
                torch.testing.assert_close(fused[k], m(inputs[k]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_each_member_equals_its_separate_run(synthetic, spec):
    d = synthetic
    config = _config(d)
    sets, val = _sets(d), (d.val_x, d.val_y)
    net = build_fused_convnet(spec, 1, d.image_size, d.num_classes, SEEDS)
    fused = train_fused_net(net, sets, SEEDS, config, val=val)
    separate = _separate(d, spec, sets, config, val)
    for k, (state, r) in enumerate(separate):
        assert _max_rel_diff(net.member_state(k), state) <= REL_TOL, (spec, k)
        assert fused[k].val_acc == r.val_acc
        assert fused[k].epochs == r.epochs == 3 and not fused[k].diverged
        assert [h["epoch"] for h in fused[k].history] == [1, 2, 3]
        assert fused[k].train_loss == pytest.approx(r.train_loss, rel=1e-5)
        assert fused[k].images_per_sec * fused[k].seconds == pytest.approx(3 * 192)  # size-1 batch skipped
    assert max(r.val_acc for r in fused) > 50  # they learn (chance is 25%): equal accuracies mean something
    # the comparison can fail: member 0 is far from the run with member 1's seed and data
    assert _max_rel_diff(net.member_state(0), separate[1][0]) > 0.1


def test_a_diverging_member_is_flagged_and_the_others_go_on(synthetic):
    """Member 1 sees images 30,000 times too bright: train() diverges in epoch 2 (after 320 images);
    the fused group must flag it there, keep its state from then, and train the others for the five
    steps left as if it were not there."""
    d = synthetic
    spec = "w8-d1-leakyrelu-none-avgpooling"
    config = _config(d)
    sets, val = _sets(d, scale_member=1, scale=3e4), (d.val_x, d.val_y)
    separate = _separate(d, spec, sets, config, val)
    assert [r.diverged for _, r in separate] == [False, True, False]  # the setup does what it says
    net = build_fused_convnet(spec, 1, d.image_size, d.num_classes, SEEDS)
    fused = train_fused_net(net, sets, SEEDS, config, val=val)
    assert [r.diverged for r in fused] == [False, True, False]
    assert fused[1].epochs == separate[1][1].epochs == 1
    assert len(fused[1].history) == 1 and len(fused[0].history) == 3
    assert torch.isnan(torch.tensor(fused[1].train_loss))
    assert fused[1].images_per_sec * fused[1].seconds == pytest.approx(320)  # one epoch and two batches
    for k, (state, r) in enumerate(separate):
        assert _max_rel_diff(net.member_state(k), state) <= REL_TOL, k  # member 1 too: frozen as it stopped
        assert fused[k].val_acc == r.val_acc
        assert fused[k].train_loss == pytest.approx(r.train_loss, rel=1e-5, nan_ok=True)
    assert all(torch.isfinite(t).all() for k in (0, 2) for t in net.member_state(k).values())


def test_train_fused_builds_members_from_their_seeds(synthetic):
    """The spec-level entry point; no mean/std in the config, so each member normalises with its own
    set's statistics, as train() would, and is evaluated that way."""
    d = synthetic
    spec = "w8-d1-relu-batchnorm-avgpooling"
    sets = [(d.train_x[:100], d.train_y[:100]), (d.train_x[100:200], d.train_y[100:200])]
    config = TrainConfig(epochs=2, batch_size=50)
    before = torch.random.get_rng_state()
    results = train_fused(spec, sets, [0, 1], config, in_channels=1, image_size=d.image_size,
                          num_classes=d.num_classes, val=(d.val_x, d.val_y), test=(d.test_x, d.test_y))
    assert torch.equal(torch.random.get_rng_state(), before)  # building the group left the global RNG alone
    for k, r in enumerate(results):
        torch.manual_seed(k)
        model = build_convnet(spec, 1, d.image_size, d.num_classes)
        single = train(model, *sets[k], replace(config, seed=k), val=(d.val_x, d.val_y),
                       test=(d.test_x, d.test_y))
        assert (r.val_acc, r.test_acc, r.epochs) == (single.val_acc, single.test_acc, single.epochs)
        assert r.train_loss == pytest.approx(single.train_loss, rel=1e-5)
    no_test = train_fused(spec, sets, [0, 1], replace(config, epochs=1, eval_test=False), in_channels=1,
                          image_size=d.image_size, num_classes=d.num_classes, test=(d.test_x, d.test_y))
    assert [r.test_acc for r in no_test] == [None, None]


def test_refuses_unequal_sets_and_mismatched_seeds(synthetic):
    d = synthetic
    config = TrainConfig(epochs=1, mean=d.mean, std=d.std)
    kw = dict(in_channels=1, image_size=d.image_size, num_classes=d.num_classes)
    sets = [(d.train_x[:100], d.train_y[:100]), (d.train_x[:90], d.train_y[:90])]
    with pytest.raises(ValueError, match=r"one size.*sizes \[100, 90\].*group members by training-set size"):
        train_fused("w8-d1-relu-none-none", sets, [0, 1], config, **kw)
    with pytest.raises(ValueError, match="sets has 2 training sets but seeds has 3 seeds"):
        train_fused("w8-d1-relu-none-none", sets[:1] * 2, [0, 1, 2], config, **kw)
    net = build_fused_convnet("w8-d1-relu-none-none", 1, d.image_size, d.num_classes, [0, 1, 2])
    with pytest.raises(ValueError, match="3 members but 2 training sets"):
        train_fused_net(net, sets[:1] * 2, [0, 1], config)
    with pytest.raises(ValueError, match="share one architecture"):
        FusedConvNet([build_convnet("w8-d1-relu-none-none", 1, 16, 4),
                      build_convnet("w8-d1-relu-none-maxpooling", 1, 16, 4)])


def test_benchmark_script_runs_both_arms(synthetic, capsys, repo):
    path = repo / "scripts" / "bench_fused.py"
    spec = importlib.util.spec_from_file_location("bench_fused", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--dataset", "synthetic", "--images", "64", "--epochs", "1", "--k", "1", "3",
                       "--specs", "w8-d1-relu-batchnorm-avgpooling", "--separate-runs", "2"])
    assert [r["K"] for r in rows] == [1, 3]
    for r in rows:
        assert r["separate_img_s"] > 0 and r["fused_img_s"] > 0
        assert r["fused_over_separate"] == pytest.approx(r["fused_img_s"] / r["separate_img_s"])
    out = capsys.readouterr().out
    assert "w8-d1-relu-batchnorm-avgpooling" in out and "fused/separate" in out
