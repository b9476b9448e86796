"""The zero-cost scores (nasprune/zerocost/), each against an independent computation on a tiny net: NASWOT's kernel
by counting matching bits, SynFlow by its homogeneity, the gradient scores by finite differences in float64; the
conformance check; the fixed batch; the pool's table and the rank ensemble."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from nasprune.zerocost import (SCORES, Batch, compute_score, ensemble, fixed_batch, get_score, register_score,
                               score_candidates)
from nasprune.zerocost import _registry
from nasprune.zerocost.testing import check_all, check_score, synthetic_batch
from search_spaces import ConvNetSpec, build_convnet, count_flops, count_params

TINY = "w4-d1-relu-none-avgpooling"


def tiny_batch(size: int = 6) -> Batch:
    g = torch.Generator().manual_seed(3)
    return Batch(torch.randn(size, 1, 8, 8, generator=g), torch.arange(size) % 3, 1, 8, 3)


def numeric_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, h: float = 1e-6) -> list[np.ndarray]:
    """The cross-entropy's gradient by every conv and linear weight of a float64 copy, by central differences."""
    model = model.double().requires_grad_(False)
    x = x.double()
    out = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w, grad = m.weight.data, np.zeros(m.weight.shape)
            for idx in itertools.product(*map(range, w.shape)):
                keep = float(w[idx])
                w[idx] = keep + h
                up = float(F.cross_entropy(model(x), y))
                w[idx] = keep - h
                down = float(F.cross_entropy(model(x), y))
                w[idx] = keep
                grad[idx] = (up - down) / (2 * h)
            out.append(grad)
    return out


def test_the_registry_holds_the_issues_scores_in_order():
    assert list(SCORES) == ["naswot", "synflow", "grad_norm", "snip", "zico", "params", "flops"]
    assert [get_score(s).needs for s in SCORES] == ["batch"] * 5 + ["spec"] * 2
    with pytest.raises(ValueError, match="unknown zero-cost score 'nawsot'; choose one of naswot, synflow"):
        get_score("nawsot")
    with pytest.raises(ValueError, match="score 'naswot' is registered already"):
        register_score("naswot", needs="batch")(lambda model, x, y: 0.0)


def test_naswot_is_the_log_determinant_of_the_matching_bit_counts():
    """The binary codes read off a hand-written forward pass (no hooks), K counted bit by bit in Python."""
    batch = tiny_batch(8)
    model = build_convnet("w4-d2-leakyrelu-none-maxpooling", 1, 8, 3, seed=0)
    codes, h = [], batch.x
    for layer in model.features:
        if isinstance(layer, (nn.ReLU, nn.LeakyReLU, nn.Sigmoid)):
            codes.append((h > 0).flatten(1))
        h = layer(h)
    c = torch.cat(codes, 1).numpy()
    n = len(c)
    kernel = np.array([[sum(int(c[i, d] == c[j, d]) for d in range(c.shape[1])) for j in range(n)] for i in range(n)])
    sign, logdet = np.linalg.slogdet(kernel.astype(float))
    assert sign > 0 and compute_score("naswot", "w4-d2-leakyrelu-none-maxpooling", batch, seed=0) == \
        pytest.approx(logdet, rel=1e-9)


def test_synflow_is_the_layer_count_times_the_output_sum_without_biases():
    """With no biases and no norms the net is linear in each layer's weights (ReLU and max pooling are positively
    homogeneous, the abs weights and the all-ones input keep every unit active), so each layer's sum
    |theta dR/dtheta| is R itself: the score is log(layers * R), R computed here on the abs weights."""
    model = build_convnet("w8-d2-relu-none-maxpooling", 3, 16, 4, seed=0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.zero_()
    batch = synthetic_batch()
    score = get_score("synflow").fn(model, batch.x, batch.y)
    net = build_convnet("w8-d2-relu-none-maxpooling", 3, 16, 4, seed=0).double()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(p.abs() if name.endswith("weight") else torch.zeros_like(p))
        r = float(net(torch.ones(1, 3, 16, 16, dtype=torch.float64)).sum())
    assert score == pytest.approx(math.log(3 * r), rel=1e-12)  # two convs and the classifier
    assert all(p.min() < 0 for n, p in model.named_parameters() if n.endswith("weight"))  # the model left as it was


@pytest.mark.parametrize("name", ["grad_norm", "snip"])
def test_gradient_scores_match_finite_differences(name):
    batch = tiny_batch()
    model = build_convnet(TINY, 1, 8, 3, seed=0)
    weights = [m.weight.detach().double().numpy() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    grads = numeric_gradients(build_convnet(TINY, 1, 8, 3, seed=0), batch.x, batch.y)
    expected = (sum(np.linalg.norm(g) for g in grads) if name == "grad_norm"
                else sum(np.abs(w * g).sum() for w, g in zip(weights, grads)))
    assert compute_score(name, TINY, batch, seed=0) == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_zico_matches_its_formula_on_finite_difference_gradients():
    batch = tiny_batch(8)
    halves = [numeric_gradients(build_convnet(TINY, 1, 8, 3, seed=0), xs, ys)
              for xs, ys in zip(batch.x.chunk(2), batch.y.chunk(2))]
    expected = 0.0
    for first, second in zip(*halves):
        g = np.stack([first.ravel(), second.ravel()])
        std = g.std(axis=0)
        ratio = (np.abs(g).mean(axis=0)[std > 1e-12] / std[std > 1e-12]).sum()
        expected += math.log(ratio)
    assert compute_score("zico", TINY, batch, seed=0) == pytest.approx(expected, rel=1e-3)


@pytest.mark.slow
def test_params_and_flops_are_what_torch_counts():
    from torch.utils.flop_counter import FlopCounterMode

    batch = synthetic_batch()
    for spec in ("w8-d2-relu-layernorm-avgpooling", "w16-d1-sigmoid-batchnorm-none"):
        model = build_convnet(spec, 3, 16, 4, seed=0)
        assert compute_score("params", spec, batch) == sum(p.numel() for p in model.parameters()) \
            == count_params(ConvNetSpec.from_id(spec), 3, 16, 4)
        with FlopCounterMode(display=False) as counter:
            model(batch.x[:1])
        assert compute_score("flops", spec, batch) == counter.get_total_flops() \
            == count_flops(ConvNetSpec.from_id(spec), 3, 16, 4)


@pytest.mark.slow
def test_every_score_passes_the_conformance_check():
    check_all()


def test_the_conformance_check_catches_a_score_that_breaks_its_rules(monkeypatch):
    """A score that draws from the global RNG, and a seeded one that ignores its network, both fail, by name."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    register_score("noisy", needs="batch")(lambda model, x, y: float(torch.rand(())))
    with pytest.raises(AssertionError, match="'noisy' breaks the rule: the global RNG left unchanged"):
        check_score("noisy")
    register_score("blind", needs="batch")(lambda model, x, y: float(x.sum()))
    with pytest.raises(AssertionError, match="'blind' breaks the rule: another value under another seed"):
        check_score("blind")
    register_score("nan", needs="spec")(lambda spec, c, s, k: float("nan"))
    with pytest.raises(AssertionError, match="'nan' breaks the rule: a number"):
        check_score("nan")


def test_the_fixed_batch_is_stratified_and_seeded(synthetic):
    a, b, c = fixed_batch(synthetic, 40, seed=0), fixed_batch(synthetic, 40, seed=0), fixed_batch(synthetic, 40, seed=1)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert torch.bincount(a.y).tolist() == [10, 10, 10, 10]
    assert a.x.dtype == torch.float32 and abs(float(a.x.mean())) < 0.5  # normalised with the dataset's statistics
    with pytest.raises(ValueError, match=r"a batch of 2 images needs 4 <= size"):
        fixed_batch(synthetic, 2)


def test_a_pool_is_scored_into_a_table_with_each_scores_time(synthetic):
    candidates = ["w8-d1-relu-none-avgpooling", "w8-d2-sigmoid-batchnorm-maxpooling"]
    table = score_candidates(synthetic, candidates, ["naswot", "params"], batch_size=16)
    assert list(table.index) == candidates
    assert list(table.columns) == ["naswot", "params", "seconds_naswot", "seconds_params"]
    assert (table[["seconds_naswot", "seconds_params"]] > 0).all().all()
    batch = fixed_batch(synthetic, 16)
    assert table.loc[candidates[1], "naswot"] == compute_score("naswot", candidates[1], batch)
    with pytest.raises(ValueError, match="unknown zero-cost score 'fps'"):
        score_candidates(synthetic, candidates, ["fps"])


def test_the_ensemble_sums_log_ranks_so_a_low_rank_anywhere_costs_most():
    """Four candidates with equal sums of ranks on two scores: the two that rank last on one score come last."""
    table = pd.DataFrame({"naswot": [4.0, 2.0, 3.0, 1.0], "params": [1.0, 3.0, 2.0, 4.0]}, index=list("uvwx"))
    got = ensemble(table, ["naswot", "params"])
    ranks = {s: stats.rankdata(table[s]) for s in table}
    by_hand = {c: sum(math.log(ranks[s][i] / 4) for s in table) for i, c in enumerate(table.index)}
    assert got.to_dict() == pytest.approx(by_hand)
    assert got["v"] == got["w"] > got["u"] == got["x"]
    reversed_ = ensemble(table.assign(params=-table["params"]), ["naswot", "params"], higher_is_better={"params": False})
    assert reversed_.to_dict() == pytest.approx(by_hand)
    table.loc["v", "naswot"] = float("nan")  # a missing score ranks lowest
    assert ensemble(table, ["naswot"]).idxmin() == "v"
